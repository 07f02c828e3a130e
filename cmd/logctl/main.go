// Command logctl is logd's command-line client: it produces records from
// stdin or a file, consumes (and follows) topics, lists, describes and
// deletes topics (log.v1.Admin), and benchmarks a server, over gRPC with
// mutual TLS, using package api/client.
//
// Certificates default to those of $LOGD_CONFIG_DIR (or ~/.logd), as
// `make gencert` and logd itself make them; --as NAME picks the client
// certificate of another principal. Exit status: 0 ok, 1 the server
// refused the call or failed, 2 bad usage, 3 cannot connect (or TLS), 130
// interrupted (except consume --follow, whose normal end is Ctrl-C: 0).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/logd/logd/api/client"
	"github.com/logd/logd/internal/pki"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1 // the server refused the call, or it failed
	exitUsage       = 2 // bad flags, arguments or input
	exitConnect     = 3 // cannot connect: address, certificates, TLS
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// app is the state shared by the commands: global flags and streams.
type app struct {
	addr       string
	caFile     string
	certFile   string
	keyFile    string
	as         string
	serverName string
	timeout    time.Duration

	stdin          io.Reader
	stdout, stderr io.Writer
}

// run is main without the exit: it runs the command line args and returns
// the exit status. ctx ends on SIGINT or SIGTERM.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code, msg := describe(err, cmd.CommandPath())
	if msg != "" {
		fmt.Fprintf(stderr, "logctl: %s\n", msg)
	}
	return code
}

const rootLong = `logctl produces records to logd topics, consumes them, lists, describes
and deletes topics, and benchmarks a logd server, over gRPC with mutual TLS.

Certificates: by default the CA ca.pem and the client certificate
root-client.pem with its key root-client-key.pem in $LOGD_CONFIG_DIR (or
~/.logd), as 'make gencert' or logd itself on first use make them. --as NAME
picks NAME-client.pem and NAME-client-key.pem there instead, so you act as
principal NAME (root, alice, bob, nobody with the default policy); --tls-*
name files anywhere.

Exit status:
  0    ok
  1    the server refused the call (permission denied, unknown topic,
       offset out of range, ...) or failed
  2    bad usage: unknown flag or command, bad flag value, malformed input
  3    cannot connect: address unreachable, certificate files missing or
       unreadable, TLS handshake failed
  130  interrupted (Ctrl-C), except consume --follow, which exits 0`

const rootExample = `  # as root, with the certificates in ~/.logd, logd on 127.0.0.1:8400
  seq 1000 | logctl produce --topic alice/orders
  logctl consume --topic alice/orders --from 10 --count 5
  # as alice, following the tail
  logctl --as alice consume --topic alice/orders --from newest --follow
  # alice's topics, one of them in detail
  logctl --as alice topics
  logctl --as alice describe alice/orders
  # shell completion
  source <(logctl completion bash)`

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "logctl",
		Short:         "Produce, consume, administer and benchmark logd topics",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
		// No Args: a bare "logctl" prints help, and cobra reports
		// "logctl nosuch" as an unknown command (a usage error).
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (see %s --help)", err, c.CommandPath())
	})
	dir := pki.DefaultDir()
	f := root.PersistentFlags()
	f.StringVar(&a.addr, "addr", "127.0.0.1:8400", "logd gRPC `address` (host:port)")
	f.StringVar(&a.caFile, "tls-ca", "", "CA `file` that logd's certificate must chain to (default "+filepath.Join(dir, "ca.pem")+")")
	f.StringVar(&a.certFile, "tls-cert", "", "client certificate `file` (default "+filepath.Join(dir, "root-client.pem")+")")
	f.StringVar(&a.keyFile, "tls-key", "", "client key `file` (default "+filepath.Join(dir, "root-client-key.pem")+")")
	f.StringVar(&a.as, "as", "", "act as principal `NAME`: use NAME-client.pem and NAME-client-key.pem of the config directory")
	f.StringVar(&a.serverName, "tls-server-name", "", "name to verify logd's certificate for (default: the host of --addr)")
	f.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline of each unary call")
	root.RegisterFlagCompletionFunc("as", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return principals(pki.DefaultDir()), cobra.ShellCompDirectiveNoFileComp
	})
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		return a.resolveFiles()
	}

	root.AddCommand(a.produceCmd(), a.consumeCmd(), a.benchCmd(), a.topicsCmd(), a.describeCmd(), a.deleteTopicCmd())
	return root
}

