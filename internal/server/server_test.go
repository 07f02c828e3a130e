package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/tlsconfig"
)

func TestMain(m *testing.M) {
	// OpenCensus runs one worker goroutine for the life of the process.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

// certDir holds one set of cfssl certificates for the whole package (CA,
// server, root, alice, bob, nobody), and otherCA a second CA with a client
// "root" that the server must not trust.
var certDir, otherCA string

func init() {
	// Made once per test binary; tests only read them.
	dir, err := os.MkdirTemp("", "logd-server-test-")
	if err != nil {
		panic(err)
	}
	certDir = filepath.Join(dir, "pki")
	otherCA = filepath.Join(dir, "other")
	if err := pki.Generate(certDir, pki.DefaultClients...); err != nil {
		panic(err)
	}
	if err := pki.Generate(otherCA, "root"); err != nil {
		panic(err)
	}
}

type testServer struct {
	addr   string
	topics *log.Topics
	srv    *Server
}

type serverOpt func(*Config, *log.Config)

// startServer runs a Server over mutual TLS on 127.0.0.1 with the default
// policy, and stops it when the test ends.
func startServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	lcfg := log.DefaultConfig(t.TempDir())
	lcfg.MaxRecordBytes = 64 << 10
	lcfg.Logger = zaptest.NewLogger(t)
	tlsCfg, err := tlsconfig.Server(tlsconfig.Files{
		Cert: filepath.Join(certDir, pki.ServerFile),
		Key:  filepath.Join(certDir, pki.ServerKeyFile),
		CA:   filepath.Join(certDir, pki.CAFile),
	})
	if err != nil {
		t.Fatal(err)
	}
	authz, err := auth.Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Authorizer: authz, TLS: tlsCfg, Logger: zaptest.NewLogger(t)}
	for _, o := range opts {
		o(&cfg, &lcfg)
	}
	cfg.MaxRecordBytes = lcfg.MaxRecordBytes
	topics, err := log.OpenTopics(lcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Topics = topics
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := topics.Close(); err != nil {
			t.Errorf("close topics: %v", err)
		}
	})
	return &testServer{addr: lis.Addr().String(), topics: topics, srv: srv}
}

// dial connects as the client cn of certificate directory dir.
func dial(t testing.TB, addr, dir, cn string) *grpc.ClientConn {
	t.Helper()
	cert, key := pki.ClientFiles(cn)
	tlsCfg, err := tlsconfig.Client(tlsconfig.Files{
		Cert: filepath.Join(dir, cert),
		Key:  filepath.Join(dir, key),
		CA:   filepath.Join(certDir, pki.CAFile),
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func client(t testing.TB, ts *testServer, cn string) logv1.LogClient {
	t.Helper()
	return logv1.NewLogClient(dial(t, ts.addr, certDir, cn))
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t testing.TB, err error, want codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("got %v (%v), want %v", st.Code(), err, want)
	}
	return st
}

func produce(t testing.TB, c logv1.LogClient, topic, value string) uint64 {
	t.Helper()
	res, err := c.Produce(ctxT(t), &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(value)}})
	if err != nil {
		t.Fatalf("produce %q to %q: %v", value, topic, err)
	}
	return res.Offset
}

func TestProduceConsume(t *testing.T) {
	ts := startServer(t)
	c := client(t, ts, "alice")
	before := time.Now().Add(-time.Second)
	for i := range 5 {
		if got := produce(t, c, "alice/orders", fmt.Sprint("v", i)); got != uint64(i) {
			t.Fatalf("got offset %d, want %d", got, i)
		}
	}
	for i := range 5 {
		res, err := c.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/orders", Offset: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		r := res.GetRecord()
		if string(r.GetValue()) != fmt.Sprint("v", i) || r.GetOffset() != uint64(i) {
			t.Fatalf("got %q at %d, want v%d at %d", r.GetValue(), r.GetOffset(), i, i)
		}
		if ts := r.GetTime().AsTime(); ts.Before(before) || ts.After(time.Now()) {
			t.Fatalf("record time %v is not the append time", ts)
		}
	}
}

func TestDefaultTopic(t *testing.T) {
	// A client built from the book's proto sends no topic: it lands on
	// "default", which only root may use under the default policy.
	ts := startServer(t)
	root := client(t, ts, "root")
	off := produce(t, root, "", "book")
	res, err := root.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: log.DefaultTopic, Offset: off})
	if err != nil || string(res.GetRecord().GetValue()) != "book" {
		t.Fatalf("got %v, %v; want the record on the default topic", res, err)
	}
	_, err = client(t, ts, "alice").Produce(ctxT(t), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("x")}})
	wantCode(t, err, codes.PermissionDenied)
}

