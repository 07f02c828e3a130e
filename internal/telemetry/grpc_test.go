package telemetry

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opencensus.io/plugin/ocgrpc"
	"go.opencensus.io/stats/view"
	"go.opencensus.io/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// healthServer serves the health service through stats handler h on an
// in-memory connection, and returns a client whose calls send their
// span's context (as a traced caller does).
func healthServer(t *testing.T, h stats.Handler) healthpb.HealthClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.StatsHandler(h))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(&ocgrpc.ClientHandler{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return healthpb.NewHealthClient(conn)
}

// viewCounts sums up the rows of ocgrpc's server views for the health
// Check method: completed calls by status, and the count and sum of each
// distribution (but latency's sum, which is timing).
func viewCounts(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, v := range ocgrpc.DefaultServerViews {
		rows, err := view.RetrieveData(v.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			var tags []string
			for _, tg := range r.Tags {
				tags = append(tags, tg.Key.Name()+"="+tg.Value)
			}
			slices.Sort(tags)
			if !slices.Contains(tags, "grpc_server_method=grpc.health.v1.Health/Check") {
				continue
			}
			key := v.Name + strings.Join(tags, ",")
			switch d := r.Data.(type) {
			case *view.CountData:
				out[key] = float64(d.Value)
			case *view.DistributionData:
				out[key+" count"] = float64(d.Count)
				if v != ocgrpc.ServerLatencyView {
					out[key+" sum"] = d.Mean * float64(d.Count)
				}
			}
		}
	}
	return out
}

// checks makes the calls both handlers see: two that pass, one refused,
// one under a traced caller's span. It returns the caller's span context.
func checks(t *testing.T, c healthpb.HealthClient) trace.SpanContext {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check of an unknown service: got %v, want NotFound", err)
	}
	ctx, caller := trace.StartSpan(ctx, "caller")
	defer caller.End()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	return caller.SpanContext()
}

// ServerHandler records what ocgrpc.ServerHandler records: the same calls
// through each change ocgrpc's server views alike, and give spans of the
// same names, kinds, statuses, parents and message events.
func TestServerHandlerMatchesOCGRPC(t *testing.T) {
	newMetrics(t)
	alwaysSample(t)
	spans := recordSpans(t)

	type spanSummary struct {
		name          string
		kind, code    int
		remoteParent  bool
		callerParent  bool
		events, attrs int
	}
	run := func(h stats.Handler) (map[string]float64, []spanSummary) {
		before := viewCounts(t)
		exported := len(spans.get())
		caller := checks(t, healthServer(t, h))
		// The server records a call when it ends, which may be after the
		// client has its answer.
		var delta map[string]float64
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			delta = map[string]float64{}
			for k, v := range viewCounts(t) {
				if d := v - before[k]; d != 0 {
					delta[k] = d
				}
			}
			if delta[ocgrpc.ServerCompletedRPCsView.Name+"grpc_server_method=grpc.health.v1.Health/Check,grpc_server_status=OK"] == 3 || time.Now().After(deadline) {
				break
			}
		}
		var ss []spanSummary
		for _, s := range spans.get()[exported:] {
			if s.SpanKind != trace.SpanKindServer {
				continue
			}
			ss = append(ss, spanSummary{s.Name, s.SpanKind, int(s.Code), s.HasRemoteParent,
				s.ParentSpanID == caller.SpanID && s.TraceID == caller.TraceID, len(s.MessageEvents), len(s.Attributes)})
		}
		slices.SortFunc(ss, func(a, b spanSummary) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		return delta, ss
	}
	wantViews, wantSpans := run(&ocgrpc.ServerHandler{})
	gotViews, gotSpans := run(&ServerHandler{})
	if len(wantViews) == 0 || len(wantSpans) != 4 {
		t.Fatalf("ocgrpc recorded views %v and spans %v: want rows and 4 server spans", wantViews, wantSpans)
	}
	for k, want := range wantViews {
		if got := gotViews[k]; got != want {
			t.Errorf("%s: got %v, want %v (as ocgrpc)", k, got, want)
		}
	}
	for k, got := range gotViews {
		if _, ok := wantViews[k]; !ok {
			t.Errorf("%s: got %v, which ocgrpc does not record", k, got)
		}
	}
	if !slices.Equal(gotSpans, wantSpans) {
		t.Errorf("server spans:\ngot  %v\nwant %v (as ocgrpc)", gotSpans, wantSpans)
	}
}

// The stats handler's work for one unary call that is not sampled, as
// gRPC drives it (the incoming metadata of a Go client): "ocgrpc" is
// ocgrpc.ServerHandler, the baseline; "logd" is ServerHandler. The
// views' worker goroutine counts only as far as its channel pushes back.
func BenchmarkServerHandler(b *testing.B) {
	m, err := NewMetrics()
	if err != nil {
		b.Fatal(err)
	}
	defer m.Unregister()
	ConfigureTracing(0.01)
	b.Cleanup(func() { ConfigureTracing(1e-4) })
	md := metadata.Pairs(":authority", "127.0.0.1:8400", "content-type", "application/grpc", "user-agent", "grpc-go/1.85.0", "te", "trailers", "grpc-timeout", "9999m")
	ctx := metadata.NewIncomingContext(context.Background(), md)
	info := &stats.RPCTagInfo{FullMethodName: "/log.v1.Log/Produce"}
	for _, tc := range []struct {
		name string
		h    stats.Handler
	}{{"handler=ocgrpc", &ocgrpc.ServerHandler{}}, {"handler=logd", &ServerHandler{}}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := tc.h.TagRPC(ctx, info)
				tc.h.HandleRPC(c, &stats.Begin{})
				tc.h.HandleRPC(c, &stats.InPayload{Length: 300, WireLength: 305})
				tc.h.HandleRPC(c, &stats.OutPayload{Length: 3, WireLength: 8})
				tc.h.HandleRPC(c, &stats.End{})
			}
		})
	}
}