// principals lists the NAMEs with a NAME-client.pem in dir.
func principals(dir string) []string {
	matches, _ := filepath.Glob(filepath.Join(dir, "*-client.pem"))
	var names []string
	for _, m := range matches {
		names = append(names, strings.TrimSuffix(filepath.Base(m), "-client.pem"))
	}
	sort.Strings(names)
	return names
}

// resolveFiles fills in the default certificate files and checks the
// global flags.
func (a *app) resolveFiles() error {
	dir := pki.DefaultDir()
	if a.as != "" {
		if a.certFile != "" || a.keyFile != "" {
			return usagef("--as picks the certificate and key; do not also give --tls-cert or --tls-key")
		}
		if strings.ContainsAny(a.as, `/\`) || a.as == "." || a.as == ".." {
			return usagef("--as %q: want a principal name such as alice, not a path (use --tls-cert and --tls-key for files elsewhere)", a.as)
		}
	}
	name := a.as
	if name == "" {
		name = "root"
	}
	if a.caFile == "" {
		a.caFile = filepath.Join(dir, "ca.pem")
	}
	if a.certFile == "" {
		a.certFile = filepath.Join(dir, name+"-client.pem")
	}
	if a.keyFile == "" {
		a.keyFile = filepath.Join(dir, name+"-client-key.pem")
	}
	host, _, err := net.SplitHostPort(a.addr)
	if err != nil {
		return usagef("--addr %q: want host:port, such as 127.0.0.1:8400", a.addr)
	}
	if a.serverName == "" {
		a.serverName = host
	}
	if a.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	return nil
}

// dial connects to logd. Its errors are connectErrors (exit 3).
func (a *app) dial() (*client.Client, error) {
	certFlag, keyFlag := "--tls-cert", "--tls-key"
	if a.as != "" {
		certFlag, keyFlag = "--as "+a.as, "--as "+a.as
	}
	for _, f := range []struct{ what, flag, path string }{
		{"CA file", "--tls-ca", a.caFile},
		{"client certificate", certFlag, a.certFile},
		{"client key", keyFlag, a.keyFile},
	} {
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			return nil, connectError{
				msg:  fmt.Sprintf("%s %s does not exist (%s)", f.what, f.path, f.flag),
				hint: a.certHint(),
			}
		}
	}
	c, err := client.Dial(client.Config{
		Addr:       a.addr,
		CAFile:     a.caFile,
		CertFile:   a.certFile,
		KeyFile:    a.keyFile,
		ServerName: a.serverName,
	})
	if err != nil {
		return nil, connectError{msg: strings.TrimPrefix(strings.TrimPrefix(err.Error(), "client: "), "tlsconfig: "), hint: a.certHint()}
	}
	return c, nil
}

// certHint suggests how to get working certificates.
func (a *app) certHint() string {
	dir := pki.DefaultDir()
	var b strings.Builder
	if names := principals(dir); len(names) > 0 {
		fmt.Fprintf(&b, "client certificates in %s: %s; pick one with --as NAME", dir, strings.Join(names, ", "))
	} else {
		fmt.Fprintf(&b, "no client certificates in %s ($LOGD_CONFIG_DIR or ~/.logd); make them with 'make gencert' (or start logd once), or name files with --tls-ca, --tls-cert and --tls-key", dir)
	}
	return b.String()
}

// unary returns a context for one unary call: ctx with --timeout.
func (a *app) unary(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// isTerminal reports whether w is a terminal, for progress bars.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// interrupted reports whether ctx (the command's, ended by SIGINT or
// SIGTERM) has ended.
func interrupted(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}
