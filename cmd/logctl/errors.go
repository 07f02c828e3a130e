package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// usageError is a bad flag, argument or input: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// connectError is a failure to reach logd or to agree on TLS: exit 3.
type connectError struct {
	msg  string
	hint string // how to fix it, or ""
}

func (e connectError) Error() string { return e.msg }

// failure is a call the server refused or that failed: exit 1.
type failure struct{ msg string }

func (e failure) Error() string { return e.msg }

func failf(format string, args ...any) error {
	return failure{fmt.Sprintf(format, args...)}
}

// interruptedError is a command stopped by SIGINT or SIGTERM: exit 130.
// msg says what was done before, or is "".
type interruptedError struct{ msg string }

func (e interruptedError) Error() string {
	if e.msg == "" {
		return "interrupted"
	}
	return "interrupted; " + e.msg
}

// describe returns the exit status for err and the message to print
// after "logctl: ". Errors that are none of ours come from cobra (unknown
// command, missing required flag): bad usage.
func describe(err error, cmdPath string) (int, string) {
	var (
		ue usageError
		ce connectError
		fe failure
		ie interruptedError
	)
	switch {
	case errors.As(err, &ue):
		return exitUsage, ue.Error()
	case errors.As(err, &ce):
		if ce.hint != "" {
			return exitConnect, ce.msg + "\n  hint: " + ce.hint
		}
		return exitConnect, ce.msg
	case errors.As(err, &fe):
		return exitFailed, fe.msg
	case errors.As(err, &ie):
		return exitInterrupted, ie.Error()
	}
	return exitUsage, fmt.Sprintf("%v (see %s --help)", err, cmdPath)
}

// isOurs reports whether err already is one of logctl's error kinds.
func isOurs(err error) bool {
	var (
		ue usageError
		ce connectError
		fe failure
		ie interruptedError
	)
	return errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &fe) || errors.As(err, &ie)
}

// denied matches the server's refusal: `"alice" may not produce topic "bob/x"`.
var denied = regexp.MustCompile(`"([^"]*)" may not (\w+) topic ("(?:[^"\\]|\\.)*")`)

// callError turns an error of a call to logd into one of ours, worded for
// a person: a failure (exit 1), a connectError (exit 3), or an
// interruptedError if ctx ended (done says what was done by then).
func (a *app) callError(ctx context.Context, err error, done string) error {
	if err == nil {
		return nil
	}
	if isOurs(err) {
		return err
	}
	if interrupted(ctx) {
		return interruptedError{done}
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			return failf("no answer within %v (--timeout)", a.timeout)
		}
		return failf("%s", withDone(err.Error(), done))
	}
	msg := st.Message()
	switch st.Code() {
	case codes.PermissionDenied:
		if m := denied.FindStringSubmatch(msg); m != nil {
			return failf("%s may not %s topic %s (permission denied)", m[1], actionPhrase(m[2]), m[3])
		}
		return failf("permission denied: %s", trimPkg(msg))
	case codes.NotFound:
		if topic, ok := deletedTopic(st); ok {
			return failf("topic %q was deleted (not found)%s", topic, doneSuffix(done))
		}
		if topic, ok := notFoundTopic(st); ok {
			return failf("topic %q does not exist (topics are made by their first produce)", topic)
		}
		return failf("%s (not found)", trimPkg(msg))
	case codes.Unavailable:
		if strings.Contains(msg, "shutting down") {
			return failf("logd at %s is shutting down (unavailable)%s", a.addr, doneSuffix(done))
		}
		if fromLogd(st) {
			// logd answered (an I/O error on its disk): the connection is fine.
			return failf("%s (unavailable)%s", trimPkg(msg), doneSuffix(done))
		}
		return a.connectFailure(msg)
	case codes.Unauthenticated:
		return connectError{
			msg:  fmt.Sprintf("logd at %s did not accept the client certificate %s: %s", a.addr, a.certFile, msg),
			hint: a.certHint(),
		}
	case codes.DeadlineExceeded:
		if isConnectMessage(msg) {
			return a.connectFailure(msg)
		}
		return failf("no answer from logd at %s within %v (--timeout)%s", a.addr, a.timeout, doneSuffix(done))
	case codes.Canceled:
		return failf("canceled: %s%s", msg, doneSuffix(done))
	}
	return failf("%s (%s)%s", trimPkg(msg), codeWords(st.Code()), doneSuffix(done))
}

