package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opencensus.io/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
)

// recorder is an Observer that remembers what it was told.
type recorder struct {
	mu        sync.Mutex
	appended  map[string]int // topic → records
	bytes     map[string]int
	read      map[string]int
	denied    []string // principal/action/topic
	following map[string]int
	quotas    []string // principal/quota/topic
}

func newRecorder() *recorder {
	return &recorder{appended: map[string]int{}, bytes: map[string]int{}, read: map[string]int{}, following: map[string]int{}}
}

func (r *recorder) Appended(_ context.Context, topic string, records, bytes int, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.appended[topic] += records
	r.bytes[topic] += bytes
}

func (r *recorder) Read(_ context.Context, topic string, records, _ int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.read[topic] += records
}

func (r *recorder) Denied(_ context.Context, principal, topic, action string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.denied = append(r.denied, principal+"/"+action+"/"+topic)
}

func (r *recorder) Following(topic string, delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.following[topic] += delta
}

func (r *recorder) QuotaExceeded(_ context.Context, principal, quota, topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.quotas = append(r.quotas, principal+"/"+quota+"/"+topic)
}

// quotaHits returns what QuotaExceeded was told, as principal/quota/topic.
func (r *recorder) quotaHits() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.quotas...)
}

func (r *recorder) snapshot() (appended, bytes, read, following map[string]int, denied []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := func(m map[string]int) map[string]int {
		c := map[string]int{}
		for k, v := range m {
			c[k] = v
		}
		return c
	}
	return cp(r.appended), cp(r.bytes), cp(r.read), cp(r.following), append([]string(nil), r.denied...)
}

// callLines returns the "finished call" entries logged for method.
func callLines(logs *observer.ObservedLogs, method string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.FilterMessage("finished call").All() {
		if e.ContextMap()["grpc.method"] == method {
			out = append(out, e)
		}
	}
	return out
}

// observedServer starts a server whose log lines and Observer reports the
// test reads.
func observedServer(t *testing.T) (*testServer, *observer.ObservedLogs, *recorder) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	rec := newRecorder()
	ts := startServer(t, func(c *Config, _ *log.Config) {
		c.Logger = zap.New(core)
		c.Observer = rec
	})
	return ts, logs, rec
}

