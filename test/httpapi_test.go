package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/tlsconfig"
)

// apiErr is the error body of the JSON API.
type apiErr struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details map[string]string `json:"details"`
}

// apiMsg is any answer (or stream line) of the JSON API.
type apiMsg struct {
	Offset  *uint64  `json:"offset"`
	Offsets []uint64 `json:"offsets"`
	Record  *struct {
		Value  []byte     `json:"value"`
		Offset *uint64    `json:"offset"`
		Time   *time.Time `json:"time"`
	} `json:"record"`
	Error *apiErr `json:"error"`
}

// APIClient is an HTTPS client of logd's JSON API presenting client cn's
// certificate from the config dir. Its idle connections are closed when
// the test ends.
func (p *process) APIClient(t testing.TB, cn string) *http.Client {
	t.Helper()
	if p.APIAddr == "" {
		t.Fatalf("%s: no HTTP API address", p.name)
	}
	cert, key := pki.ClientFiles(cn)
	tlsCfg, err := tlsconfig.Client(tlsconfig.Files{
		Cert: filepath.Join(p.configDir, cert),
		Key:  filepath.Join(p.configDir, key),
		CA:   filepath.Join(p.configDir, pki.CAFile),
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: rpcTimeout}
}

// apiURL is the URL of path on the JSON API.
func (p *process) apiURL(path string) string { return "https://" + p.APIAddr + path }

// recordsPath is the records path of topic, its '/' escaped.
func recordsPath(topic string) string {
	return "/v1/topics/" + strings.ReplaceAll(topic, "/", "%2F") + "/records"
}

// apiCall sends a request and returns the status code and body.
func apiCall(t testing.TB, c *http.Client, method, url string, body io.Reader) (int, []byte) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return res.StatusCode, b
}

// apiJSON sends a request with a JSON body, checks the status code and
// decodes the answer.
func apiJSON(t testing.TB, c *http.Client, method, url, body string, want int) apiMsg {
	t.Helper()
	code, b := apiCall(t, c, method, url, strings.NewReader(body))
	if code != want {
		t.Fatalf("%s %s: got status %d (%s), want %d", method, url, code, b, want)
	}
	var m apiMsg
	if want >= 400 {
		m.Error = new(apiErr)
		if err := json.Unmarshal(b, m.Error); err != nil {
			t.Fatalf("%s %s: answer %q: %v", method, url, b, err)
		}
		return m
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: answer %q: %v", method, url, b, err)
	}
	return m
}

func jsonRecord(value string) string {
	return fmt.Sprintf(`{"record":{"value":%q}}`, base64.StdEncoding.EncodeToString([]byte(value)))
}

// wantAPIRecord checks the record of an answer.
func wantAPIRecord(t testing.TB, m apiMsg, value string, off uint64) {
	t.Helper()
	if m.Record == nil || m.Record.Offset == nil {
		t.Fatalf("got %+v, want record %q at %d", m, value, off)
	}
	if string(m.Record.Value) != value || *m.Record.Offset != off {
		t.Fatalf("got %q at %d, want %q at %d", m.Record.Value, *m.Record.Offset, value, off)
	}
	if m.Record.Time == nil || m.Record.Time.IsZero() {
		t.Fatalf("got record %+v without a time", m.Record)
	}
}

// wantAPIError checks an error answer.
func wantAPIError(t testing.TB, m apiMsg, code, msg string) {
	t.Helper()
	if m.Error == nil || m.Error.Code != code || !strings.Contains(m.Error.Message, msg) {
		t.Fatalf("got error %+v, want code %s and a message containing %q", m.Error, code, msg)
	}
}

