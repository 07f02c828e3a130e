package log

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// The behavioural suite: the same behaviours under every durability policy
// and two segment sizes, tiny segments that roll over every few records and
// the default ones.

// ftSuiteEnv is what a behaviour runs with.
type ftSuiteEnv struct {
	cfg  Config // a fresh directory, the policy and the size
	tiny bool   // segments hold a few records
}

// open opens the suite's log and closes it when the test ends.
func (e ftSuiteEnv) open(t testing.TB) *Log {
	t.Helper()
	return ftOpen(t, e.cfg)
}

// ftSuiteAppend appends ftValue for [from, to), mixing single appends
// and batches of up to four.
func ftSuiteAppend(t testing.TB, l *Log, from, to uint64) {
	t.Helper()
	for off := from; off < to; {
		n := min(uint64(off%5), to-off)
		if n <= 1 {
			got, err := l.Append(ftValue(off))
			if err != nil || got != off {
				t.Fatalf("Append = (%d, %v), want (%d, nil)", got, err, off)
			}
			off++
			continue
		}
		var values [][]byte
		for i := range n {
			values = append(values, ftValue(off+i))
		}
		got, err := l.AppendBatch(values)
		if err != nil || got != off {
			t.Fatalf("AppendBatch = (%d, %v), want (%d, nil)", got, err, off)
		}
		off += n
	}
}

// ftDurable returns the end of what the log has fsynced.
func ftDurable(l *Log) uint64 {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	return l.durable
}

