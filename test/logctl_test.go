package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logd/logd/internal/pki"
)

// logctlResult is how a logctl run ended.
type logctlResult struct {
	code           int
	stdout, stderr string
}

// logctlCmd is logctl with args against p, as root unless args say
// otherwise, with $LOGD_CONFIG_DIR the config dir of p.
func logctlCmd(ctx context.Context, p *process, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, logctlBin, append([]string{"--addr", p.GRPCAddr}, args...)...)
	cmd.Env = append(cleanEnv(), "LOGD_CONFIG_DIR="+p.configDir, "HOME="+p.configDir,
		// A race-enabled binary otherwise sleeps 1 s before exiting.
		"GORACE=atexit_sleep_ms=0")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runLogctl runs logctl to its end with stdin and returns how it ended.
func runLogctl(t testing.TB, p *process, stdin string, args ...string) logctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := logctlCmd(ctx, p, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("logctl %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("logctl %s did not exit within %v; stderr:\n%s", strings.Join(args, " "), commandTimeout, &stderr)
	}
	checkLogctlRace(t, stderr.String())
	return logctlResult{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// checkLogctlRace fails the test if a race-enabled logctl reported a
// data race.
func checkLogctlRace(t testing.TB, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("logctl reported a data race:\n%s", stderr)
	}
}

// wantLogctl runs logctl and checks its exit status and that its stderr
// holds each of wantErr.
func wantLogctl(t testing.TB, p *process, code int, stdin string, args []string, wantErr ...string) logctlResult {
	t.Helper()
	r := runLogctl(t, p, stdin, args...)
	if r.code != code {
		t.Fatalf("logctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	for _, w := range wantErr {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("logctl %s: stderr does not say %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

// TestLogctl runs the logctl binary against one logd: produce and consume
// in every format, refusals, bad usage, connection and TLS failures,
// completion and bench. Following is TestLogctlFollow.
func TestLogctl(t *testing.T) {
	p := startLogd(t, t.TempDir(), "", "--sync", "none")

	t.Run("ProduceFromPipeConsumeRange", func(t *testing.T) {
		var in strings.Builder
		for i := range 10000 {
			fmt.Fprintf(&in, "line %d\n", i)
		}
		r := wantLogctl(t, p, 0, in.String(), []string{"--as", "alice", "produce", "--topic", "alice/orders"},
			"produced 10000 records to alice/orders (offsets 0..9999)")
		if r.stdout != "" {
			t.Errorf("produce printed %q on stdout, want nothing without --print-offsets", r.stdout)
		}

		r = wantLogctl(t, p, 0, "", []string{"--as", "alice", "consume", "--topic", "alice/orders", "--from", "10", "--count", "5"})
		if want := "line 10\nline 11\nline 12\nline 13\nline 14\n"; r.stdout != want {
			t.Errorf("consume --from 10 --count 5: got %q, want %q", r.stdout, want)
		}
		// Without --count it stops at the end; newest is the last record.
		r = wantLogctl(t, p, 0, "", []string{"consume", "-t", "alice/orders", "--from", "9997"})
		if want := "line 9997\nline 9998\nline 9999\n"; r.stdout != want {
			t.Errorf("consume --from 9997: got %q, want %q", r.stdout, want)
		}
		r = wantLogctl(t, p, 0, "", []string{"consume", "-t", "alice/orders", "--from", "newest"})
		if r.stdout != "line 9999\n" {
			t.Errorf("consume --from newest: got %q, want the last record", r.stdout)
		}
		r = wantLogctl(t, p, 0, "", []string{"consume", "-t", "alice/orders", "--from", "end"})
		if r.stdout != "" {
			t.Errorf("consume --from end: got %q, want nothing", r.stdout)
		}
		wantLogctl(t, p, 1, "", []string{"consume", "-t", "alice/orders", "--from", "20000"},
			"offset 20000 is past the end", "0..9999")
	})

	t.Run("JSONAndFramed", func(t *testing.T) {
		// --value, --print-offsets.
		r := wantLogctl(t, p, 0, "", []string{"produce", "--topic", "j", "--value", "plain", "--print-offsets"},
			"produced 1 record to j (offset 0)")
		if r.stdout != "0\n" {
			t.Errorf("--print-offsets: got %q, want \"0\\n\"", r.stdout)
		}
		// JSON lines input, text and binary.
		bin := []byte{0xff, 0x00, 'x'}
		in := fmt.Sprintf("{\"value\": \"héllo \\\"q\\\"\"}\n\n{\"value_b64\": %q}\n", base64.StdEncoding.EncodeToString(bin))
		r = wantLogctl(t, p, 0, in, []string{"produce", "--topic", "j", "--format", "json", "--print-offsets"},
			"produced 2 records to j (offsets 1..2)")
		if r.stdout != "1\n2\n" {
			t.Errorf("--print-offsets: got %q, want \"1\\n2\\n\"", r.stdout)
		}
		// Framed input from a file.
		var framed bytes.Buffer
		for _, v := range []string{"multi\nline", ""} {
			binary.Write(&framed, binary.BigEndian, uint32(len(v)))
			framed.WriteString(v)
		}
		file := filepath.Join(t.TempDir(), "records.bin")
		if err := os.WriteFile(file, framed.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		wantLogctl(t, p, 0, "", []string{"produce", "--topic", "j", "--file", file, "--format", "framed"},
			"produced 2 records to j (offsets 3..4)")

		r = wantLogctl(t, p, 0, "", []string{"consume", "--topic", "j", "--format", "json"})
		type rec struct {
			Offset   uint64  `json:"offset"`
			Time     string  `json:"time"`
			Value    *string `json:"value"`
			ValueB64 *string `json:"value_b64"`
		}
		var got []rec
		sc := bufio.NewScanner(strings.NewReader(r.stdout))
		for sc.Scan() {
			var x rec
			if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
				t.Fatalf("consume --format json: line %q: %v", sc.Text(), err)
			}
			if _, err := time.Parse(time.RFC3339Nano, x.Time); err != nil {
				t.Errorf("offset %d: time %q: %v", x.Offset, x.Time, err)
			}
			got = append(got, x)
		}
		str := func(s *string) string {
			if s == nil {
				return "<nil>"
			}
			return *s
		}
		want := []struct {
			value, b64 string
		}{{"plain", "<nil>"}, {`héllo "q"`, "<nil>"}, {"<nil>", base64.StdEncoding.EncodeToString(bin)}, {"multi\nline", "<nil>"}, {"", "<nil>"}}
		if len(got) != len(want) {
			t.Fatalf("consume --format json: got %d records, want %d:\n%s", len(got), len(want), r.stdout)
		}
		for i, w := range want {
			if got[i].Offset != uint64(i) || str(got[i].Value) != w.value || str(got[i].ValueB64) != w.b64 {
				t.Errorf("record %d: got offset %d value %q value_b64 %q, want value %q value_b64 %q",
					i, got[i].Offset, str(got[i].Value), str(got[i].ValueB64), w.value, w.b64)
			}
		}
		// Malformed input is bad usage, and names the line.
		wantLogctl(t, p, 2, "{\"value\": \"ok\"}\nnot json\n", []string{"produce", "--topic", "j", "--format", "json"},
			"stdin:2:", "produced 1 record to j")
	})

	t.Run("Refusals", func(t *testing.T) {
		wantLogctl(t, p, 1, "", []string{"--as", "alice", "produce", "--topic", "bob/x", "--value", "v"},
			`logctl: alice may not produce to topic "bob/x" (permission denied)`)
		wantLogctl(t, p, 1, "a\nb\n", []string{"--as", "alice", "produce", "--topic", "bob/x"},
			`logctl: alice may not produce to topic "bob/x" (permission denied)`)
		wantLogctl(t, p, 1, "", []string{"--as", "bob", "consume", "--topic", "alice/orders"},
			`logctl: bob may not consume from topic "alice/orders" (permission denied)`)
		wantLogctl(t, p, 1, "", []string{"--as", "nobody", "bench", "--topic", "n", "--records", "3"},
			`nobody may not produce to topic "n"`)
		wantLogctl(t, p, 1, "", []string{"consume", "--topic", "no/such"},
			`topic "no/such" does not exist`)
	})

	t.Run("BadUsage", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"consume", "--topic", "j", "--bogus"}, "unknown flag: --bogus"},
			{[]string{"consume", "--topic", "j", "--from", "later"}, `--from "later"`},
			{[]string{"consume", "--topic", "j", "--format", "xml"}, `--format "xml"`},
			{[]string{"consume"}, `required flag(s) "topic" not set`},
			{[]string{"produce", "--topic", "j", "--value", "v", "--file", "f"}, "none of the others can be"},
			{[]string{"bench", "--records", "0"}, "--records must be at least 1"},
			{[]string{"bench", "--mode", "batch"}, `--mode "batch"`},
			{[]string{"frobnicate"}, `unknown command "frobnicate"`},
			{[]string{"--timeout", "soon", "consume", "-t", "j"}, "--timeout"},
		} {
			wantLogctl(t, p, 2, "", tc.args, tc.want)
		}
	})

	t.Run("CannotConnect", func(t *testing.T) {
		// A CA that did not sign logd's certificate.
		other := t.TempDir()
		if err := pki.Generate(other, "root"); err != nil {
			t.Fatal(err)
		}
		otherCA := filepath.Join(other, pki.CAFile)
		wantLogctl(t, p, 3, "", []string{"--tls-ca", otherCA, "produce", "--topic", "j", "--value", "v"},
			"cannot verify logd's certificate", otherCA, "hint:")
		// A client certificate logd's CA did not sign.
		otherCert, otherKey := filepath.Join(other, "root-client.pem"), filepath.Join(other, "root-client-key.pem")
		wantLogctl(t, p, 3, "", []string{"--tls-cert", otherCert, "--tls-key", otherKey, "consume", "--topic", "j"},
			otherCert)
		// A principal without a certificate.
		wantLogctl(t, p, 3, "", []string{"--as", "carol", "consume", "--topic", "j"},
			filepath.Join(p.configDir, "carol-client.pem"), "does not exist", "--as NAME")
		missingCA := filepath.Join(t.TempDir(), "ca.pem")
		wantLogctl(t, p, 3, "", []string{"--tls-ca", missingCA, "consume", "--topic", "j"}, missingCA)
		// Nothing listening.
		wantLogctl(t, p, 3, "", []string{"--addr", freeAddr(t), "consume", "--topic", "j"}, "connection refused")
	})

	t.Run("HelpAndCompletion", func(t *testing.T) {
		r := wantLogctl(t, p, 0, "", []string{"completion", "bash"})
		if !strings.Contains(r.stdout, "bash completion") || !strings.Contains(r.stdout, "__start_logctl") {
			t.Errorf("completion bash printed no script:\n%.300s", r.stdout)
		}
		r = wantLogctl(t, p, 0, "", []string{"--help"})
		for _, w := range []string{"Exit status:", "3    cannot connect", "--as", "completion"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("logctl --help does not say %q", w)
			}
		}
		for _, sub := range []string{"produce", "consume", "bench"} {
			r = wantLogctl(t, p, 0, "", []string{sub, "--help"})
			if !strings.Contains(r.stdout, "Examples:\n") || !strings.Contains(r.stdout, "logctl "+sub) {
				t.Errorf("logctl %s --help has no examples:\n%s", sub, r.stdout)
			}
		}
		// Flag values complete too.
		r = wantLogctl(t, p, 0, "", []string{"__complete", "consume", "--format", ""})
		if !strings.Contains(r.stdout, "json") {
			t.Errorf("completing consume --format: got %q, want json among them", r.stdout)
		}
	})

	t.Run("Bench", func(t *testing.T) {
		for _, mode := range []string{"stream", "unary"} {
			r := wantLogctl(t, p, 0, "", []string{"bench", "--topic", "b-" + mode, "--mode", mode,
				"--records", "300", "--size", "32", "--concurrency", "3", "--consume"})
			for _, w := range []string{"produce: 300 records", "consume: 300 records", "records/s", "MB/s", "p50", "p99 ", "p99.9"} {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("bench --mode %s: output does not say %q:\n%s", mode, w, r.stdout)
				}
			}
		}
	})
}