func TestHTTPAPIBookShapes(t *testing.T) {
	configDir := filepath.Join(t.TempDir(), "logd")
	p := startLogd(t, configDir, "")
	if p.APIAddr == "" {
		t.Fatalf("got no \"HTTP API listening\" line, want the API address")
	}
	// The book's records: "Let's Go #1\n", #2 and #3.
	values := []string{"TGV0J3MgR28gIzEK", "TGV0J3MgR28gIzIK", "TGV0J3MgR28gIzMK"}

	t.Run("curl", func(t *testing.T) {
		const curl = "/usr/bin/curl"
		if _, err := os.Stat(curl); err != nil {
			t.Skipf("no %s: %v", curl, err)
		}
		run := func(args ...string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			defer cancel()
			args = append([]string{"-s", "--max-time", "20", "--cacert", "ca.pem", "--cert", "root-client.pem", "--key", "root-client-key.pem"}, args...)
			cmd := exec.CommandContext(ctx, curl, args...)
			cmd.Dir = configDir
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			return string(out)
		}
		for i, v := range values {
			out := run("-X", "POST", "https://"+p.APIAddr, "-d", fmt.Sprintf(`{"record": {"value": %q}}`, v))
			if want := fmt.Sprintf(`{"offset":%d}`, i); strings.TrimSpace(out) != want {
				t.Fatalf("curl POST: got %q, want %s", out, want)
			}
		}
		for i, v := range values {
			out := run("-X", "GET", "https://"+p.APIAddr, "-d", fmt.Sprintf(`{"offset": %d}`, i))
			var got struct {
				Record map[string]any `json:"record"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("curl GET: answer %q: %v", out, err)
			}
			if got.Record["value"] != v || got.Record["offset"] != float64(i) {
				t.Fatalf("curl GET offset %d: got %q, want value %s and offset %d", i, out, v, i)
			}
		}
		// A client certificate is required.
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, "-s", "--max-time", "20", "--cacert", "ca.pem", "-X", "POST", "https://"+p.APIAddr, "-d", `{"record": {"value": "eA=="}}`)
		cmd.Dir = configDir
		if out, err := cmd.Output(); err == nil {
			t.Fatalf("curl without a client certificate: got %q, want the handshake refused", out)
		}
	})

	t.Run("Go client", func(t *testing.T) {
		root := p.APIClient(t, "root")
		// Continue after what curl wrote, if it ran.
		first := nextOffset(t, p.Client(t, "root"), "default")
		for i, v := range values {
			m := apiJSON(t, root, "POST", p.apiURL("/"), fmt.Sprintf(`{"record": {"value": %q}}`, v), http.StatusOK)
			if m.Offset == nil || *m.Offset != first+uint64(i) {
				t.Fatalf("POST /: got offset %v, want %d", m.Offset, first+uint64(i))
			}
		}
		for i := range values {
			m := apiJSON(t, root, "GET", p.apiURL("/"), fmt.Sprintf(`{"offset": %d}`, first+uint64(i)), http.StatusOK)
			wantAPIRecord(t, m, fmt.Sprintf("Let's Go #%d\n", i+1), first+uint64(i))
		}
		m := apiJSON(t, root, "GET", p.apiURL("/"), fmt.Sprintf(`{"offset": %d}`, first+3), http.StatusNotFound)
		if m.Error.Code != "OFFSET_OUT_OF_RANGE" || m.Error.Details["next"] != fmt.Sprint(first+3) {
			t.Fatalf("GET / past the end: got %+v, want OFFSET_OUT_OF_RANGE with next %d", m.Error, first+3)
		}
	})
	p.Stop(t)
}

func TestHTTPAPITenantsAndErrors(t *testing.T) {
	p := startLogd(t, t.TempDir(), "")
	alice, bob, nobody := p.APIClient(t, "alice"), p.APIClient(t, "bob"), p.APIClient(t, "nobody")

	for _, tt := range []struct {
		cn    string
		c     *http.Client
		own   string
		other string
	}{
		{"alice", alice, "alice/orders", "bob/orders"},
		{"bob", bob, "bob/orders", "alice/orders"},
	} {
		t.Run(tt.cn, func(t *testing.T) {
			own := p.apiURL(recordsPath(tt.own))
			m := apiJSON(t, tt.c, "POST", own, jsonRecord(tt.cn+"-0"), http.StatusOK)
			if m.Offset == nil || *m.Offset != 0 {
				t.Fatalf("got offset %v, want 0", m.Offset)
			}
			m = apiJSON(t, tt.c, "POST", own, fmt.Sprintf(`{"records":[{"value":%q},{"value":%q}]}`,
				base64.StdEncoding.EncodeToString([]byte(tt.cn+"-1")), base64.StdEncoding.EncodeToString([]byte(tt.cn+"-2"))), http.StatusOK)
			if fmt.Sprint(m.Offsets) != "[1 2]" {
				t.Fatalf("batch: got offsets %v, want [1 2]", m.Offsets)
			}
			for i := range 3 {
				wantAPIRecord(t, apiJSON(t, tt.c, "GET", fmt.Sprintf("%s/%d", own, i), "", http.StatusOK), fmt.Sprintf("%s-%d", tt.cn, i), uint64(i))
			}
			other := p.apiURL(recordsPath(tt.other))
			wantAPIError(t, apiJSON(t, tt.c, "POST", other, jsonRecord("x"), http.StatusForbidden),
				"PERMISSION_DENIED", fmt.Sprintf("%q may not produce topic %q", tt.cn, tt.other))
			wantAPIError(t, apiJSON(t, tt.c, "GET", other+"/0", "", http.StatusForbidden),
				"PERMISSION_DENIED", fmt.Sprintf("%q may not consume topic %q", tt.cn, tt.other))
			wantAPIError(t, apiJSON(t, tt.c, "POST", p.apiURL("/"), jsonRecord("x"), http.StatusForbidden),
				"PERMISSION_DENIED", fmt.Sprintf("%q may not produce topic %q", tt.cn, "default"))
		})
	}
	t.Run("nobody", func(t *testing.T) {
		for _, topic := range []string{"alice/orders", "bob/orders", "nobody/x", "default"} {
			wantAPIError(t, apiJSON(t, nobody, "POST", p.apiURL(recordsPath(topic)), jsonRecord("x"), http.StatusForbidden),
				"PERMISSION_DENIED", fmt.Sprintf(`"nobody" may not produce topic %q`, topic))
			wantAPIError(t, apiJSON(t, nobody, "GET", p.apiURL(recordsPath(topic))+"?from=0", "", http.StatusForbidden),
				"PERMISSION_DENIED", fmt.Sprintf(`"nobody" may not consume topic %q`, topic))
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		url := p.apiURL(recordsPath("alice/orders"))
		wantAPIError(t, apiJSON(t, alice, "POST", url, `{"record": {"value": `, http.StatusBadRequest), "INVALID_ARGUMENT", "request body")
		wantAPIError(t, apiJSON(t, alice, "POST", url, `{"record": {"value": "not base64!"}}`, http.StatusBadRequest), "INVALID_ARGUMENT", "base64")
		wantAPIError(t, apiJSON(t, alice, "GET", url+"/x", "", http.StatusBadRequest), "INVALID_ARGUMENT", `offset "x"`)
		wantAPIError(t, apiJSON(t, alice, "POST", p.apiURL("/v1/topics/alice%2F%2Fb/records"), jsonRecord("x"), http.StatusBadRequest), "INVALID_TOPIC", "topic")
		wantAPIError(t, apiJSON(t, alice, "GET", url+"/3", "", http.StatusNotFound), "OFFSET_OUT_OF_RANGE", "offsets 0..2")
		wantAPIError(t, apiJSON(t, alice, "GET", p.apiURL(recordsPath("alice/none"))+"/0", "", http.StatusNotFound), "TOPIC_NOT_FOUND", "")
	})
	t.Run("huge body", func(t *testing.T) {
		g := p.Client(t, "alice")
		produce(t, g, "alice/orders", "before")
		next := nextOffset(t, g, "alice/orders")
		// 20 MiB: far over the body limit of the default 1 MiB records.
		body := `{"record":{"value":"` + strings.Repeat("A", 20<<20) + `"}}`
		code, b := apiCall(t, alice, "POST", p.apiURL(recordsPath("alice/orders")), strings.NewReader(body))
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("got status %d (%.200s), want 413", code, b)
		}
		var e apiErr
		if err := json.Unmarshal(b, &e); err != nil || e.Code != "BODY_TOO_LARGE" {
			t.Fatalf("got %.200q (%v), want code BODY_TOO_LARGE", b, err)
		}
		// Still serving, HTTP and gRPC.
		m := apiJSON(t, alice, "POST", p.apiURL(recordsPath("alice/orders")), jsonRecord("after"), http.StatusOK)
		if m.Offset == nil || *m.Offset != next {
			t.Fatalf("after the huge body: got offset %v, want %d", m.Offset, next)
		}
		if got := string(consume(t, g, "alice/orders", next).GetValue()); got != "after" {
			t.Fatalf("gRPC after the huge body: got %q, want %q", got, "after")
		}
	})
	p.Stop(t)
}

// follower reads a following NDJSON stream in a goroutine.
type follower struct {
	res    *http.Response
	cancel context.CancelFunc
	lines  chan apiMsg
	done   chan struct{}
	err    error // why the stream ended; set before done is closed
}

// follow opens GET <records of topic>?from=N&follow=true as c and starts
// reading it.
func follow(t testing.TB, p *process, c *http.Client, topic string, from uint64) *follower {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	url := fmt.Sprintf("%s?from=%d&follow=true", p.apiURL(recordsPath(topic)), from)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sc := *c
	sc.Timeout = 0 // the stream's context bounds it
	res, err := sc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("GET %s: got %d (%s), want 200", url, res.StatusCode, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("GET %s: got Content-Type %q, want application/x-ndjson", url, ct)
	}
	f := &follower{res: res, cancel: cancel, lines: make(chan apiMsg, 1024), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer close(f.lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			var m apiMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				f.err = fmt.Errorf("line %q: %w", sc.Bytes(), err)
				return
			}
			f.lines <- m
		}
		f.err = sc.Err()
	}()
	t.Cleanup(func() {
		cancel()
		res.Body.Close()
		<-f.done
	})
	return f
}

// next returns the next line, failing if none comes within timeout.
func (f *follower) next(t testing.TB) apiMsg {
	t.Helper()
	select {
	case m, ok := <-f.lines:
		if !ok {
			<-f.done
			t.Fatalf("stream ended early: %v", f.err)
		}
		return m
	case <-time.After(rpcTimeout):
		t.Fatalf("no line within %v", rpcTimeout)
	}
	return apiMsg{}
}

// end waits for the stream's end and returns the lines left and why it
// ended.
func (f *follower) end(t testing.TB) ([]apiMsg, error) {
	t.Helper()
	var rest []apiMsg
	timeout := time.After(stopTimeout)
	for {
		select {
		case m, ok := <-f.lines:
			if !ok {
				<-f.done
				return rest, f.err
			}
			rest = append(rest, m)
		case <-timeout:
			t.Fatalf("stream did not end within %v", stopTimeout)
		}
	}
}

func TestHTTPAPIFollowAndGRPC(t *testing.T) {
	p := startLogd(t, t.TempDir(), "")
	alice := p.APIClient(t, "alice")
	g := p.Client(t, "alice")
	const topic = "alice/follow"

	// HTTP, then gRPC, then HTTP: one sequence of offsets, seen by both.
	url := p.apiURL(recordsPath(topic))
	want := []string{"h0", "h1", "h2", "g3", "h4"}
	m := apiJSON(t, alice, "POST", url, fmt.Sprintf(`{"records":[{"value":%q},{"value":%q},{"value":%q}]}`,
		base64.StdEncoding.EncodeToString([]byte("h0")), base64.StdEncoding.EncodeToString([]byte("h1")), base64.StdEncoding.EncodeToString([]byte("h2"))), http.StatusOK)
	if fmt.Sprint(m.Offsets) != "[0 1 2]" {
		t.Fatalf("got offsets %v, want [0 1 2]", m.Offsets)
	}
	if off := produce(t, g, topic, "g3"); off != 3 {
		t.Fatalf("gRPC produce after HTTP: got offset %d, want 3", off)
	}
	if m := apiJSON(t, alice, "POST", url, jsonRecord("h4"), http.StatusOK); m.Offset == nil || *m.Offset != 4 {
		t.Fatalf("HTTP produce after gRPC: got offset %v, want 4", m.Offset)
	}
	for i, v := range want {
		if got := string(consume(t, g, topic, uint64(i)).GetValue()); got != v {
			t.Fatalf("gRPC consume %d: got %q, want %q", i, got, v)
		}
		wantAPIRecord(t, apiJSON(t, alice, "GET", fmt.Sprintf("%s/%d", url, i), "", http.StatusOK), v, uint64(i))
	}

	// A follower from 0 gets those, then what is produced afterwards over
	// gRPC, in order.
	f := follow(t, p, alice, topic, 0)
	for i, v := range want {
		wantAPIRecord(t, f.next(t), v, uint64(i))
	}
	const n = 50
	var wg sync.WaitGroup
	wg.Add(1)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := len(want); i < len(want)+n; i++ {
			ctx, cancel := rpcCtx()
			_, err := g.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(fmt.Sprint("g", i))}})
			cancel()
			if err != nil {
				errc <- fmt.Errorf("produce %d: %w", i, err)
				return
			}
		}
	}()
	for i := len(want); i < len(want)+n; i++ {
		select {
		case err := <-errc:
			t.Fatal(err)
		default:
		}
		wantAPIRecord(t, f.next(t), fmt.Sprint("g", i), uint64(i))
	}
	wg.Wait()

	// The client cancels: the stream ends without another line, and the
	// server logs the request as finished.
	f.cancel()
	rest, err := f.end(t)
	if len(rest) != 0 {
		t.Fatalf("after cancel: got %d more lines (%+v), want none", len(rest), rest)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: got %v, want the end of the stream or context.Canceled", err)
	}
	deadline := time.Now().Add(rpcTimeout)
	for {
		var found bool
		for _, l := range p.stderr.find("finished http request") {
			if strings.Contains(l.raw, "follow") && strings.Contains(l.raw, `"http.method":"GET"`) {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"finished http request\" line for the follow stream within %v", rpcTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Still serving.
	if off := produce(t, g, topic, "last"); off != uint64(len(want)+n) {
		t.Fatalf("after the follower: got offset %d, want %d", off, len(want)+n)
	}
	p.Stop(t)
}

func TestHTTPAPISIGTERMEndsFollowers(t *testing.T) {
	const shutdownTimeout = 10 * time.Second
	p := startLogd(t, t.TempDir(), "", "--shutdown-timeout", shutdownTimeout.String())
	root := p.APIClient(t, "root")
	const topic = "sigterm"
	apiJSON(t, root, "POST", p.apiURL(recordsPath(topic)), jsonRecord("x"), http.StatusOK)
	f := follow(t, p, root, topic, 0)
	wantAPIRecord(t, f.next(t), "x", 0)

	took := p.Stop(t)
	rest, err := f.end(t)
	if err != nil {
		t.Fatalf("stream: got %v, want a clean end", err)
	}
	if len(rest) > 1 {
		t.Fatalf("after SIGTERM: got %d lines (%+v), want at most the error", len(rest), rest)
	}
	if len(rest) == 1 {
		if e := rest[0].Error; e == nil || e.Code != "UNAVAILABLE" || rest[0].Record != nil {
			t.Fatalf("last line: got %+v (error %+v), want an error UNAVAILABLE", rest[0], rest[0].Error)
		}
		t.Logf("after SIGTERM: last line %+v; stop took %v", *rest[0].Error, took)
	}
	if took >= shutdownTimeout {
		t.Fatalf("stop took %v, want less than the shutdown timeout %v", took, shutdownTimeout)
	}
	if n := len(p.stderr.find("shutdown deadline passed: closing remaining calls")); n != 0 {
		t.Fatalf("got %d \"shutdown deadline passed\" lines, want 0: the follower held the shutdown up", n)
	}
}
