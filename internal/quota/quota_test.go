package quota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time for Quotas.now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newQuotas returns Quotas for the quota file text, on a fake clock.
func newQuotas(t testing.TB, text string) (*Quotas, *clock) {
	t.Helper()
	q := New(mustParse(t, text))
	c := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	q.now = c.now
	return q, c
}

func mustParse(t testing.TB, text string) *Config {
	t.Helper()
	c, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantExceeded checks that err is an *Exceeded of kind and returns it.
func wantExceeded(t testing.TB, err error, kind Kind) *Exceeded {
	t.Helper()
	var e *Exceeded
	if !errors.As(err, &e) || !errors.Is(err, ErrExceeded) {
		t.Fatalf("got %v, want an *Exceeded (%s)", err, kind)
	}
	if e.Kind != kind {
		t.Fatalf("got %s refusal (%v), want %s", e.Kind, e, kind)
	}
	return e
}

func take(t testing.TB, q *Quotas, principal string, kind Kind, n int) {
	t.Helper()
	if err := q.Take(principal, "t", kind, n); err != nil {
		t.Fatalf("Take(%s, %s, %d): %v", principal, kind, n, err)
	}
}

func TestTake(t *testing.T) {
	q, clk := newQuotas(t, `{"default": {"produce": {"rate": 1000, "burst": 2000}}}`)
	take(t, q, "alice", ProduceBytes, 1500)
	take(t, q, "alice", ProduceBytes, 500)

	// Empty: 100 bytes come in 100ms.
	err := q.Take("alice", "alice/x", ProduceBytes, 100)
	e := wantExceeded(t, err, ProduceBytes)
	if e.RetryAfter != 100*time.Millisecond || e.OverBurst || e.Principal != "alice" || e.Topic != "alice/x" || e.Limit != 1000 || e.Burst != 2000 {
		t.Errorf("got %+v, want RetryAfter 100ms, limit 1000, burst 2000, alice, alice/x", e)
	}
	for _, want := range []string{`principal "alice"`, "produce_bytes", "1000 bytes/s, burst 2000 bytes", "retry in 100ms"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("message %q does not say %q", e.Error(), want)
		}
	}
	// Refused calls take nothing: 50ms later 50 bytes are there, and still
	// only 50.
	clk.add(50 * time.Millisecond)
	if err := q.Take("alice", "t", ProduceBytes, 100); err == nil {
		t.Fatal("100 bytes passed with 50 in the bucket")
	}
	take(t, q, "alice", ProduceBytes, 50)
	// Other principals and kinds have their own buckets; no limit is no
	// limit.
	take(t, q, "bob", ProduceBytes, 2000)
	take(t, q, "alice", ConsumeBytes, 1<<30)
	if err := q.Allow("alice"); err != nil {
		t.Errorf("Allow with no requests quota: %v", err)
	}
}

func TestTakeConcurrentRefusalsTakeNothing(t *testing.T) {
	// Many calls refused at the same time leave the bucket as it was.
	q, clk := newQuotas(t, `{"default": {"produce": {"rate": 1000, "burst": 1000}}}`)
	take(t, q, "alice", ProduceBytes, 1000)
	clk.add(500 * time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if err := q.Take("alice", "t", ProduceBytes, 600); err == nil {
					t.Error("600 bytes passed with 500 in the bucket")
					return
				}
			}
		}()
	}
	wg.Wait()
	take(t, q, "alice", ProduceBytes, 500)
}

func TestTakeOverBurst(t *testing.T) {
	q, _ := newQuotas(t, `{"default": {"consume": {"rate": 10, "burst": 64}}}`)
	err := q.Take("bob", "bob/x", ConsumeBytes, 65)
	e := wantExceeded(t, err, ConsumeBytes)
	if !e.OverBurst || e.RetryAfter != 0 || e.Asked != 65 {
		t.Errorf("got %+v, want OverBurst, no RetryAfter, Asked 65", e)
	}
	if !strings.Contains(e.Error(), "65 bytes is more than the consume_bytes burst") || !strings.Contains(e.Error(), "can never pass") {
		t.Errorf("message %q does not say the call can never pass", e.Error())
	}
	take(t, q, "bob", ConsumeBytes, 64) // the refusal took nothing
}

func TestAllow(t *testing.T) {
	q, clk := newQuotas(t, `{"default": {"requests": {"rate": 2, "burst": 3}}, "principals": {"root": {"requests": {"rate": 0}}}}`)
	for i := range 3 {
		if err := q.Allow("alice"); err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
	}
	e := wantExceeded(t, q.Allow("alice"), Requests)
	if e.RetryAfter != 500*time.Millisecond {
		t.Errorf("RetryAfter = %v, want 500ms", e.RetryAfter)
	}
	if !strings.Contains(e.Error(), "2 requests/s, burst 3") {
		t.Errorf("message %q does not give the limit", e.Error())
	}
	clk.add(500 * time.Millisecond)
	if err := q.Allow("alice"); err != nil {
		t.Errorf("after 500ms: %v", err)
	}
	for range 100 {
		if err := q.Allow("root"); err != nil {
			t.Fatalf("root has no requests quota: %v", err)
		}
	}
}

