package log

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLogStartAppendCapped(t *testing.T) {
	// ftThreePerSegment with 100-byte values: a record takes 136 bytes on
	// disk.
	const v, rec = 100, 136
	value := ftPattern(1, v)
	for _, policy := range []SyncPolicy{SyncAlways, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			l := ftOpen(t, ftConfig(t, func(c *Config) { ftThreePerSegment(c); c.Sync = policy }))
			const max = 5*rec + rec/2
			for i := range 5 {
				p, err := l.StartAppendCapped([][]byte{value}, max)
				if err != nil {
					t.Fatalf("append %d under the cap: %v", i, err)
				}
				if err := p.Wait(); err != nil {
					t.Fatal(err)
				}
			}
			_, err := l.StartAppendCapped([][]byte{value}, max)
			var full *FullError
			if !errors.As(err, &full) || !errors.Is(err, ErrFull) {
				t.Fatalf("append over the cap: got %v, want a *FullError wrapping ErrFull", err)
			}
			if full.Bytes != 5*rec || full.Adding != rec || full.Max != max || full.Frees != 0 {
				t.Errorf("got %+v, want Bytes %d, Adding %d, Max %d, Frees 0 (no retention)", full, 5*rec, rec, max)
			}
			if next := l.NextOffset(); next != 5 {
				t.Errorf("NextOffset after the refusal = %d, want 5: nothing written", next)
			}
			if b := l.Stats().Bytes; b != 5*rec {
				t.Errorf("Stats().Bytes = %d, want %d", b, 5*rec)
			}
			// A smaller record still fits; no cap is no cap.
			if _, err := l.StartAppendCapped([][]byte{ftPattern(2, 10)}, max); err != nil {
				t.Errorf("a 10-byte record under the cap: %v", err)
			}
			if _, err := l.StartAppendCapped([][]byte{value, value}, 0); err != nil {
				t.Errorf("cap 0: %v", err)
			}
		})
	}
}

func TestLogStartAppendCappedConcurrent(t *testing.T) {
	// With SyncAlways, appends waiting for the fsync leader are not
	// written yet: the cap counts them too, so concurrent appenders never
	// pass it together.
	const v, rec = 100, 136
	l := ftOpen(t, ftConfig(t, func(c *Config) { c.Sync = SyncAlways; c.MaxRecordBytes = v }))
	const max = 50 * rec
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				p, err := l.StartAppendCapped([][]byte{ftPattern(uint64(g*100+i), v)}, max)
				if errors.Is(err, ErrFull) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if err := p.Wait(); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if acked != 50 {
		t.Errorf("acknowledged %d appends of 160 offered, want exactly 50 (the cap)", acked)
	}
	if b := l.Stats().Bytes; b != max {
		t.Errorf("Stats().Bytes = %d, want %d", b, max)
	}
}

func TestLogStartAppendCappedRetentionFrees(t *testing.T) {
	const v, rec = 100, 136
	value := ftPattern(1, v)
	clock := newFtClock()
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		ftThreePerSegment(c)
		c.Now = clock.Now
		c.RetentionAge = time.Hour
		c.RetentionCheck = time.Minute
	}))
	for range 4 { // a sealed segment of 3, and 1 in the active one
		if _, err := l.Append(value); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(20 * time.Minute)
	_, err := l.StartAppendCapped([][]byte{value}, 4*rec)
	var full *FullError
	if !errors.As(err, &full) {
		t.Fatalf("got %v, want a *FullError", err)
	}
	// The sealed segment expires in 40 minutes; the next check may come up
	// to a minute later.
	if want := 41 * time.Minute; full.Frees != want {
		t.Errorf("Frees = %v, want %v", full.Frees, want)
	}
}