func waitLines(t *testing.T, logs *observer.ObservedLogs, method string, n int) []observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := callLines(logs, method)
		if len(lines) >= n || time.Now().After(deadline) {
			if len(lines) < n {
				t.Fatalf("got %d log lines for %s, want %d", len(lines), method, n)
			}
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCallLogLines(t *testing.T) {
	trace.ApplyConfig(trace.Config{DefaultSampler: trace.AlwaysSample()})
	ts, logs, rec := observedServer(t)
	alice := client(t, ts, "alice")
	produce(t, alice, "alice/a", "one")
	produce(t, alice, "alice/a", "two")
	if _, err := alice.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/a", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := alice.Produce(ctxT(t), &logv1.ProduceRequest{Topic: "bob/b", Record: &logv1.Record{Value: []byte("x")}})
	wantCode(t, err, codes.PermissionDenied)

	lines := waitLines(t, logs, "Produce", 3)
	ok := lines[1].ContextMap()
	for key, want := range map[string]any{
		"grpc.service": "log.v1.Log",
		"grpc.code":    "OK",
		"principal":    "alice",
		"topic":        "alice/a",
		"offset":       uint64(1),
	} {
		if got := ok[key]; got != want {
			t.Errorf("produce line: %s = %v (%T), want %v (%T)", key, got, got, want, want)
		}
	}
	for _, key := range []string{"grpc.duration_ms", "peer.address", "trace_id"} {
		if _, found := ok[key]; !found {
			t.Errorf("produce line lacks %s: %v", key, ok)
		}
	}
	// ctxT gives the calls a deadline 10s on; the line says when.
	d, _ := ok["grpc.request.deadline"].(string)
	if dl, err := time.Parse(time.RFC3339, d); err != nil || time.Until(dl) < 0 || time.Until(dl) > 11*time.Second {
		t.Errorf("produce line: grpc.request.deadline %q, want the call's deadline (RFC 3339)", d)
	}
	if _, found := ok["grpc.error"]; found {
		t.Errorf("OK produce line has grpc.error: %v", ok)
	}
	if lines[1].Level != zapcore.InfoLevel {
		t.Errorf("got level %v for an OK call, want info", lines[1].Level)
	}
	denied := lines[2]
	if denied.Level != zapcore.WarnLevel {
		t.Errorf("got level %v for a denied call, want warn", denied.Level)
	}
	dm := denied.ContextMap()
	if dm["grpc.code"] != "PermissionDenied" || dm["principal"] != "alice" || dm["topic"] != "bob/b" {
		t.Errorf("denied line: got %v", dm)
	}
	if e, _ := dm["grpc.error"].(string); !contains(e, `"alice" may not produce topic "bob/b"`) {
		t.Errorf("denied line: grpc.error %q does not give the reason", e)
	}
	cl := waitLines(t, logs, "Consume", 1)[0].ContextMap()
	if cl["offset"] != uint64(1) || cl["topic"] != "alice/a" {
		t.Errorf("consume line: got %v", cl)
	}

	appended, bytes, read, _, den := rec.snapshot()
	if appended["alice/a"] != 2 || bytes["alice/a"] != 6 || read["alice/a"] != 1 {
		t.Errorf("observer: got appended %v, bytes %v, read %v; want 2, 6, 1 for alice/a", appended, bytes, read)
	}
	if len(den) != 1 || den[0] != "alice/produce/bob/b" {
		t.Errorf("observer: got denials %v, want [alice/produce/bob/b]", den)
	}
}

func TestStreamLogLineAndFollowing(t *testing.T) {
	ts, logs, rec := observedServer(t)
	bob := client(t, ts, "bob")
	ps, err := bob.ProduceStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ps.Send(&logv1.ProduceRequest{Topic: "bob/s", Record: &logv1.Record{Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := ps.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	ps.CloseSend()
	if _, err := ps.Recv(); err == nil {
		t.Fatal("stream did not end")
	}
	m := waitLines(t, logs, "ProduceStream", 1)[0].ContextMap()
	if m["first_offset"] != uint64(0) || m["last_offset"] != uint64(2) || m["records"] != int64(3) || m["principal"] != "bob" {
		t.Errorf("stream line: got %v, want offsets 0..2, 3 records, principal bob", m)
	}

	ctx, cancel := context.WithCancel(ctxT(t))
	cs, err := bob.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "bob/s"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := cs.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, following, _ := rec.snapshot(); following["bob/s"] != 1 {
		t.Errorf("got %d followers of bob/s, want 1", following["bob/s"])
	}
	cancel()
	waitLines(t, logs, "ConsumeStream", 1)
	if _, _, read, following, _ := rec.snapshot(); following["bob/s"] != 0 || read["bob/s"] != 3 {
		t.Errorf("after cancel: got %d followers, %d read; want 0, 3", following["bob/s"], read["bob/s"])
	}
}

// A follower reports what it sent in batches: all of it before it waits
// at the tail, and its log line counts every record.
func TestFollowReportsBeforeWaiting(t *testing.T) {
	ts, logs, rec := observedServer(t)
	const n = 2*reportEvery + 10
	values := make([][]byte, n)
	for i := range values {
		values[i] = []byte("v")
	}
	l, err := ts.topics.Open("bob/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendBatch(values); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	cs, err := client(t, ts, "bob").ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "bob/f"})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := cs.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	// The stream now waits at the tail, having reported all it sent.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, read, _, _ := rec.snapshot()
		if read["bob/f"] == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting at the tail: %d records reported read, want %d", read["bob/f"], n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	m := waitLines(t, logs, "ConsumeStream", 1)[0].ContextMap()
	if m["first_offset"] != uint64(0) || m["last_offset"] != uint64(n-1) || m["records"] != int64(n) {
		t.Errorf("stream line: got %v, want offsets 0..%d, %d records", m, n-1, n)
	}
	if _, _, read, _, _ := rec.snapshot(); read["bob/f"] != n {
		t.Errorf("after the stream: %d records reported read, want %d", read["bob/f"], n)
	}
}
