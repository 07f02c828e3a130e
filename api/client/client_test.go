package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/server"
	"github.com/logd/logd/internal/tlsconfig"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("error %v: code %v, want %v", err, got, want)
	}
}

func TestProduceConsumeOffsets(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, "alice")
	ctx := testCtx(t)
	for i := range 3 {
		off, err := c.Produce(ctx, "alice/t", fmt.Appendf(nil, "v%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i) {
			t.Fatalf("offset %d, want %d", off, i)
		}
	}
	rec, err := c.Consume(ctx, "alice/t", 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(rec.GetValue()) != "v1" || rec.GetOffset() != 1 {
		t.Fatalf("record %v", rec)
	}
	_, err = c.Consume(ctx, "alice/t", 3)
	wantCode(t, err, codes.OutOfRange)

	lo, next, err := c.Offsets(ctx, "alice/t")
	if err != nil || lo != 0 || next != 3 {
		t.Fatalf("Offsets = %d, %d, %v; want 0, 3, nil", lo, next, err)
	}
	_, _, err = c.Offsets(ctx, "alice/missing")
	wantCode(t, err, codes.NotFound)
	_, _, err = c.Offsets(ctx, "bob/t")
	wantCode(t, err, codes.PermissionDenied)

	if c.Log() == nil {
		t.Fatal("Log() is nil")
	}
}

func TestDialErrors(t *testing.T) {
	ts := startServer(t)
	good := ts.Config("alice")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "unreadable.pem")
	if err := os.WriteFile(unreadable, nil, 0o000); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	_, bobKey := pki.ClientFiles("bob")

	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		wants []string
	}{
		{"missing CA", func(c *Config) { c.CAFile = missing }, []string{"CA file", missing, "no such file"}},
		{"missing cert", func(c *Config) { c.CertFile = missing }, []string{"certificate file", missing}},
		{"missing key", func(c *Config) { c.KeyFile = missing }, []string{"key file", missing}},
		{"CA not PEM", func(c *Config) { c.CAFile = notPEM }, []string{"CA file", notPEM, "not PEM"}},
		{"cert not PEM", func(c *Config) { c.CertFile = notPEM }, []string{"certificate file", notPEM, "not PEM"}},
		{"key not PEM", func(c *Config) { c.KeyFile = notPEM }, []string{"key file", notPEM, "not PEM"}},
		{"key mismatch", func(c *Config) { c.KeyFile = filepath.Join(certDir, bobKey) }, []string{good.CertFile, filepath.Join(certDir, bobKey)}},
		{"unset key", func(c *Config) { c.KeyFile = "" }, []string{"key file not set"}},
		{"no port", func(c *Config) { c.Addr = "localhost" }, []string{"localhost"}},
		{"unreadable", func(c *Config) { c.CAFile = unreadable }, []string{"CA file", unreadable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unreadable" && os.Geteuid() == 0 {
				t.Skip("root reads mode 000 files")
			}
			cfg := good
			tc.edit(&cfg)
			c, err := Dial(cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestServerNameDefaultsToHost(t *testing.T) {
	ts := startServer(t)
	// The server certificate is for localhost and 127.0.0.1.
	cfg := ts.Config("alice")
	_, port, _ := net.SplitHostPort(cfg.Addr)
	cfg.Addr = net.JoinHostPort("127.0.0.1", port)
	tlsCfg, err := TLSConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tlsCfg.ServerName != "127.0.0.1" || tlsCfg.MinVersion < 0x0303 {
		t.Fatalf("ServerName %q MinVersion %x", tlsCfg.ServerName, tlsCfg.MinVersion)
	}
	cfg.ServerName = "not-the-server.example"
	c, err := Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Produce(testCtx(t), "alice/t", []byte("x"))
	wantCode(t, err, codes.Unavailable) // the handshake fails
}

func TestPermissionDenied(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	_, err := dial(t, ts, "nobody").Produce(ctx, "t", []byte("x"))
	wantCode(t, err, codes.PermissionDenied)

	root := dial(t, ts, "root")
	if _, err := root.Produce(ctx, "bob/t", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Follow fails at once: one call, no retry loop.
	var calls atomic.Int32
	count := grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		calls.Add(1)
		return streamer(ctx, desc, cc, method, opts...)
	})
	alice, err := Dial(ts.Config("alice"), count)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	start := time.Now()
	err = alice.Follow(ctx, "bob/t", 0, func(*logv1.Record) error {
		t.Error("fn called")
		return nil
	})
	wantCode(t, err, codes.PermissionDenied)
	if n := calls.Load(); n != 1 {
		t.Errorf("%d ConsumeStream calls, want 1", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Follow took %v", d)
	}

	// Non-retryable too: a missing topic.
	err = alice.Follow(ctx, "alice/missing", 0, func(*logv1.Record) error { return nil })
	wantCode(t, err, codes.NotFound)

	// A producer's denied records fail their acks and Close.
	p, err := alice.NewProducer(ctx, "bob/t", 4)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Send(ctx, []byte("x"))
	if err == nil {
		_, err = a.Wait(ctx)
	}
	wantCode(t, err, codes.PermissionDenied)
	wantCode(t, p.Close(), codes.PermissionDenied)
	_, err = p.Send(ctx, []byte("y"))
	wantCode(t, err, codes.PermissionDenied)
}

func TestProducerOrder(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, "alice")
	ctx := testCtx(t)
	const n, window = 1000, 64
	p, err := c.NewProducer(ctx, "alice/order", window)
	if err != nil {
		t.Fatal(err)
	}
	if p.Window() != window {
		t.Fatalf("Window() = %d", p.Window())
	}
	acks := make([]*Ack, n)
	for i := range n {
		acks[i], err = p.Send(ctx, fmt.Appendf(nil, "record %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if now, _ := p.outstanding(); now > window {
			t.Fatalf("%d outstanding, window %d", now, window)
		}
	}
	for i, a := range acks {
		off, err := a.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i) {
			t.Fatalf("ack %d: offset %d", i, off)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.Send(ctx, []byte("late")); !errors.Is(err, ErrProducerClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, most := p.outstanding(); most > window {
		t.Fatalf("%d outstanding at once, window %d", most, window)
	}
	for i := range n {
		rec, err := c.Consume(ctx, "alice/order", uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("record %d", i); string(rec.GetValue()) != want {
			t.Fatalf("offset %d: %q, want %q", i, rec.GetValue(), want)
		}
	}
}

// TestProducerWindowConcurrent sends from many goroutines to a server
// that fsyncs every append, and checks the window is never exceeded.
func TestProducerWindowConcurrent(t *testing.T) {
	ts := startServer(t, func(_ *server.Config, l *log.Config) { l.Sync = log.SyncAlways })
	c := dial(t, ts, "alice")
	ctx := testCtx(t)
	const window = 8
	p, err := c.NewProducer(ctx, "alice/w", window)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	offsets := make(chan uint64, 400)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				a, err := p.Send(ctx, fmt.Appendf(nil, "%d-%d", g, i))
				if err != nil {
					t.Error(err)
					return
				}
				if now, _ := p.outstanding(); now > window {
					t.Errorf("%d outstanding, window %d", now, window)
				}
				off, err := a.Wait(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				offsets <- off
			}
		})
	}
	wg.Wait()
	close(offsets)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for off := range offsets {
		if seen[off] {
			t.Fatalf("offset %d twice", off)
		}
		seen[off] = true
	}
	if len(seen) != 400 {
		t.Fatalf("%d offsets, want 400", len(seen))
	}
	_, most := p.outstanding()
	if most > window {
		t.Fatalf("%d outstanding at once, window %d", most, window)
	}
	t.Logf("at most %d of %d outstanding", most, window)
}

// heldServer answers a ProduceStream only when told to, to show that
// Send blocks on a full window.
type heldServer struct {
	logv1.UnimplementedLogServer
	received chan []byte   // each request's value
	release  chan struct{} // one answer per token
	fail     error         // ends the stream after the released answers
}

func (h *heldServer) ProduceStream(stream logv1.Log_ProduceStreamServer) error {
	reqs := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				reqs <- err
				return
			}
			h.received <- req.GetRecord().GetValue()
		}
	}()
	var off uint64
	for {
		select {
		case _, ok := <-h.release:
			if !ok {
				return h.fail
			}
			if err := stream.Send(&logv1.ProduceResponse{Offset: off}); err != nil {
				return err
			}
			off++
		case <-reqs:
			return nil
		case <-stream.Context().Done():
			return nil
		}
	}
}

