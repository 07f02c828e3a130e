package telemetry

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opencensus.io/plugin/ocgrpc"
	"go.opencensus.io/stats/view"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// hasLine reports whether text has a line equal to line, or, if line ends
// with "*", one starting with the rest.
func hasLine(text, line string) bool {
	prefix, wild := strings.CutSuffix(line, "*")
	for _, l := range strings.Split(text, "\n") {
		if l == line || wild && strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestOperatorMetrics(t *testing.T) {
	m := newMetrics(t)
	topics := openTopics(t)
	topic := uniqueTopic(t)
	l, err := topics.Open(topic)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := l.Append([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	m.ObserveTopics(TopicsSource(topics))
	m.Following(topic, 1)
	ctx := withPrincipal(context.Background(), "alice")
	m.Appended(ctx, topic, 3, 30, 2*time.Millisecond)
	m.Read(ctx, topic, 2, 20)
	m.Synced(topic, time.Millisecond, 3)
	m.Denied(ctx, "mallory", topic, "consume")
	// Recording is asynchronous; a retrieval goes through the same queue.
	if _, err := view.RetrieveData(ViewAuthzDenials); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(OperatorMux(OperatorOptions{Metrics: m}))
	defer srv.Close()
	code, body := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d\n%s", code, body)
	}
	q := fmt.Sprintf("%q", topic)
	for _, line := range []string{
		"# TYPE logd_records_appended_total counter",
		`logd_records_appended_total{principal="alice",topic=` + q + `} 3`,
		`logd_bytes_appended_total{principal="alice",topic=` + q + `} 30`,
		`logd_records_read_total{principal="alice",topic=` + q + `} 2`,
		`logd_bytes_read_total{principal="alice",topic=` + q + `} 20`,
		"# TYPE logd_append_latency_milliseconds histogram",
		`logd_append_latency_milliseconds_bucket{topic=` + q + `,le="1"} 0`,
		`logd_append_latency_milliseconds_bucket{topic=` + q + `,le="2.5"} 1`,
		`logd_append_latency_milliseconds_bucket{topic=` + q + `,le="+Inf"} 1`,
		`logd_append_latency_milliseconds_sum{topic=` + q + `} 2`,
		`logd_append_latency_milliseconds_count{topic=` + q + `} 1`,
		`logd_fsync_latency_milliseconds_count{topic=` + q + `} 1`,
		`logd_fsync_batch_records_bucket{topic=` + q + `,le="2"} 0`,
		`logd_fsync_batch_records_bucket{topic=` + q + `,le="4"} 1`,
		`logd_authz_denials_total{action="consume",principal="mallory"} 1`,
		"# TYPE logd_topic_segments gauge",
		`logd_topic_segments{topic=` + q + `} 1`,
		`logd_topic_size_bytes{topic=` + q + `} ` + fmt.Sprint(l.Stats().Bytes),
		`logd_topic_lowest_offset{topic=` + q + `} 0`,
		`logd_topic_next_offset{topic=` + q + `} 3`,
		`logd_topic_highest_offset{topic=` + q + `} 2`,
		`logd_topic_tail_consumers{topic=` + q + `} 1`,
		"process_resident_memory_bytes *",
		"go_goroutines *",
	} {
		if !hasLine(body, line) {
			t.Errorf("/metrics has no line %q", line)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

func TestOperatorGRPCViews(t *testing.T) {
	m := newMetrics(t)
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.StatsHandler(&ocgrpc.ServerHandler{}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}

	srv := httptest.NewServer(OperatorMux(OperatorOptions{Metrics: m}))
	defer srv.Close()
	// The server records the call when it ends, which may be after the
	// client has its answer.
	want := []string{
		`grpc_io_server_completed_rpcs{grpc_server_method="grpc.health.v1.Health/Check",grpc_server_status="OK"} *`,
		`grpc_io_server_server_latency_count{grpc_server_method="grpc.health.v1.Health/Check"} *`,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := get(t, srv, "/metrics")
		missing := ""
		for _, line := range want {
			if !hasLine(body, line) {
				missing = line
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no line %q:\n%s", missing, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOperatorHealth(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(OperatorMux(OperatorOptions{Ready: ready.Load}))
	defer srv.Close()

	if code, body := get(t, srv, "/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, _ := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d, want 200", code)
	}
	ready.Store(false)
	if code, _ := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after unready = %d, want 503", code)
	}
	// Without Metrics, there is no /metrics.
	if code, _ := get(t, srv, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without Metrics = %d, want 404", code)
	}
}

func TestOperatorReadyDefault(t *testing.T) {
	srv := httptest.NewServer(OperatorMux(OperatorOptions{}))
	defer srv.Close()
	if code, _ := get(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with no Ready func = %d, want 200", code)
	}
}

func TestOperatorDebug(t *testing.T) {
	srv := httptest.NewServer(OperatorMux(OperatorOptions{}))
	defer srv.Close()
	for path, want := range map[string]string{
		"/debug/tracez":                  "Trace Spans",
		"/debug/rpcz":                    "RPC Stats",
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/cmdline":           "",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/symbol":            "num_symbols",
	} {
		code, body := get(t, srv, path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s = %d, want 200 with %q; body:\n%.300s", path, code, want, body)
		}
	}
	// pprof is on this mux only.
	if code, _ := get(t, srv, "/debug/pprof/nosuchprofile"); code != http.StatusNotFound {
		t.Errorf("unknown profile = %d, want 404", code)
	}
}