func TestWait(t *testing.T) {
	// Real time: 10000 bytes/s.
	q := New(mustParse(t, `{"default": {"produce": {"rate": 10000, "burst": 1000}}}`))
	ctx := context.Background()
	if err := q.Wait(ctx, "alice", "t", ProduceBytes, 1000); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := q.Wait(ctx, "alice", "t", ProduceBytes, 1000); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("the second 1000 bytes came after %v, want about 100ms", d)
	}

	t.Run("deadline too near", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := q.Wait(ctx, "bob", "t", ProduceBytes, 1000) // full bucket
		if err != nil {
			t.Fatal(err)
		}
		err = q.Wait(ctx, "bob", "t", ProduceBytes, 1000)
		e := wantExceeded(t, err, ProduceBytes)
		if e.RetryAfter < 50*time.Millisecond || e.RetryAfter > 100*time.Millisecond {
			t.Errorf("RetryAfter = %v, want about 100ms", e.RetryAfter)
		}
	})
	t.Run("canceled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		if err := q.Wait(ctx, "carol", "t", ProduceBytes, 1000); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(10*time.Millisecond, cancel)
		if err := q.Wait(ctx, "carol", "t", ProduceBytes, 1000); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	t.Run("over burst", func(t *testing.T) {
		err := q.Wait(ctx, "dave", "t", ProduceBytes, 1001)
		if e := wantExceeded(t, err, ProduceBytes); !e.OverBurst {
			t.Errorf("got %+v, want OverBurst", e)
		}
	})
}

func TestOpenStream(t *testing.T) {
	q, _ := newQuotas(t, `{"default": {"streams": 2}, "principals": {"root": {"streams": 0}}}`)
	r1, err := q.OpenStream("alice")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := q.OpenStream("alice")
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.OpenStream("alice")
	if e := wantExceeded(t, err, Streams); e.Limit != 2 || !strings.Contains(e.Error(), "2 streams open") {
		t.Errorf("got %+v (%v), want limit 2", e, e)
	}
	if _, err := q.OpenStream("bob"); err != nil {
		t.Errorf("bob: %v", err)
	}
	r1()
	r1() // a second release changes nothing
	r3, err := q.OpenStream("alice")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := q.OpenStream("alice"); err == nil {
		t.Fatal("a third stream passed: a double release counted twice")
	}
	r2()
	r3()
	for range 10 {
		if _, err := q.OpenStream("root"); err != nil {
			t.Fatalf("root has no cap: %v", err)
		}
	}
}