// connectFailure words a failure to connect or to complete the TLS
// handshake, naming the file to look at.
func (a *app) connectFailure(msg string) error {
	d := connDetail(msg)
	l := strings.ToLower(d)
	switch {
	case strings.Contains(l, "x509:") && strings.Contains(l, "valid for"):
		return connectError{
			msg:  fmt.Sprintf("logd's certificate at %s is not valid for %q: %s", a.addr, a.serverName, d),
			hint: "connect with a name the certificate holds (--addr localhost:PORT), or set --tls-server-name",
		}
	case strings.Contains(l, "x509:") || strings.Contains(l, "failed to verify certificate"):
		return connectError{
			msg: fmt.Sprintf("cannot verify logd's certificate at %s with the CA in %s: %s", a.addr, a.caFile, d),
			hint: "--tls-ca must be the CA that signed logd's certificate (ca.pem of logd's config directory); " +
				"if the certificates are stale, remake them all with 'make gencert' and restart logd",
		}
	case strings.Contains(l, "remote error: tls:"):
		return connectError{
			msg:  fmt.Sprintf("logd at %s rejected the client certificate %s: %s", a.addr, a.certFile, d),
			hint: a.rejectedHint(),
		}
	case strings.Contains(l, "broken pipe") || strings.Contains(l, "connection reset") ||
		strings.Contains(l, "server preface") || strings.HasSuffix(l, "eof"):
		// The server hung up while the connection was set up: with TLS
		// 1.3 that is how a rejected client certificate can look, when
		// the client writes before it reads the server's alert.
		return connectError{
			msg:  fmt.Sprintf("logd at %s closed the connection while it was set up (%s); it may have rejected the client certificate %s", a.addr, d, a.certFile),
			hint: a.rejectedHint(),
		}
	case strings.Contains(l, "tls:") || strings.Contains(l, "handshake"):
		return connectError{
			msg:  fmt.Sprintf("TLS handshake with %s failed (CA %s, certificate %s): %s", a.addr, a.caFile, a.certFile, d),
			hint: "is logd listening there with TLS? " + a.certHint(),
		}
	case strings.Contains(l, "connection refused"):
		return connectError{
			msg:  fmt.Sprintf("cannot connect to %s: connection refused", a.addr),
			hint: "is logd running there? point --addr at its gRPC address (logd --listen)",
		}
	}
	return connectError{msg: fmt.Sprintf("cannot connect to %s: %s", a.addr, d)}
}

// isConnectMessage reports whether a status message is about reaching the
// server rather than the call.
func isConnectMessage(msg string) bool {
	l := strings.ToLower(msg)
	for _, s := range []string{"connection error", "transport:", "tls:", "x509:", "connection refused", "while waiting for connections"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// connDetail strips gRPC's wrapping from a connection error message:
// `connection error: desc = "transport: authentication handshake failed: tls: ..."`.
func connDetail(msg string) string {
	if i := strings.LastIndex(msg, `desc = "`); i >= 0 {
		msg = strings.TrimSuffix(msg[i+len(`desc = "`):], `"`)
	}
	for _, p := range []string{"transport: ", "authentication handshake failed: ", "Error while dialing: ", "error while dialing: ", "dial tcp "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// fromLogd reports whether a status carries logd's ErrorInfo: logd sent
// it, rather than gRPC on a failed connection.
func fromLogd(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "logd" {
			return true
		}
	}
	return false
}

// deletedTopic returns the topic of a TOPIC_DELETED status: the topic
// was deleted while the call used it.
func deletedTopic(st *status.Status) (string, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "TOPIC_DELETED" {
			t, ok := info.GetMetadata()["topic"]
			return t, ok
		}
	}
	return "", false
}

// notFoundTopic returns the topic of a TOPIC_NOT_FOUND status.
func notFoundTopic(st *status.Status) (string, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "TOPIC_NOT_FOUND" {
			if t, ok := info.GetMetadata()["topic"]; ok {
				return t, true
			}
		}
	}
	// `log: topic not found: "x"`
	if _, q, ok := strings.Cut(st.Message(), "topic not found: "); ok {
		var t string
		if _, err := fmt.Sscanf(q, "%q", &t); err == nil {
			return t, true
		}
	}
	return "", false
}

// actionPhrase turns an ACL action into English: "produce to topic".
func actionPhrase(action string) string {
	switch action {
	case "produce":
		return "produce to"
	case "consume":
		return "consume from"
	case "admin":
		return "administer"
	}
	return action
}

// trimPkg removes the Go package prefix ("log: ", "auth: ") of a server
// message.
// rejectedHint is the advice when logd refused the client certificate at
// the handshake.
func (a *app) rejectedHint() string {
	return "the client certificate must be signed by the CA logd trusts and not revoked (logd's --tls-crl); " +
		a.certHint() + ", or remake all certificates with 'make gencert'"
}

func trimPkg(msg string) string {
	for _, p := range []string{"log: ", "auth: ", "server: ", "quota: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// codeWords is a status code in words: "invalid argument".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte(' ')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func doneSuffix(done string) string {
	if done == "" {
		return ""
	}
	return "; " + done
}

func withDone(msg, done string) string { return msg + doneSuffix(done) }
