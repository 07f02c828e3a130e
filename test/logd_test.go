// Package e2e holds logd's end-to-end tests: they build the real logd
// binary once, start it as a process on 127.0.0.1 and talk to it over
// gRPC with mutual TLS, as clients do. Crashes are real SIGKILLs.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/tlsconfig"
)

// logdBin is the logd binary built by TestMain; logctlBin the logctl one.
var logdBin, logctlBin string

// Timeouts. Every RPC has one; the race detector (the binary is built
// with -race when the tests are) makes everything several times slower.
const (
	rpcTimeout     = 10 * time.Second
	streamTimeout  = 60 * time.Second
	startTimeout   = 60 * time.Second
	stopTimeout    = 30 * time.Second
	commandTimeout = 30 * time.Second
)

// seedFlag replays a randomized test: each logs the seed it used.
var seedFlag = flag.Uint64("seed", 0, "seed of the randomized tests (0: from the clock)")

// testSeed returns the seed of t's random choices, and logs it with the
// command that replays them.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./test -run '^%s$' -seed %d)", seed, strings.ReplaceAll(t.Name(), "/", "$/^"), seed)
	return seed
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "logd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	logdBin = filepath.Join(dir, "logd")
	logctlBin = filepath.Join(dir, "logctl")
	// go build -o dir/ writes both binaries, named after their packages.
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled() {
		// A data race in logd under these loads is a failure too: see
		// process.checkRace.
		args = append(args, "-race")
	}
	args = append(args, "github.com/logd/logd/cmd/logd", "github.com/logd/logd/cmd/logctl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool(), args...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	code := m.Run()
	if code == 0 {
		// goleak.VerifyTestMain, but with the temp dir removed after it.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: goroutines leaked: %v\n", err)
			return 1
		}
	}
	return code
}

// goTool returns the go command: the one on PATH (go test puts its own
// first), else the one in GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// stderrLog collects a logd process's stderr (JSON lines) and picks out
// the addresses it listens on.
type stderrLog struct {
	mu       sync.Mutex
	all      bytes.Buffer
	partial  []byte
	lines    []logLine
	httpAddr string
	apiAddr  string
	serving  chan string   // the gRPC address, once
	changed  chan struct{} // closed and replaced at each line
}

