package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/logd/logd/api/client"
	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/pki"
)

const timeout = 30 * time.Second

// startCeiling serves a new ceiling on 127.0.0.1 behind mutual TLS with
// fresh cfssl certificates and returns a client for root.
func startCeiling(t *testing.T) *client.Client {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Generate(dir, "root"); err != nil {
		t.Fatal(err)
	}
	gs, err := newServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	cert, key := pki.ClientFiles("root")
	c, err := client.Dial(client.Config{
		Addr:     lis.Addr().String(),
		CAFile:   filepath.Join(dir, pki.CAFile),
		CertFile: filepath.Join(dir, cert),
		KeyFile:  filepath.Join(dir, key),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("got %v (%v), want code %v", got, err, want)
	}
}

func TestProduceConsume(t *testing.T) {
	c := startCeiling(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	before := time.Now()
	for i, v := range []string{"a", "b", "c"} {
		off, err := c.Produce(ctx, "t", []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if off != uint64(i) {
			t.Errorf("produce %q: got offset %d, want %d", v, off, i)
		}
	}
	after := time.Now()
	for i, v := range []string{"a", "b", "c"} {
		r, err := c.Consume(ctx, "t", uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if string(r.GetValue()) != v || r.GetOffset() != uint64(i) {
			t.Errorf("consume %d: got %q at offset %d, want %q at %d", i, r.GetValue(), r.GetOffset(), v, i)
		}
		if at := r.GetTime().AsTime(); at.Before(before.Truncate(time.Microsecond)) || at.After(after) {
			t.Errorf("consume %d: got time %v, want between %v and %v", i, at, before, after)
		}
	}
	_, err := c.Consume(ctx, "t", 3)
	wantCode(t, err, codes.OutOfRange)
	_, err = c.Consume(ctx, "missing", 0)
	wantCode(t, err, codes.NotFound)
	_, err = c.Log().Produce(ctx, &logv1.ProduceRequest{Topic: "t"})
	wantCode(t, err, codes.InvalidArgument)

	// No topic is the default topic, as in logd.
	if off, err := c.Produce(ctx, "", []byte("d")); err != nil || off != 0 {
		t.Fatalf("produce to the default topic: got offset %d, %v; want 0", off, err)
	}
	if r, err := c.Consume(ctx, "default", 0); err != nil || string(r.GetValue()) != "d" {
		t.Fatalf("consume default 0: got %v, %v; want value d", r, err)
	}
}

func TestConcurrentProduce(t *testing.T) {
	c := startCeiling(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	const producers, each = 8, 50
	var mu sync.Mutex
	values := map[uint64]string{}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				v := fmt.Sprintf("%d-%d", p, i)
				off, err := c.Produce(ctx, "t", []byte(v))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if prev, dup := values[off]; dup {
					t.Errorf("offset %d given to %q and %q", off, prev, v)
				}
				values[off] = v
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for off := range uint64(producers * each) {
		r, err := c.Consume(ctx, "t", off)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.GetValue()) != values[off] {
			t.Errorf("offset %d: got %q, want %q", off, r.GetValue(), values[off])
		}
	}
}

func TestProduceStream(t *testing.T) {
	c := startCeiling(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p, err := c.NewProducer(ctx, "t", 16)
	if err != nil {
		t.Fatal(err)
	}
	var acks []*client.Ack
	for i := range 200 {
		a, err := p.Send(ctx, fmt.Appendf(nil, "%d", i))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	for i, a := range acks {
		off, err := a.Wait(ctx)
		if err != nil || off != uint64(i) {
			t.Fatalf("ack %d: got offset %d, %v; want %d", i, off, err, i)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Consume(ctx, "t", 199); err != nil || string(r.GetValue()) != "199" {
		t.Fatalf("consume 199: got %v, %v; want value 199", r, err)
	}
}

func TestConsumeStreamFollowsTail(t *testing.T) {
	c := startCeiling(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	produce := func(v string) {
		t.Helper()
		if _, err := c.Produce(ctx, "t", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		produce(fmt.Sprint(i))
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	st, err := c.Log().ConsumeStream(sctx, &logv1.ConsumeRequest{Topic: "t", Offset: 2})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(want uint64) {
		t.Helper()
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.GetRecord(); r.GetOffset() != want || string(r.GetValue()) != fmt.Sprint(want) {
			t.Fatalf("got %q at offset %d, want %d at %d", r.GetValue(), r.GetOffset(), want, want)
		}
	}
	for off := range uint64(3) {
		recv(2 + off)
	}
	// At the tail the stream waits for the next append.
	produce("5")
	recv(5)
	stop()
	if _, err := st.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("after cancel: got %v, want Canceled", err)
	}

	// From past the end it waits until the offset exists.
	st, err = c.Log().ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "t", Offset: 7})
	if err != nil {
		t.Fatal(err)
	}
	produce("6")
	produce("7")
	recv(7)

	st, err = c.Log().ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "missing"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, err, codes.NotFound)
}

// Values are packed into chunks; those that do not fit the current one
// start a new one, and one larger than a chunk gets its own.
func TestLargeValues(t *testing.T) {
	c := startCeiling(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sizes := []int{600 << 10, 600 << 10, 10, 2 << 20, 0, 300 << 10}
	var want [][]byte
	for i, n := range sizes {
		v := bytes.Repeat([]byte{byte('a' + i)}, n)
		if off, err := c.Produce(ctx, "t", v); err != nil || off != uint64(i) {
			t.Fatalf("produce %d bytes: got offset %d, %v; want %d", n, off, err, i)
		}
		want = append(want, v)
	}
	st, err := c.Log().ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range want {
		r, err := c.Consume(ctx, "t", uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range []*logv1.Record{r, resp.GetRecord()} {
			if !bytes.Equal(got.GetValue(), v) || got.GetOffset() != uint64(i) {
				t.Errorf("record %d: got %d bytes at offset %d, want %d bytes of %q", i, len(got.GetValue()), got.GetOffset(), len(v), rune('a'+i))
			}
		}
	}
}