func TestErrors(t *testing.T) {
	ts := startServer(t, func(_ *Config, l *log.Config) { l.MaxRecordBytes = 1024 })
	c := client(t, ts, "root")
	produce(t, c, "t", "a")
	produce(t, c, "t", "b")

	t.Run("past the end", func(t *testing.T) {
		_, err := c.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "t", Offset: 2})
		st := wantCode(t, err, codes.OutOfRange)
		info := errorInfo(t, st)
		if info.Reason != ReasonOffsetOutOfRange || info.Metadata["lowest"] != "0" || info.Metadata["highest"] != "1" || info.Metadata["next"] != "2" {
			t.Fatalf("got details %v, want lowest 0, highest 1, next 2", info)
		}
	})
	t.Run("unknown topic", func(t *testing.T) {
		_, err := c.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "nope", Offset: 0})
		wantCode(t, err, codes.NotFound)
	})
	for _, topic := range []string{"/a", "a//b", "a/../b", "a b", "é", strings.Repeat("a", 250)} {
		t.Run("bad topic "+fmt.Sprintf("%.12q", topic), func(t *testing.T) {
			_, err := c.Produce(ctxT(t), &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte("x")}})
			st := wantCode(t, err, codes.InvalidArgument)
			if !contains(st.Message(), "topic") {
				t.Fatalf("message %q does not name the topic rule", st.Message())
			}
		})
	}
	t.Run("no record", func(t *testing.T) {
		_, err := c.Produce(ctxT(t), &logv1.ProduceRequest{Topic: "t"})
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("record too large", func(t *testing.T) {
		_, err := c.Produce(ctxT(t), &logv1.ProduceRequest{Topic: "t", Record: &logv1.Record{Value: make([]byte, 1025)}})
		st := wantCode(t, err, codes.InvalidArgument)
		if !contains(st.Message(), "record too large") {
			t.Fatalf("message %q does not say the record is too large", st.Message())
		}
		produce(t, c, "t", string(make([]byte, 1024)))
	})
	t.Run("huge message", func(t *testing.T) {
		_, err := c.Produce(ctxT(t), &logv1.ProduceRequest{Topic: "t", Record: &logv1.Record{Value: make([]byte, 4<<20)}})
		wantCode(t, err, codes.ResourceExhausted)
		produce(t, c, "t", "still serving")
	})
}

func errorInfo(t testing.TB, st *status.Status) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("status %v has no ErrorInfo", st)
	return nil
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

func TestCompacted(t *testing.T) {
	ts := startServer(t, func(_ *Config, l *log.Config) {
		l.MaxStoreBytes = 256
		l.MaxRecordBytes = 100
	})
	c := client(t, ts, "root")
	for range 20 {
		produce(t, c, "t", string(make([]byte, 60)))
	}
	l, err := ts.topics.Get("t")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Truncate(10); err != nil {
		t.Fatal(err)
	}
	lo := l.LowestOffset()
	if lo == 0 {
		t.Fatal("truncate removed nothing")
	}
	_, err = c.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "t", Offset: 0})
	st := wantCode(t, err, codes.OutOfRange)
	if info := errorInfo(t, st); info.Reason != ReasonOffsetCompacted || info.Metadata["lowest"] != fmt.Sprint(lo) {
		t.Fatalf("got %v, want reason %s and lowest %d", info, ReasonOffsetCompacted, lo)
	}
}

func TestProduceStream(t *testing.T) {
	ts := startServer(t)
	c := client(t, ts, "bob")
	stream, err := c.ProduceStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	errc := make(chan error, 1)
	go func() {
		// Send everything before reading an answer: the server must keep
		// reading while earlier records wait for their fsync.
		for i := range n {
			if err := stream.Send(&logv1.ProduceRequest{Topic: "bob/s", Record: &logv1.Record{Value: []byte(fmt.Sprint(i))}}); err != nil {
				errc <- err
				return
			}
		}
		errc <- stream.CloseSend()
	}()
	for i := range n {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.Offset != uint64(i) {
			t.Fatalf("got offset %d, want %d", res.Offset, i)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("got %v after the last answer, want EOF", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	res, err := c.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "bob/s", Offset: n - 1})
	if err != nil || string(res.GetRecord().GetValue()) != fmt.Sprint(n-1) {
		t.Fatalf("got %v, %v", res, err)
	}
}

func TestProduceStreamErrorAfterGoodRecords(t *testing.T) {
	ts := startServer(t)
	c := client(t, ts, "bob")
	stream, err := c.ProduceStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"bob/x", "bob/x", "alice/x"} {
		if err := stream.Send(&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		res, err := stream.Recv()
		if err != nil || res.Offset != uint64(i) {
			t.Fatalf("answer %d: got %v, %v", i, res, err)
		}
	}
	_, err = stream.Recv()
	st := wantCode(t, err, codes.PermissionDenied)
	if !contains(st.Message(), `"bob" may not produce topic "alice/x"`) {
		t.Fatalf("message %q does not say who may not do what", st.Message())
	}
}

func TestConsumeStreamFollowsTail(t *testing.T) {
	ts := startServer(t)
	c := client(t, ts, "alice")
	produce(t, c, "alice/f", "0")
	ctx, cancel := context.WithCancel(ctxT(t))
	stream, err := c.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "alice/f"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i < 50; i++ {
			time.Sleep(time.Millisecond)
			produce(t, client(t, ts, "alice"), "alice/f", fmt.Sprint(i))
		}
	}()
	for i := range 50 {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r := res.GetRecord(); r.GetOffset() != uint64(i) || string(r.GetValue()) != fmt.Sprint(i) {
			t.Fatalf("got %q at %d, want %d", r.GetValue(), r.GetOffset(), i)
		}
	}
	wg.Wait()
	cancel()
	_, err = stream.Recv()
	wantCode(t, err, codes.Canceled)
}