// logLine is the part of a logd JSON log line the tests look at.
type logLine struct {
	Level    string `json:"level"`
	Msg      string `json:"msg"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	APIAddr  string `json:"http_api_addr"`
	// Reloads (package reload): which source, why, and the error.
	Source  string `json:"source"`
	Trigger string `json:"trigger"`
	Error   string `json:"error"`
	raw     string
	json    bool
}

func newStderrLog() *stderrLog {
	return &stderrLog{serving: make(chan string, 1), changed: make(chan struct{})}
}

func (s *stderrLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all.Write(p)
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.line(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	return len(p), nil
}

// line handles one complete line. s.mu is held.
func (s *stderrLog) line(raw string) {
	l := logLine{raw: raw}
	if err := json.Unmarshal([]byte(raw), &l); err == nil {
		l.json = true
	}
	s.lines = append(s.lines, l)
	close(s.changed)
	s.changed = make(chan struct{})
	switch l.Msg {
	case "operator HTTP listening":
		s.httpAddr = l.HTTPAddr
	case "HTTP API listening":
		s.apiAddr = l.APIAddr
	case "serving":
		select {
		case s.serving <- l.GRPCAddr:
		default:
		}
	}
}

func (s *stderrLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all.String()
}

// find returns the lines whose msg is msg, or every line if msg is "".
func (s *stderrLog) find(msg string) []logLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logLine
	for _, l := range s.lines {
		if msg == "" || l.Msg == msg {
			out = append(out, l)
		}
	}
	return out
}

// match returns the first line from index from on that matches (ok
// false if none), and the index after the line, or after the last line.
func (s *stderrLog) match(from int, match func(logLine) bool) (l logLine, next int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := min(from, len(s.lines)); i < len(s.lines); i++ {
		if match(s.lines[i]) {
			return s.lines[i], i + 1, true
		}
	}
	return logLine{}, len(s.lines), false
}

// process is a running logd.
type process struct {
	name      string // for messages: "logd #2"
	configDir string
	GRPCAddr  string
	HTTPAddr  string
	APIAddr   string // the JSON-over-HTTPS API
	stderr    *stderrLog
	cmd       *exec.Cmd
	exited    chan struct{} // closed once Wait returned
	waitErr   error         // set before exited is closed
}

// started numbers the processes started, for messages.
var started atomic.Int64

// startLogd starts logd with certificates (made on first use) in
// configDir, data in dataDir ("": logd's default, <configDir>/data) and
// extra flags, listening on 127.0.0.1 ports of its choosing, and waits
// until it serves. The config dir is passed as $LOGD_CONFIG_DIR. The
// process is killed, if it still runs, when the test ends; if the test
// failed, its stderr is logged.
func startLogd(t testing.TB, configDir, dataDir string, extra ...string) *process {
	t.Helper()
	return startLogdBin(t, logdBin, configDir, dataDir, extra...)
}

// startLogdBin is startLogd with the logd binary bin.
func startLogdBin(t testing.TB, bin, configDir, dataDir string, extra ...string) *process {
	t.Helper()
	args := []string{"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--http-api-listen", "127.0.0.1:0"}
	if dataDir != "" {
		args = append(args, "--data-dir", dataDir)
	}
	args = append(args, extra...)

	p := &process{
		name:      fmt.Sprintf("logd #%d", started.Add(1)),
		configDir: configDir,
		stderr:    newStderrLog(),
		exited:    make(chan struct{}),
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(cleanEnv(), "LOGD_CONFIG_DIR="+configDir, "HOME="+configDir)
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.hasExited() {
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		}
		p.checkRace(t)
		if t.Failed() {
			t.Logf("%s %s stderr:\n%s", p.name, strings.Join(args, " "), p.stderr)
		}
	})

	select {
	case addr := <-p.stderr.serving:
		p.GRPCAddr = addr
		p.stderr.mu.Lock()
		p.HTTPAddr = p.stderr.httpAddr
		p.APIAddr = p.stderr.apiAddr
		p.stderr.mu.Unlock()
	case <-p.exited:
		t.Fatalf("%s exited before serving: %v\nstderr:\n%s", p.name, p.waitErr, p.stderr)
	case <-time.After(startTimeout):
		t.Fatalf("%s did not log \"serving\" within %v", p.name, startTimeout)
	}
	if p.GRPCAddr == "" || p.HTTPAddr == "" {
		t.Fatalf("%s: got grpc_addr %q and http_addr %q, want both", p.name, p.GRPCAddr, p.HTTPAddr)
	}
	return p
}

// cleanEnv is the environment without LOGD_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOGD_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		t.Fatalf("%s did not exit within %v; killed", p.name, timeout)
	}
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		t.Fatalf("%s: wait: %v", p.name, p.waitErr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM and checks that logd exits 0 (a graceful stop). It
// returns how long the stop took.
func (p *process) Stop(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%s: SIGTERM: %v", p.name, err)
	}
	if code := p.wait(t, stopTimeout); code != 0 {
		t.Fatalf("%s after SIGTERM: got exit status %d (%v), want 0", p.name, code, p.cmd.ProcessState)
	}
	return time.Since(start)
}

// Kill sends SIGKILL and waits for the process to die.
func (p *process) Kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("%s: SIGKILL: %v", p.name, err)
	}
	p.wait(t, stopTimeout)
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: got %v, want killed by SIGKILL", p.name, p.cmd.ProcessState)
	}
}

// checkRace fails the test if a race-enabled logd reported a data race.
func (p *process) checkRace(t testing.TB) {
	t.Helper()
	if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
		t.Errorf("%s reported a data race (see its stderr)", p.name)
	}
}

// reloadTimeout bounds the wait for logd to report a reload: two polls
// of --reload-interval plus a loaded machine's delays.
const reloadTimeout = 30 * time.Second

// reloads counts the lines msg ("reloaded" or "reload failed, keeping
// the previous one") logd wrote for the reload source, with trigger (""
// for any).
func (p *process) reloads(source, msg, trigger string) int {
	n := 0
	for _, l := range p.stderr.find(msg) {
		if l.Source == source && (trigger == "" || l.Trigger == trigger) {
			n++
		}
	}
	return n
}

// waitReloads waits until reloads(source, msg, trigger) reaches n.
func (p *process) waitReloads(t testing.TB, source, msg, trigger string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to log %q for %s (trigger %q) %d times", p.name, msg, source, trigger, n),
		func() bool { return p.reloads(source, msg, trigger) >= n })
}

// waitFor polls cond until it holds, for at most reloadTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(reloadTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", reloadTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lines returns the number of stderr lines so far: pass it to waitLine
// to wait for a line written after now.
func (p *process) lines() int {
	_, n, _ := p.stderr.match(0, func(logLine) bool { return false })
	return n
}

// waitLine waits for the first stderr line from index from on that
// matches, and returns it with the index after it. It fails the test if
// none comes within timeout or logd exits first.
func (p *process) waitLine(t testing.TB, from int, timeout time.Duration, match func(logLine) bool) (logLine, int) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		// Take the channel first: a line added after the search closes it.
		p.stderr.mu.Lock()
		changed := p.stderr.changed
		p.stderr.mu.Unlock()
		l, next, ok := p.stderr.match(from, match)
		if ok {
			return l, next
		}
		from = next
		select {
		case <-changed:
		case <-p.exited:
			t.Fatalf("%s exited while a log line was awaited: %v", p.name, p.waitErr)
		case <-deadline:
			t.Fatalf("%s: no such log line within %v", p.name, timeout)
		}
	}
}

// Client dials logd as client cn, with the certificates of its config
// dir.
func (p *process) Client(t testing.TB, cn string) logv1.LogClient {
	t.Helper()
	return logv1.NewLogClient(p.Dial(t, p.configDir, cn))
}

// Dial connects as the client cn whose certificate and key are in
// certDir, trusting the CA of logd's config dir, with opts. The
// connection is closed when the test ends.
func (p *process) Dial(t testing.TB, certDir, cn string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cert, key := pki.ClientFiles(cn)
	tlsCfg, err := tlsconfig.Client(tlsconfig.Files{
		Cert: filepath.Join(certDir, cert),
		Key:  filepath.Join(certDir, key),
		CA:   filepath.Join(p.configDir, pki.CAFile),
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))}, opts...)
	conn, err := grpc.NewClient(p.GRPCAddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// runLogd runs logd with args to its end (for flag errors) and returns
// its exit code and stderr.
func runLogd(t testing.TB, configDir string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, logdBin, args...)
	cmd.Env = append(cleanEnv(), "LOGD_CONFIG_DIR="+configDir, "HOME="+configDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("logd %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("logd %s did not exit within %v; stderr:\n%s", strings.Join(args, " "), commandTimeout, &stderr)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), rpcTimeout)
}

// produce appends value to topic and returns its offset.
func produce(t testing.TB, c logv1.LogClient, topic, value string) uint64 {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	res, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(value)}})
	if err != nil {
		t.Fatalf("produce %q to %q: %v", value, topic, err)
	}
	return res.GetOffset()
}

// consume reads the record at off of topic.
func consume(t testing.TB, c logv1.LogClient, topic string, off uint64) *logv1.Record {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	res, err := c.Consume(ctx, &logv1.ConsumeRequest{Topic: topic, Offset: off})
	if err != nil {
		t.Fatalf("consume %q at %d: %v", topic, off, err)
	}
	if got := res.GetRecord().GetOffset(); got != off {
		t.Fatalf("consume %q at %d: got record offset %d, want %d", topic, off, got, off)
	}
	return res.GetRecord()
}

// nextOffset asks logd for the offset the next record of topic gets: a
// read far past the end fails with OutOfRange, whose ErrorInfo says.
func nextOffset(t testing.TB, c logv1.LogClient, topic string) uint64 {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	_, err := c.Consume(ctx, &logv1.ConsumeRequest{Topic: topic, Offset: 1 << 62})
	st := wantCode(t, err, codes.OutOfRange)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			var next uint64
			if _, err := fmt.Sscan(info.GetMetadata()["next"], &next); err != nil {
				t.Fatalf("OutOfRange details %v: no next offset: %v", info, err)
			}
			return next
		}
	}
	t.Fatalf("OutOfRange status %v has no ErrorInfo", st)
	return 0
}

// wantCode checks err's status code and returns the status.
func wantCode(t testing.TB, err error, want codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("got %v (%v), want %v", st.Code(), err, want)
	}
	return st
}

// httpGet GETs url (on a connection of its own, closed afterwards) and
// returns the status code and body.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: rpcTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago, for programs that cannot report the port they picked.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