var ftSuiteBehaviours = []struct {
	name string
	run  func(t *testing.T, e ftSuiteEnv)
}{
	{"append and read", func(t *testing.T, e ftSuiteEnv) {
		l := e.open(t)
		ftSuiteAppend(t, l, 0, 60)
		if lo, next := l.Offsets(); lo != 0 || next != 60 {
			t.Fatalf("Offsets = (%d, %d), want (0, 60)", lo, next)
		}
		ftCheckRange(t, l, 0, 60)
		segs := l.Stats().Segments
		if e.tiny && segs < 10 {
			t.Errorf("tiny segments: %d segments for 60 records, want 10 or more", segs)
		}
		if !e.tiny && segs != 1 {
			t.Errorf("default segments: %d segments for 60 records, want 1", segs)
		}
		for _, base := range ftBases(t, e.cfg.Dir, storeSuffix) {
			fi, err := os.Stat(segmentName(e.cfg.Dir, base, storeSuffix))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() > l.Config().MaxStoreBytes {
				t.Errorf("segment %d: %d bytes, over MaxStoreBytes", base, fi.Size())
			}
		}
	}},
	{"record limits", func(t *testing.T, e ftSuiteEnv) {
		l := e.open(t)
		maxRec := l.Config().MaxRecordBytes
		off, err := l.AppendBatch([][]byte{nil, make([]byte, maxRec), {}})
		if err != nil || off != 0 {
			t.Fatalf("AppendBatch(empty, max, empty) = (%d, %v), want (0, nil)", off, err)
		}
		if _, err := l.Append(make([]byte, maxRec+1)); !errors.Is(err, ErrRecordTooLarge) {
			t.Fatalf("Append(MaxRecordBytes+1) = %v, want ErrRecordTooLarge", err)
		}
		if _, err := l.AppendBatch(nil); !errors.Is(err, ErrEmptyBatch) {
			t.Fatalf("AppendBatch(nil) = %v, want ErrEmptyBatch", err)
		}
		for off, n := range []int{0, maxRec, 0} {
			rec, err := l.Read(uint64(off))
			if err != nil || len(rec.Value) != n {
				t.Fatalf("Read(%d) = (%d bytes, %v), want (%d bytes, nil)", off, len(rec.Value), err, n)
			}
		}
		if next := l.NextOffset(); next != 3 {
			t.Fatalf("NextOffset = %d, want 3", next)
		}
	}},
	{"reader follows", func(t *testing.T, e ftSuiteEnv) {
		l := e.open(t)
		ftSuiteAppend(t, l, 0, 30)
		r := l.NewReader(0)
		check := func(to uint64) {
			t.Helper()
			for off := r.Offset(); off < to; off++ {
				rec, err := r.Next()
				if err != nil || rec.Offset != off || !bytes.Equal(rec.Value, ftValue(off)) {
					t.Fatalf("Next = (%d, %v), want (%d, nil) with ftValue", rec.Offset, err, off)
				}
			}
			if _, err := r.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("Next at %d = %v, want io.EOF", to, err)
			}
		}
		check(30)
		ftSuiteAppend(t, l, 30, 45)
		check(45)
		if got := ftReadAll(t, l, 17); len(got) != 45-17 || got[0].Offset != 17 {
			t.Fatalf("reading from 17: %d records, want %d from offset 17", len(got), 45-17)
		}
	}},
	{"wait", func(t *testing.T, e ftSuiteEnv) {
		l := e.open(t)
		ftSuiteAppend(t, l, 0, 10)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Wait(ctx, 9); err != nil {
			t.Fatalf("Wait(9) = %v, want nil", err)
		}
		done := make(chan error, 1)
		go func() {
			err := l.Wait(ctx, 12)
			if err == nil {
				if _, rerr := l.Read(12); rerr != nil {
					err = rerr
				}
			}
			done <- err
		}()
		time.Sleep(10 * time.Millisecond)
		ftSuiteAppend(t, l, 10, 11)
		select {
		case err := <-done:
			t.Fatalf("Wait(12) returned %v with NextOffset 11", err)
		case <-time.After(10 * time.Millisecond):
		}
		ftSuiteAppend(t, l, 11, 15)
		if err := <-done; err != nil {
			t.Fatalf("Wait(12) then Read(12) = %v, want nil", err)
		}
	}},
	{"reopen", func(t *testing.T, e ftSuiteEnv) {
		l, err := Open(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ftSuiteAppend(t, l, 0, 40)
		stats := l.Stats()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l = e.open(t)
		if r := l.Recovery(); r.Damaged() || len(r.RebuiltIndexes) > 0 || len(r.RemovedFiles) > 0 {
			t.Errorf("Recovery after Close = %+v, want nothing repaired", r)
		}
		if got := l.Stats(); got != stats {
			t.Fatalf("Stats after reopen = %+v, want %+v", got, stats)
		}
		ftCheckRange(t, l, 0, 40)
		ftSuiteAppend(t, l, 40, 50)
		ftCheckRange(t, l, 0, 50)
	}},
	{"truncate", func(t *testing.T, e ftSuiteEnv) {
		l := e.open(t)
		ftSuiteAppend(t, l, 0, 40)
		if err := l.Truncate(20); err != nil {
			t.Fatal(err)
		}
		lo, next := l.Offsets()
		if lo > 20 || next != 40 {
			t.Fatalf("Offsets after Truncate(20) = (%d, %d), want lowest <= 20 and next 40", lo, next)
		}
		if e.tiny && lo == 0 {
			t.Errorf("tiny segments: Truncate(20) removed nothing")
		}
		if !e.tiny && lo != 0 {
			t.Errorf("one segment: Truncate(20) moved the lowest offset to %d, want 0", lo)
		}
		if got := ftBases(t, e.cfg.Dir, storeSuffix); len(got) == 0 || got[0] != lo {
			t.Errorf("store files %v, want the first at the lowest offset %d", got, lo)
		}
		if lo > 0 {
			if _, err := l.Read(lo - 1); !errors.Is(err, ErrOffsetCompacted) {
				t.Errorf("Read(%d) = %v, want ErrOffsetCompacted", lo-1, err)
			}
		}
		if _, err := l.Read(next); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Errorf("Read(%d) = %v, want ErrOffsetOutOfRange", next, err)
		}
		ftCheckRange(t, l, lo, next)
	}},
	{"retention by bytes", func(t *testing.T, e ftSuiteEnv) {
		const limit = 2 << 10
		e.cfg.RetentionBytes = limit
		l := e.open(t)
		ftSuiteAppend(t, l, 0, 100)
		if err := l.EnforceRetention(); err != nil {
			t.Fatal(err)
		}
		st := l.Stats()
		if st.Segments > 1 && st.Bytes > limit {
			t.Errorf("after EnforceRetention: %d bytes in %d segments, want <= %d or only the active segment", st.Bytes, st.Segments, limit)
		}
		if e.tiny && st.Lowest == 0 {
			t.Errorf("tiny segments: retention removed nothing from %d bytes", st.Bytes)
		}
		if !e.tiny && st.Lowest != 0 {
			t.Errorf("one segment: retention moved the lowest offset to %d, want 0 (the active segment stays)", st.Lowest)
		}
		ftCheckRange(t, l, st.Lowest, 100)
	}},
	{"concurrent appenders and readers", func(t *testing.T, e ftSuiteEnv) {
		const appenders, each = 4, 25
		const total = appenders * each
		l := e.open(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		written := map[uint64][]byte{}
		for g := range appenders {
			wg.Go(func() {
				for i := range each {
					v := ftPattern(uint64(1000*g+i), (g*each+i)%(ftMaxValue+1))
					off, err := l.Append(v)
					if err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					if _, err := l.Read(off); err != nil {
						t.Errorf("Read(%d) after its Append returned: %v", off, err)
						return
					}
					mu.Lock()
					written[off] = v
					mu.Unlock()
				}
			})
		}
		read := make([][]Record, 2)
		for i := range read {
			wg.Go(func() {
				r := l.NewReader(0)
				for r.Offset() < total {
					rec, err := r.Next()
					if errors.Is(err, io.EOF) {
						if err := l.Wait(ctx, r.Offset()); err != nil {
							t.Errorf("Wait: %v", err)
							return
						}
						continue
					}
					if err != nil {
						t.Errorf("Next: %v", err)
						return
					}
					read[i] = append(read[i], rec)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if len(written) != total {
			t.Fatalf("%d distinct offsets, want %d", len(written), total)
		}
		for i, recs := range read {
			for off, rec := range recs {
				if rec.Offset != uint64(off) || !bytes.Equal(rec.Value, written[uint64(off)]) {
					t.Fatalf("reader %d: record %d is offset %d with %d bytes, want offset %d with %d bytes",
						i, off, rec.Offset, len(rec.Value), off, len(written[uint64(off)]))
				}
			}
		}
	}},
	{"sync", func(t *testing.T, e ftSuiteEnv) {
		l := e.open(t)
		for off := uint64(0); off < 10; off++ {
			ftSuiteAppend(t, l, off, off+1)
			if e.cfg.Sync == SyncAlways {
				if d := ftDurable(l); d < off+1 {
					t.Fatalf("SyncAlways: durable end %d after Append returned offset %d", d, off)
				}
			}
		}
		if err := l.Sync(); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if d, next := ftDurable(l), l.NextOffset(); d != next || next != 10 {
			t.Fatalf("after Sync: durable end %d, NextOffset %d, want both 10", d, next)
		}
	}},
	{"close", func(t *testing.T, e ftSuiteEnv) {
		l, err := Open(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ftSuiteAppend(t, l, 0, 20)
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if d := ftDurable(l); d != 20 {
			t.Errorf("durable end after Close = %d, want 20", d)
		}
		if _, err := l.Append(nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Append after Close = %v, want ErrClosed", err)
		}
		if _, err := l.Read(0); !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close = %v, want ErrClosed", err)
		}
		if _, err := l.NewReader(0).Next(); !errors.Is(err, ErrClosed) {
			t.Errorf("Reader.Next after Close = %v, want ErrClosed", err)
		}
		if err := l.Wait(context.Background(), 20); !errors.Is(err, ErrClosed) {
			t.Errorf("Wait after Close = %v, want ErrClosed", err)
		}
		l = e.open(t)
		ftCheckRange(t, l, 0, 20)
	}},
}

func TestBehaviourSuite(t *testing.T) {
	policies := []struct {
		name string
		edit func(*Config)
	}{
		{"always", func(c *Config) { c.Sync = SyncAlways }},
		{"interval", func(c *Config) { c.Sync = SyncInterval; c.SyncInterval = 2 * time.Millisecond }},
		{"none", func(c *Config) { c.Sync = SyncNone }},
	}
	sizes := []struct {
		name string
		tiny bool
		edit func(*Config)
	}{
		{"tiny", true, func(c *Config) {
			// Four 100-byte records fill the store; five entries the index.
			c.MaxRecordBytes = ftMaxValue
			c.MaxStoreBytes = 4 * frameSize(ftMaxValue)
			c.MaxIndexBytes = 5 * entryWidth
		}},
		{"default", false, func(c *Config) {}},
	}
	for _, p := range policies {
		for _, s := range sizes {
			t.Run(p.name+"/"+s.name, func(t *testing.T) {
				for _, b := range ftSuiteBehaviours {
					t.Run(b.name, func(t *testing.T) {
						cfg := ftConfig(t, func(c *Config) {
							p.edit(c)
							s.edit(c)
						})
						b.run(t, ftSuiteEnv{cfg: cfg, tiny: s.tiny})
					})
				}
			})
		}
	}
}