// TestLogctlFollow follows a topic with logctl consume --follow while
// another logctl produces, then stops it with SIGINT: exit 0.
func TestLogctlFollow(t *testing.T) {
	p := startLogd(t, t.TempDir(), "", "--sync", "none")
	wantLogctl(t, p, 0, "old 0\nold 1\n", []string{"--as", "alice", "produce", "--topic", "alice/feed"})

	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()
	cmd := logctlCmd(ctx, p, "--as", "alice", "consume", "--topic", "alice/feed", "--from", "newest", "--follow")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("consume --follow ended early: stderr:\n%s", stderr.String())
			}
			return l
		case <-time.After(streamTimeout):
			t.Fatalf("consume --follow printed nothing within %v; stderr:\n%s", streamTimeout, stderr.String())
		}
		return ""
	}

	if got := next(); got != "old 1" {
		t.Fatalf("consume --from newest --follow: first line %q, want \"old 1\"", got)
	}
	for round := range 2 {
		var in strings.Builder
		for i := range 3 {
			fmt.Fprintf(&in, "new %d.%d\n", round, i)
		}
		wantLogctl(t, p, 0, in.String(), []string{"--as", "alice", "produce", "--topic", "alice/feed"})
		for i := range 3 {
			if got, want := next(), fmt.Sprintf("new %d.%d", round, i); got != want {
				t.Fatalf("followed line: got %q, want %q", got, want)
			}
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("consume --follow after SIGINT: %v, want exit 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(stopTimeout):
		t.Fatalf("consume --follow did not exit within %v of SIGINT", stopTimeout)
	}
	for l := range lines {
		t.Errorf("extra line after SIGINT: %q", l)
	}
	checkLogctlRace(t, stderr.String())
	if s := stderr.String(); s != "" {
		t.Errorf("consume --follow wrote to stderr:\n%s", s)
	}
}