func TestSetKeepsState(t *testing.T) {
	q, clk := newQuotas(t, `{"default": {"produce": {"rate": 100, "burst": 1000}, "streams": 5}}`)
	take(t, q, "alice", ProduceBytes, 1000)
	release, err := q.OpenStream("alice")
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	// The same limit and a new consume limit: alice's produce bucket is
	// still empty.
	q.Set(mustParse(t, `{"default": {"produce": {"rate": 100, "burst": 1000}, "consume": {"rate": 5}, "streams": 5}}`))
	err = q.Take("alice", "t", ProduceBytes, 100)
	if e := wantExceeded(t, err, ProduceBytes); e.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v, want 1s", e.RetryAfter)
	}
	take(t, q, "alice", ConsumeBytes, 5)

	// A bigger burst and rate: no fresh burst, the new rate from now on.
	q.Set(mustParse(t, `{"default": {"produce": {"rate": 1000, "burst": 100000}, "streams": 1}}`))
	err = q.Take("alice", "t", ProduceBytes, 1000)
	if e := wantExceeded(t, err, ProduceBytes); e.RetryAfter != time.Second || e.Burst != 100000 {
		t.Errorf("got %+v, want RetryAfter 1s at the new rate, burst 100000", e)
	}
	// The stream open before counts against the new cap of 1.
	wantExceeded(t, func() error { _, err := q.OpenStream("alice"); return err }(), Streams)

	// A principal override applies to its existing bucket at once.
	q.Set(mustParse(t, `{"default": {"produce": {"rate": 1000, "burst": 100000}}, "principals": {"alice": {"produce": {"rate": 0}}}}`))
	take(t, q, "alice", ProduceBytes, 1<<20)
	// Limited again: a bucket that had no limit starts full.
	q.Set(mustParse(t, `{"default": {"produce": {"rate": 1000, "burst": 100000}}}`))
	take(t, q, "alice", ProduceBytes, 100000)

	// Time passes at the rate in force.
	clk.add(2 * time.Second)
	take(t, q, "alice", ProduceBytes, 2000)
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quota.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"default": {"streams": 1}}`)
	q := New(nil)
	if err := q.Reload(path); err != nil {
		t.Fatal(err)
	}
	if _, err := q.OpenStream("alice"); err != nil {
		t.Fatal(err)
	}
	wantExceeded(t, func() error { _, err := q.OpenStream("alice"); return err }(), Streams)

	write(`{"default": {"streams": 1}, "topics": {"*": {"max_bytes": -1}}}`)
	if err := q.Reload(path); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad file: got %v, want ErrInvalid", err)
	}
	wantExceeded(t, func() error { _, err := q.OpenStream("alice"); return err }(), Streams)

	write(`{"topics": {"*": {"max_bytes": 10}}}`)
	if err := q.Reload(path); err != nil {
		t.Fatal(err)
	}
	if _, err := q.OpenStream("alice"); err != nil {
		t.Errorf("streams cap lifted: %v", err)
	}
	if got := q.TopicCap("alice/x"); got != 10 {
		t.Errorf("TopicCap = %d, want 10", got)
	}
}

func TestNilQuotas(t *testing.T) {
	var q *Quotas
	if err := q.Allow("x"); err != nil {
		t.Error(err)
	}
	if err := q.Take("x", "t", ProduceBytes, 1<<30); err != nil {
		t.Error(err)
	}
	if err := q.Wait(context.Background(), "x", "t", ConsumeBytes, 1<<30); err != nil {
		t.Error(err)
	}
	release, err := q.OpenStream("x")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if q.TopicCap("t") != 0 {
		t.Error("nil Quotas caps a topic")
	}
}

func TestSweep(t *testing.T) {
	q, _ := newQuotas(t, `{"default": {"produce": {"rate": 1, "burst": 10}}}`)
	take(t, q, "busy", ProduceBytes, 10) // not idle: its bucket is empty
	for i := range 10 * minSweep {
		take(t, q, fmt.Sprintf("p%d", i), ProduceBytes, 0) // idle: full
	}
	q.mu.RLock()
	n := len(q.buckets)
	q.mu.RUnlock()
	if n > 2*minSweep {
		t.Errorf("%d buckets kept for %d principals, most of them idle; want at most %d", n, 10*minSweep+1, 2*minSweep)
	}
	if err := q.Take("busy", "t", ProduceBytes, 1); err == nil {
		t.Error("the busy principal's empty bucket was dropped: it got a fresh burst")
	}
}

func TestReport(t *testing.T) {
	q, clk := newQuotas(t, `{}`)
	for i := range reportBurst {
		if ok, n := q.Report("alice", ProduceBytes); !ok || n != 0 {
			t.Fatalf("refusal %d: Report = %v, %d; want true, 0", i, ok, n)
		}
	}
	for range 50 {
		if ok, _ := q.Report("alice", ProduceBytes); ok {
			t.Fatal("a flood of refusals is all logged")
		}
	}
	if ok, _ := q.Report("bob", ProduceBytes); !ok {
		t.Error("alice's flood silenced bob")
	}
	if ok, _ := q.Report("alice", Requests); !ok {
		t.Error("alice's produce refusals silenced her requests refusals")
	}
	clk.add(reportEvery)
	if ok, n := q.Report("alice", ProduceBytes); !ok || n != 50 {
		t.Errorf("a second later: Report = %v, %d; want true, 50 suppressed", ok, n)
	}
}

func TestConcurrentUseAndSet(t *testing.T) {
	q := New(mustParse(t, `{"default": {"produce": {"rate": 1e9, "burst": 1000000}, "requests": {"rate": 1e9, "burst": 1000000}, "streams": 100}}`))
	cfgs := []*Config{
		mustParse(t, `{"default": {"produce": {"rate": 1e9, "burst": 1000000}, "streams": 100}}`),
		mustParse(t, `{"default": {"requests": {"rate": 1e9, "burst": 1000000}}, "topics": {"*": {"max_bytes": 5}}}`),
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				q.Set(cfgs[i%2])
			}
		}
	}()
	var workers sync.WaitGroup
	for g := range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			p := fmt.Sprintf("p%d", g%2)
			for range 2000 {
				if err := q.Take(p, "t", ProduceBytes, 10); err != nil {
					t.Error(err)
					return
				}
				if err := q.Allow(p); err != nil {
					t.Error(err)
					return
				}
				release, err := q.OpenStream(p)
				if err != nil {
					t.Error(err)
					return
				}
				release()
				q.TopicCap("t")
				q.Report(p, Streams)
			}
		}()
	}
	workers.Wait()
	close(stop)
	wg.Wait()
}