func startHeldServer(t *testing.T, h *heldServer) Config {
	t.Helper()
	tlsCfg, err := tlsconfig.Server(tlsconfig.Files{
		Cert: filepath.Join(certDir, pki.ServerFile),
		Key:  filepath.Join(certDir, pki.ServerKeyFile),
		CA:   filepath.Join(certDir, pki.CAFile),
	})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	logv1.RegisterLogServer(gs, h)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cert, key := pki.ClientFiles("alice")
	return Config{
		Addr:     lis.Addr().String(),
		CAFile:   filepath.Join(certDir, pki.CAFile),
		CertFile: filepath.Join(certDir, cert),
		KeyFile:  filepath.Join(certDir, key),
	}
}

func TestProducerWindowBlocks(t *testing.T) {
	h := &heldServer{received: make(chan []byte, 100), release: make(chan struct{})}
	cfg := startHeldServer(t, h)
	c, err := Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	const window = 3
	p, err := c.NewProducer(ctx, "", window)
	if err != nil {
		t.Fatal(err)
	}
	var acks []*Ack
	for i := range window {
		a, err := p.Send(ctx, fmt.Appendf(nil, "%d", i))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	for i := range window {
		if v := <-h.received; string(v) != fmt.Sprint(i) {
			t.Fatalf("server got %q, want %d", v, i)
		}
	}
	// The window is full: Send number window+1 blocks until ctx ends...
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = p.Send(short, []byte("blocked"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a full window: %v, want DeadlineExceeded", err)
	}
	if now, _ := p.outstanding(); now != window {
		t.Fatalf("%d outstanding, want %d", now, window)
	}
	// ...or until an ack arrives.
	sent := make(chan *Ack)
	go func() {
		a, err := p.Send(ctx, []byte("next"))
		if err != nil {
			t.Error(err)
		}
		sent <- a
	}()
	select {
	case <-sent:
		t.Fatal("Send returned with the window full")
	case <-time.After(100 * time.Millisecond):
	}
	select {
	case v := <-h.received:
		t.Fatalf("server got %q beyond the window", v)
	default:
	}
	h.release <- struct{}{}
	a := <-sent
	if a == nil {
		t.FailNow()
	}
	if off, err := acks[0].Wait(ctx); off != 0 || err != nil {
		t.Fatalf("ack 0: %d, %v", off, err)
	}
	if v := <-h.received; string(v) != "next" {
		t.Fatalf("server got %q", v)
	}
	acks = append(acks[1:], a)
	// Answer one more, then fail the stream: the rest get the error.
	h.release <- struct{}{}
	h.fail = status.Error(codes.Internal, "boom")
	close(h.release)
	if off, err := acks[0].Wait(ctx); off != 1 || err != nil {
		t.Fatalf("ack 1: %d, %v", off, err)
	}
	for _, a := range acks[1:] {
		_, err := a.Wait(ctx)
		wantCode(t, err, codes.Internal)
	}
	wantCode(t, p.Close(), codes.Internal)
	_, err = p.Send(ctx, []byte("after"))
	wantCode(t, err, codes.Internal)
}

func TestProducerContextEnds(t *testing.T) {
	h := &heldServer{received: make(chan []byte, 100), release: make(chan struct{})}
	cfg := startHeldServer(t, h)
	c, err := Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(testCtx(t))
	p, err := c.NewProducer(ctx, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Send(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	<-h.received
	cancel()
	_, err = a.Wait(context.Background())
	wantCode(t, err, codes.Canceled)
	wantCode(t, p.Close(), codes.Canceled)
}

// follower runs Follow in a goroutine and collects what it delivers.
type follower struct {
	mu   sync.Mutex
	recs []*logv1.Record
	more chan struct{}
	done chan error
}

func follow(ctx context.Context, c *Client, topic string, from uint64) *follower {
	f := &follower{more: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		f.done <- c.Follow(ctx, topic, from, func(r *logv1.Record) error {
			f.mu.Lock()
			f.recs = append(f.recs, r)
			f.mu.Unlock()
			select {
			case f.more <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	return f
}

// waitFor waits until n records were delivered.
func (f *follower) waitFor(t *testing.T, n int) []*logv1.Record {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.recs)
		recs := append([]*logv1.Record(nil), f.recs...)
		f.mu.Unlock()
		if got >= n {
			return recs
		}
		select {
		case <-f.more:
		case err := <-f.done:
			t.Fatalf("Follow returned %v after %d records", err, got)
		case <-deadline:
			t.Fatalf("%d records delivered, want %d", got, n)
		}
	}
}

func checkRecords(t *testing.T, recs []*logv1.Record, from uint64, n int) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		off := from + uint64(i)
		if r.GetOffset() != off || !bytes.Equal(r.GetValue(), fmt.Appendf(nil, "r%d", off)) {
			t.Fatalf("record %d: offset %d value %q, want offset %d", i, r.GetOffset(), r.GetValue(), off)
		}
	}
}

// produceReady produces, waiting for the connection to be ready.
func produceReady(ctx context.Context, t *testing.T, c *Client, topic string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		resp, err := c.Log().Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: fmt.Appendf(nil, "r%d", i)}}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOffset() != uint64(i) {
			t.Fatalf("offset %d, want %d", resp.GetOffset(), i)
		}
	}
}

func TestFollowAcrossRestart(t *testing.T) {
	dataDir := t.TempDir()
	ts, err := StartTestServer(dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			ts.Stop()
		}
	}()
	c, err := Dial(ts.Config("root"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()

	produceReady(ctx, t, c, "t", 0, 30)
	f := follow(ctx, c, "t", 10)
	produceReady(ctx, t, c, "t", 30, 50)
	f.waitFor(t, 40)

	// Restart on the same data and address, twice; the second time with
	// the follower in the middle of its backoff.
	for round := range 2 {
		if err := ts.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped = true
		time.Sleep(time.Duration(round) * 300 * time.Millisecond)
		ts, err = StartTestServer(dataDir, ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		stopped = false
		lo, hi := 50+round*50, 100+round*50
		produceReady(ctx, t, c, "t", lo, hi)
		f.waitFor(t, hi-10)
	}
	cancel()
	if err := <-f.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v, want context.Canceled", err)
	}
	checkRecords(t, f.recs, 10, 140)
}

func TestFollowStopsOnFnError(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts, "alice")
	ctx := testCtx(t)
	produceReady(ctx, t, c, "alice/f", 0, 5)
	stop := errors.New("stop")
	var got []*logv1.Record
	err := c.Follow(ctx, "alice/f", 1, func(r *logv1.Record) error {
		got = append(got, r)
		if r.GetOffset() == 3 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("Follow returned %v, want fn's error", err)
	}
	checkRecords(t, got, 1, 3)
}

func TestFollowContextEndsWhileServerDown(t *testing.T) {
	ts, err := StartTestServer(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(ts.Config("root"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	produceReady(ctx, t, c, "t", 0, 1)
	f := follow(ctx, c, "t", 0)
	f.waitFor(t, 1)
	if err := ts.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // retrying against a closed port
	select {
	case err := <-f.done:
		t.Fatalf("Follow returned %v while the server was down", err)
	default:
	}
	cancel()
	select {
	case err := <-f.done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Follow returned %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Follow did not return after cancel")
	}
}

func TestAdmin(t *testing.T) {
	ts := startServer(t)
	ctx := testCtx(t)
	alice := dial(t, ts, "alice")
	for _, topic := range []string{"alice/a", "alice/b", "alice/b"} {
		if _, err := alice.Produce(ctx, topic, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dial(t, ts, "root").Produce(ctx, "bob/x", []byte("x")); err != nil {
		t.Fatal(err)
	}

	topics, err := alice.ListTopics(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 2 || topics[0].GetName() != "alice/a" || topics[1].GetName() != "alice/b" || topics[1].GetRecords() != 2 {
		t.Fatalf("ListTopics as alice = %v, want alice/a and alice/b (2 records)", topics)
	}
	if topics, err := alice.ListTopics(ctx, "alice/b"); err != nil || len(topics) != 1 {
		t.Fatalf("ListTopics(alice/b) = %v, %v; want alice/b", topics, err)
	}
	if topics, err := dial(t, ts, "nobody").ListTopics(ctx, ""); err != nil || len(topics) != 0 {
		t.Fatalf("ListTopics as nobody = %v, %v; want none and no error", topics, err)
	}
	d, err := alice.DescribeTopic(ctx, "alice/b")
	if err != nil || d.GetNextOffset() != 2 || d.GetHighestOffset() != 1 {
		t.Fatalf("DescribeTopic(alice/b) = %v, %v; want offsets 0..1", d, err)
	}
	_, err = alice.DescribeTopic(ctx, "bob/x")
	wantCode(t, err, codes.PermissionDenied)
	_, err = alice.DeleteTopic(ctx, "bob/x")
	wantCode(t, err, codes.PermissionDenied)

	// A Follow of a topic deleted under it ends with NotFound: the
	// offsets of a recreated topic would not follow on.
	followed := make(chan error, 1)
	got := make(chan uint64, 2)
	go func() {
		followed <- alice.Follow(ctx, "alice/b", 0, func(r *logv1.Record) error {
			got <- r.GetOffset()
			return nil
		})
	}()
	<-got
	<-got
	d, err = alice.DeleteTopic(ctx, "alice/b")
	if err != nil || d.GetName() != "alice/b" || d.GetRecords() != 2 {
		t.Fatalf("DeleteTopic(alice/b) = %v, %v; want its 2 records", d, err)
	}
	select {
	case err := <-followed:
		wantCode(t, err, codes.NotFound)
	case <-time.After(10 * time.Second):
		t.Fatal("Follow of a deleted topic still runs after 10s")
	}
	_, err = alice.DescribeTopic(ctx, "alice/b")
	wantCode(t, err, codes.NotFound)
	if alice.Admin() == nil {
		t.Fatal("Admin() is nil")
	}
}