func TestShutdownEndsFollowers(t *testing.T) {
	ts := startServer(t)
	c := client(t, ts, "root")
	produce(t, c, "t", "x")
	stream, err := c.ConsumeStream(ctxT(t), &logv1.ConsumeRequest{Topic: "t", Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Make sure the stream is open on the server before shutting down.
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.srv.Shutdown(ctx)
		close(done)
	}()
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable)
	<-done
}

func TestHealth(t *testing.T) {
	ts := startServer(t)
	h := healthpb.NewHealthClient(dial(t, ts.addr, certDir, "nobody"))
	for _, svc := range []string{"", "log.v1.Log"} {
		res, err := h.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: got %v, %v; want SERVING", svc, res, err)
		}
	}
}

// TestACLMatrix checks every principal against every action on topics of
// its own, of another tenant's, with a sloppy prefix and the default.
func TestACLMatrix(t *testing.T) {
	ts := startServer(t)
	// Make every topic exist so that consume answers with the ACL, not
	// NotFound.
	root := client(t, ts, "root")
	topics := []string{"alice/a", "alicex/a", "bob/b", "default", "other"}
	for _, topic := range topics {
		produce(t, root, topic, "seed")
	}
	allowed := map[string]map[string]bool{
		"root":   {"alice/a": true, "alicex/a": true, "bob/b": true, "default": true, "other": true},
		"alice":  {"alice/a": true},
		"bob":    {"bob/b": true},
		"nobody": {},
	}
	for cn, ok := range allowed {
		c := client(t, ts, cn)
		for _, topic := range topics {
			want := codes.PermissionDenied
			if ok[topic] {
				want = codes.OK
			}
			t.Run(cn+"/produce/"+topic, func(t *testing.T) {
				_, err := c.Produce(ctxT(t), &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte("x")}})
				st := wantCode(t, err, want)
				if want != codes.OK && !contains(st.Message(), fmt.Sprintf("%q may not produce topic %q", cn, topic)) {
					t.Fatalf("message %q does not say which action on which topic", st.Message())
				}
			})
			t.Run(cn+"/consume/"+topic, func(t *testing.T) {
				_, err := c.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: topic, Offset: 0})
				wantCode(t, err, want)
			})
			t.Run(cn+"/consume-stream/"+topic, func(t *testing.T) {
				s, err := c.ConsumeStream(ctxT(t), &logv1.ConsumeRequest{Topic: topic, Offset: 0})
				if err == nil {
					_, err = s.Recv()
				}
				wantCode(t, err, want)
			})
			t.Run(cn+"/produce-stream/"+topic, func(t *testing.T) {
				s, err := c.ProduceStream(ctxT(t))
				if err == nil {
					err = s.Send(&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte("x")}})
				}
				if err == nil {
					_, err = s.Recv()
				}
				wantCode(t, err, want)
				if err == nil {
					s.CloseSend()
				}
			})
		}
	}
}

func TestUntrustedClients(t *testing.T) {
	ts := startServer(t)
	t.Run("certificate from another CA", func(t *testing.T) {
		c := logv1.NewLogClient(dial(t, ts.addr, otherCA, "root"))
		_, err := c.Produce(ctxT(t), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("x")}})
		wantCode(t, err, codes.Unavailable) // refused at the handshake
	})
	t.Run("no certificate", func(t *testing.T) {
		tlsCfg, err := tlsconfig.Client(tlsconfig.Files{
			Cert: filepath.Join(certDir, "root-client.pem"),
			Key:  filepath.Join(certDir, "root-client-key.pem"),
			CA:   filepath.Join(certDir, pki.CAFile),
		}, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg.Certificates = nil
		conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = logv1.NewLogClient(conn).Produce(ctxT(t), &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("x")}})
		if code := status.Code(err); code != codes.Unavailable && code != codes.Unauthenticated {
			t.Fatalf("got %v (%v), want the handshake refused", code, err)
		}
	})
	// The server kept serving.
	produce(t, client(t, ts, "root"), "t", "after")
}

// A streamed record's response, made in one allocation, is the one
// toProto makes.
func TestNewConsumeResponse(t *testing.T) {
	r := log.Record{Value: []byte("v"), Offset: 7, Time: time.Unix(1700000000, 123456789)}
	got := newConsumeResponse(r)
	want := &logv1.ConsumeResponse{Record: toProto(r)}
	if !proto.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { newConsumeResponse(r) }); n != 1 {
		t.Errorf("%v allocations per response, want 1", n)
	}
}
