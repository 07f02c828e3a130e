package log_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/log/faultfs"
)

// Storage faults injected through faultfs: a full disk, I/O errors on
// write and fsync, at every place the log writes (a store, an index at a
// roll-over, a new segment's file), under each sync policy and with
// concurrent appenders. What must hold whatever happens: every
// acknowledged record reads back (Read, a Reader, and after a reopen);
// offsets stay contiguous; a write fault leaves no partial frame behind,
// and the log takes appends again once the fault is gone; an fsync fault
// fails the log until it is reopened. Helpers carry the prefix "fault".

// faultMaxValue is the largest value the tests append.
const faultMaxValue = 100

// faultLog is a log on a faultfs.FS with the records it acknowledged.
type faultLog struct {
	cfg log.Config
	fs  *faultfs.FS
	l   *log.Log

	mu    sync.Mutex
	acked map[uint64][]byte // guarded by mu
}

// faultOpen opens a log with policy on a fresh faultfs.FS, with segments
// of three records at most, changed by edit. The log is closed when the
// test ends.
func faultOpen(t *testing.T, policy log.SyncPolicy, edit func(*log.Config)) *faultLog {
	t.Helper()
	cfg := log.DefaultConfig(filepath.Join(t.TempDir(), "log"))
	cfg.Sync = policy
	cfg.MaxRecordBytes = faultMaxValue
	cfg.MaxStoreBytes = 3 * (24 + faultMaxValue)
	cfg.MaxIndexBytes = 3 * 12
	ffs := faultfs.New(nil)
	cfg.FS = ffs
	if edit != nil {
		edit(&cfg)
	}
	f := &faultLog{cfg: cfg, fs: ffs, acked: map[uint64][]byte{}}
	f.open(t)
	t.Cleanup(func() { f.l.Close() })
	return f
}

func (f *faultLog) open(t *testing.T) {
	t.Helper()
	l, err := log.Open(f.cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	f.l = l
}

// reopen closes the log, which may fail only with one of allowed, and
// opens it again.
func (f *faultLog) reopen(t *testing.T, allowed ...error) {
	t.Helper()
	if err := f.l.Close(); err != nil && !faultIsAny(err, allowed...) {
		t.Fatalf("Close: %v", err)
	}
	f.open(t)
}

// reopenAfter closes the log, loses what was not fsynced if powerLoss
// (see faultfs.FS.DropUnsynced), and opens it again.
func (f *faultLog) reopenAfter(t *testing.T, powerLoss bool) {
	t.Helper()
	if err := f.l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if powerLoss {
		if err := f.fs.DropUnsynced(); err != nil {
			t.Fatal(err)
		}
	}
	f.open(t)
}

func faultIsAny(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// faultValue is the i-th value appended by appender w: 1 to faultMaxValue
// bytes, naming both.
func faultValue(w, i int) []byte {
	v := fmt.Appendf(nil, "w%d-r%d-", w, i)
	for len(v) < 1+(w*31+i*17)%faultMaxValue {
		v = append(v, byte('a'+i%26))
	}
	return v[:min(len(v), faultMaxValue)]
}

// append appends values as one batch and records them if acknowledged.
func (f *faultLog) append(values ...[]byte) (uint64, error) {
	off, err := f.l.AppendBatch(values)
	if err == nil {
		f.mu.Lock()
		for i, v := range values {
			f.acked[off+uint64(i)] = v
		}
		f.mu.Unlock()
	}
	return off, err
}

// mustAppend appends a value that must be acknowledged at offset want.
func (f *faultLog) mustAppend(t *testing.T, v []byte, want uint64) {
	t.Helper()
	if off, err := f.append(v); err != nil || off != want {
		t.Fatalf("Append = (%d, %v), want (%d, nil)", off, err, want)
	}
}

// check reads the log both ways and checks that they agree: a Reader
// from the lowest offset reads contiguous offsets up to NextOffset, and
// every acknowledged record reads back with its value, by Read and by the
// Reader. It returns NextOffset.
func (f *faultLog) check(t *testing.T) uint64 {
	t.Helper()
	lowest, next := f.l.Offsets()
	seen := map[uint64][]byte{}
	r := f.l.NewReader(lowest)
	for want := lowest; ; want++ {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			if want != next {
				t.Fatalf("Reader ended at offset %d, want NextOffset %d", want, next)
			}
			break
		}
		if err != nil {
			t.Fatalf("Reader.Next at offset %d: %v", want, err)
		}
		if rec.Offset != want {
			t.Fatalf("Reader returned offset %d, want %d", rec.Offset, want)
		}
		seen[rec.Offset] = rec.Value
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for off, v := range f.acked {
		if off >= next {
			t.Fatalf("acknowledged offset %d is not readable (NextOffset %d)", off, next)
		}
		rec, err := f.l.Read(off)
		if err != nil {
			t.Fatalf("Read(%d) of an acknowledged record: %v", off, err)
		}
		if !bytes.Equal(rec.Value, v) || !bytes.Equal(seen[off], v) {
			t.Fatalf("offset %d: Read %q, Reader %q, want the acknowledged %q", off, rec.Value, seen[off], v)
		}
	}
	return next
}

// checkUndamaged fails if the last Open cut or removed anything.
func (f *faultLog) checkUndamaged(t *testing.T) {
	t.Helper()
	if r := f.l.Recovery(); r.Damaged() {
		t.Fatalf("Recovery = %+v, want nothing cut: a failed write left part of a frame", r)
	}
}

// TestFaultWriteErrors fails writes (a full disk, an I/O error) at each
// place the log writes: the store (leaving part of a frame in the file),
// the index written at a roll-over, and the next segment's store created
// there. Each append the fault hits fails with the error, undone, and the
// log does not fail: it serves every acknowledged record meanwhile (also
// after a restart with the fault still there), and once the fault is
// gone, appends go on at the next offset and a reopen finds nothing to
// repair.
func TestFaultWriteErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
		// inject puts the fault in place.
		inject func(*faultfs.FS)
		// closeErr is the error Close may return with the fault in place
		// (it writes the active segment's index).
		closeErr bool
	}{
		{"disk full: store write, part of a frame written", syscall.ENOSPC, func(f *faultfs.FS) {
			f.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".store", Err: syscall.ENOSPC, Short: -1})
		}, false},
		{"disk full: space runs out within a frame", syscall.ENOSPC, func(f *faultfs.FS) {
			f.Fill(30)
		}, true},
		{"disk full: index write at roll-over", syscall.ENOSPC, func(f *faultfs.FS) {
			f.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".index", Err: syscall.ENOSPC, Short: 5})
		}, true},
		{"disk full: next segment's store at roll-over", syscall.ENOSPC, func(f *faultfs.FS) {
			f.Add(faultfs.Rule{Op: faultfs.Create, Suffix: ".store", Err: syscall.ENOSPC})
		}, false},
		{"I/O error: store write, part of a frame written", syscall.EIO, func(f *faultfs.FS) {
			f.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".store", Err: syscall.EIO, Short: 7})
		}, false},
		{"I/O error: index write at roll-over", syscall.EIO, func(f *faultfs.FS) {
			f.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".index", Err: syscall.EIO})
		}, true},
	}
	for _, policy := range []log.SyncPolicy{log.SyncAlways, log.SyncNone} {
		for _, tc := range cases {
			t.Run(policy.String()+"/"+tc.name, func(t *testing.T) {
				f := faultOpen(t, policy, nil)
				next := uint64(0)
				for i := range 4 {
					f.mustAppend(t, faultValue(0, i), next)
					next++
				}
				tc.inject(f.fs)

				// Appends until three fail; those that pass (before a
				// roll-over needs the index) go on at the next offset.
				failed := 0
				for i := 4; failed < 3; i++ {
					if i > 40 {
						t.Fatalf("only %d of %d appends failed", failed, i-4)
					}
					off, err := f.append(faultValue(0, i))
					switch {
					case err == nil:
						if off != next {
							t.Fatalf("Append = %d, want offset %d", off, next)
						}
						next++
					case !errors.Is(err, tc.err) || errors.Is(err, log.ErrFailed):
						t.Fatalf("Append = %v, want %v, the log not failed", err, tc.err)
					default:
						failed++
					}
				}
				if _, err := f.append(faultValue(1, 0), faultValue(1, 1), faultValue(1, 2), faultValue(1, 3)); !errors.Is(err, tc.err) {
					t.Fatalf("AppendBatch = %v, want %v", err, tc.err)
				}
				if err := f.l.Failure(); err != nil {
					t.Fatalf("Failure = %v after a write fault, want nil", err)
				}
				if got := f.check(t); got != next {
					t.Fatalf("NextOffset = %d with the fault in place, want %d", got, next)
				}

				// A restart with the fault still in place.
				var allowed []error
				if tc.closeErr {
					allowed = append(allowed, tc.err)
				}
				f.reopen(t, allowed...)
				f.checkUndamaged(t)
				if got := f.check(t); got != next {
					t.Fatalf("NextOffset = %d after a restart with the fault, want %d", got, next)
				}

				f.fs.Heal()
				for i := range 8 {
					f.mustAppend(t, faultValue(2, i), next)
					next++
				}
				f.check(t)
				// With SyncAlways every acknowledged record is durable: a
				// power loss keeps them all.
				f.reopenAfter(t, policy == log.SyncAlways)
				f.checkUndamaged(t)
				if got := f.check(t); got != next {
					t.Fatalf("NextOffset = %d after reopen, want %d", got, next)
				}
				f.mustAppend(t, faultValue(3, 0), next)
			})
		}
	}
}

// TestFaultDiskFullConcurrent lets the disk fill up under concurrent
// appenders (group commit with SyncAlways): every append either is
// acknowledged or fails with ENOSPC, the log never fails, and once space
// returns every appender goes on; every acknowledged record is there,
// after a power loss too with SyncAlways.
func TestFaultDiskFullConcurrent(t *testing.T) {
	const appenders = 8
	for _, policy := range []log.SyncPolicy{log.SyncAlways, log.SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			f := faultOpen(t, policy, nil)
			f.fs.Fill(4000)
			var wg sync.WaitGroup
			for w := range appenders {
				wg.Go(func() {
					failed := 0
					for i := 0; failed < 3; i++ {
						if i > 1000 {
							t.Errorf("appender %d: no ENOSPC in 1000 appends", w)
							return
						}
						if _, err := f.append(faultValue(w, i)); err != nil {
							if !errors.Is(err, syscall.ENOSPC) || errors.Is(err, log.ErrFailed) {
								t.Errorf("appender %d: Append = %v, want ENOSPC, the log not failed", w, err)
								return
							}
							failed++
						}
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if f.fs.Injected() == 0 {
				t.Fatal("no fault injected")
			}
			before := f.check(t)
			f.fs.Heal()
			for w := range appenders {
				wg.Go(func() {
					for i := range 5 {
						if _, err := f.append(faultValue(w, 1000+i)); err != nil {
							t.Errorf("appender %d: Append after space returned: %v", w, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if got, want := f.check(t), before+appenders*5; got != want {
				t.Fatalf("NextOffset = %d, want %d: offsets not contiguous", got, want)
			}
			f.reopenAfter(t, policy == log.SyncAlways)
			f.checkUndamaged(t)
			f.check(t)
		})
	}
}

// TestFaultRandomWriteFaults runs concurrent appenders (single records
// and batches) against random write faults: ENOSPC or EIO on writes of
// stores or indexes, short or not, on creating files and mapping indexes,
// and a disk that fills at a random point. No fault may fail the log; once
// they are gone the next append lands at NextOffset, and a reopen (with
// SyncAlways, after a power loss) finds nothing to repair and agrees.
// The seeds are fixed, so a failure names one to run again.
func TestFaultRandomWriteFaults(t *testing.T) {
	ops := []faultfs.Op{faultfs.Write, faultfs.Write, faultfs.Create, faultfs.Map}
	for seed := range uint64(12) {
		policy := []log.SyncPolicy{log.SyncAlways, log.SyncNone}[seed%2]
		t.Run(fmt.Sprintf("seed=%d/%s", seed, policy), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			f := faultOpen(t, policy, nil)
			for range 1 + rng.IntN(3) {
				f.fs.Add(faultfs.Rule{
					Op:     ops[rng.IntN(len(ops))],
					Suffix: []string{"", ".store", ".index"}[rng.IntN(3)],
					Err:    []error{syscall.ENOSPC, syscall.EIO}[rng.IntN(2)],
					Skip:   rng.IntN(40),
					Count:  rng.IntN(4),
					Short:  rng.IntN(60) - 10,
				})
			}
			if rng.IntN(3) == 0 {
				f.fs.Fill(int64(rng.IntN(5000)))
			}
			var wg sync.WaitGroup
			for w := range 1 + rng.IntN(6) {
				wg.Go(func() {
					for i := range 30 {
						values := [][]byte{faultValue(w, i)}
						if i%7 == 3 {
							values = append(values, faultValue(w, 1000+i))
						}
						if _, err := f.append(values...); errors.Is(err, log.ErrFailed) {
							t.Errorf("appender %d: %v, want no write fault to fail the log", w, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			f.check(t)
			f.fs.Heal()
			next := f.check(t)
			f.mustAppend(t, faultValue(50, 0), next)
			f.reopenAfter(t, policy == log.SyncAlways)
			f.checkUndamaged(t)
			if got := f.check(t); got != next+1 {
				t.Fatalf("NextOffset after reopen = %d, want %d", got, next+1)
			}
		})
	}
}

// faultAppendUntilFailed appends from appenders goroutines until each
// gets an error, which must be ErrFailed wrapping EIO, and checks that
// the log then refuses appends.
func faultAppendUntilFailed(t *testing.T, f *faultLog, appenders int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Go(func() {
			for i := 0; ; i++ {
				if time.Now().After(deadline) {
					t.Errorf("appender %d: no error in %d appends", w, i)
					return
				}
				_, err := f.append(faultValue(w, i))
				if err == nil {
					continue
				}
				if !errors.Is(err, log.ErrFailed) || !errors.Is(err, syscall.EIO) {
					t.Errorf("appender %d: Append = %v, want ErrFailed wrapping EIO", w, err)
				}
				return
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if err := f.l.Failure(); !errors.Is(err, log.ErrFailed) {
		t.Fatalf("Failure = %v, want ErrFailed", err)
	}
	if _, err := f.append(faultValue(99, 0)); !errors.Is(err, log.ErrFailed) {
		t.Fatalf("Append after the failed fsync = %v, want ErrFailed", err)
	}
}

// TestFaultFsyncFails fails one fsync of the store, under each policy:
// the appends it was to cover fail with ErrFailed (with SyncAlways, every
// appender sharing it), nothing is acknowledged after it, and the log
// refuses appends, even once fsyncs pass again, while it still serves
// every acknowledged record. After a reopen (with SyncAlways, after a
// power loss too) every acknowledged record is there, offsets are
// contiguous and appends go on.
func TestFaultFsyncFails(t *testing.T) {
	cases := []struct {
		policy    log.SyncPolicy
		appenders int
		edit      func(*log.Config)
		// skip is the store fsyncs that pass before the failing one.
		skip int
	}{
		// Group commit: the 20th fsync fails under 8 appenders.
		{log.SyncAlways, 8, nil, 20},
		// The fsync at a roll-over.
		{log.SyncNone, 1, nil, 3},
		{log.SyncNone, 4, nil, 3},
		// The background fsync.
		{log.SyncInterval, 4, func(c *log.Config) {
			c.SyncInterval = 2 * time.Millisecond
			c.MaxStoreBytes = 64 << 20
			c.MaxIndexBytes = 4 << 20
		}, 3},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d appenders", tc.policy, tc.appenders), func(t *testing.T) {
			f := faultOpen(t, tc.policy, tc.edit)
			f.fs.Add(faultfs.Rule{Op: faultfs.Sync, Suffix: ".store", Skip: tc.skip, Count: 1})
			faultAppendUntilFailed(t, f, tc.appenders)
			if f.fs.Injected() != 1 {
				t.Fatalf("Injected = %d, want 1", f.fs.Injected())
			}
			next := f.check(t)
			if err := f.l.Sync(); !errors.Is(err, log.ErrFailed) {
				t.Fatalf("Sync after the failed fsync = %v, want ErrFailed", err)
			}
			if tc.policy == log.SyncAlways {
				// Nothing the failed fsync was to cover is readable.
				f.mu.Lock()
				acked := len(f.acked)
				f.mu.Unlock()
				if next != uint64(acked) {
					t.Fatalf("NextOffset = %d, want %d (the acknowledged records)", next, acked)
				}
			}
			f.reopenAfter(t, tc.policy == log.SyncAlways)
			if err := f.l.Failure(); err != nil {
				t.Fatalf("Failure = %v after reopen, want nil", err)
			}
			next = f.check(t)
			f.mustAppend(t, faultValue(100, 0), next)
			f.check(t)
		})
	}
}

// TestFaultFsyncErrorNotMaskedByRollOver holds a group commit's fsync
// while another append needs a roll-over, which fsyncs the same store;
// then the held fsync fails. An fsync error is reported to one of two
// concurrent fsyncs of a file only, so the roll-over's fsync must not run
// meanwhile (its success would not show the data is on disk) nor after
// the failure: every append the held fsync was to cover fails, the
// roll-over does not happen, and a power loss keeps record 0 only.
func TestFaultFsyncErrorNotMaskedByRollOver(t *testing.T) {
	f := faultOpen(t, log.SyncAlways, nil)
	f.mustAppend(t, faultValue(0, 0), 0)
	held, release := make(chan struct{}), make(chan struct{})
	f.fs.Add(faultfs.Rule{Op: faultfs.Sync, Suffix: ".store", Count: 1, Before: func(faultfs.Op, string) {
		close(held)
		<-release
	}})
	leader := make(chan error, 1)
	go func() {
		_, err := f.append(faultValue(0, 1))
		leader <- err
	}()
	<-held
	syncs := f.fs.Calls(faultfs.Sync)
	store := filepath.Join(f.cfg.Dir, "00000000000000000000.store")
	written := faultSize(t, store)
	// The first record of this batch is the segment's third, the second
	// needs a roll-over: the batch writes the first and rolls over.
	rolled := make(chan error, 1)
	go func() {
		_, err := f.append(faultValue(0, 2), faultValue(0, 3))
		rolled <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for faultSize(t, store) == written {
		if time.Now().After(deadline) {
			t.Fatal("the batch wrote nothing in 10s")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the roll-over run, if it can
	if got := f.fs.Calls(faultfs.Sync) - syncs; got != 0 {
		t.Fatalf("%d fsyncs ran while one was in flight, want none", got)
	}
	close(release)
	if err := <-leader; !errors.Is(err, log.ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append whose fsync failed = %v, want ErrFailed wrapping EIO", err)
	}
	if err := <-rolled; !errors.Is(err, log.ErrFailed) {
		t.Fatalf("append rolling over after the failed fsync = %v, want ErrFailed", err)
	}
	if st := f.l.Stats(); st.Segments != 1 || st.Next != 1 {
		t.Fatalf("Stats = %+v, want 1 segment, NextOffset 1", st)
	}
	f.check(t)
	f.reopenAfter(t, true)
	if got := f.check(t); got != 1 {
		t.Fatalf("NextOffset after a power loss = %d, want 1", got)
	}
}

func faultSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestFaultBatchAcrossRollOver fails the write of a batch's records in
// the segment it rolled over to: the batch fails, its records in the
// segment sealed during it stay (see AppendBatch), and the log shows them
// at once, so that readers, the next append and a reopen agree on where
// the log ends.
func TestFaultBatchAcrossRollOver(t *testing.T) {
	for _, policy := range []log.SyncPolicy{log.SyncAlways, log.SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			f := faultOpen(t, policy, nil)
			f.mustAppend(t, faultValue(0, 0), 0)
			// The batch's first write (records 1 and 2, before the
			// roll-over) passes, its second (records 3 and 4) fails.
			f.fs.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".store", Err: syscall.ENOSPC, Short: -1, Skip: 1, Count: 1})
			batch := [][]byte{faultValue(1, 0), faultValue(1, 1), faultValue(1, 2), faultValue(1, 3)}
			if _, err := f.append(batch...); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("AppendBatch = %v, want ENOSPC", err)
			}
			if got := f.check(t); got != 3 {
				t.Fatalf("NextOffset = %d, want 3: records 1 and 2 stay", got)
			}
			for i, want := range batch[:2] {
				if rec, err := f.l.Read(uint64(1 + i)); err != nil || !bytes.Equal(rec.Value, want) {
					t.Fatalf("Read(%d) = (%q, %v), want the batch's record %q", 1+i, rec.Value, err, want)
				}
			}
			f.mustAppend(t, faultValue(2, 0), 3)
			f.reopenAfter(t, policy == log.SyncAlways)
			f.checkUndamaged(t)
			if got := f.check(t); got != 4 {
				t.Fatalf("NextOffset after reopen = %d, want 4", got)
			}
		})
	}
}

// TestFaultTruncateFails fails a store write (part of a frame written)
// and then the truncate that was to cut it back: the log fails, as it
// cannot undo the write, and still serves every acknowledged record; a
// reopen cuts the partial frame and appends go on from there.
func TestFaultTruncateFails(t *testing.T) {
	for _, policy := range []log.SyncPolicy{log.SyncAlways, log.SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			f := faultOpen(t, policy, nil)
			for i := range 5 {
				f.mustAppend(t, faultValue(0, i), uint64(i))
			}
			f.fs.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".store", Err: syscall.ENOSPC, Short: -1, Count: 1})
			f.fs.Add(faultfs.Rule{Op: faultfs.Truncate, Count: 1})
			_, err := f.append(faultValue(0, 5))
			if !errors.Is(err, log.ErrFailed) || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("Append = %v, want ErrFailed wrapping the ENOSPC and the truncate's EIO", err)
			}
			if _, err := f.append(faultValue(0, 6)); !errors.Is(err, log.ErrFailed) {
				t.Fatalf("Append after the failed undo = %v, want ErrFailed", err)
			}
			if got := f.check(t); got != 5 {
				t.Fatalf("NextOffset = %d, want 5", got)
			}
			f.reopen(t)
			r := f.l.Recovery()
			if r.TruncatedBytes == 0 || r.CutOffset != 5 {
				t.Fatalf("Recovery = %+v, want the partial frame at offset 5 cut", r)
			}
			f.check(t)
			f.mustAppend(t, faultValue(1, 0), 5)
			f.reopen(t)
			f.checkUndamaged(t)
			f.check(t)
		})
	}
}

// TestFaultMapFailsAtRollOver fails the mapping of an index just sealed:
// the roll-over goes on with the index kept in memory, and nothing fails.
func TestFaultMapFailsAtRollOver(t *testing.T) {
	f := faultOpen(t, log.SyncAlways, nil)
	f.fs.Add(faultfs.Rule{Op: faultfs.Map, Err: syscall.ENOMEM, Count: 2})
	for i := range 10 {
		f.mustAppend(t, faultValue(0, i), uint64(i))
	}
	if f.fs.Injected() != 2 {
		t.Fatalf("Injected = %d, want 2", f.fs.Injected())
	}
	f.check(t)
	f.reopen(t)
	f.checkUndamaged(t)
	f.check(t)
}

// TestFaultNewTopicOnFullDisk creates a topic on a full disk: the create
// fails with ENOSPC and leaves no directory behind, so that the topic
// does not exist and logd still starts on the full disk (OpenTopics).
func TestFaultNewTopicOnFullDisk(t *testing.T) {
	ffs := faultfs.New(nil)
	cfg := log.DefaultConfig(t.TempDir())
	cfg.FS = ffs
	topics, err := log.OpenTopics(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { topics.Close() }()
	a, err := topics.Open("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	ffs.Fill(0)
	if _, err := topics.Open("b"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Open of a new topic on a full disk = %v, want ENOSPC", err)
	}
	if names := topics.Names(); len(names) != 1 || names[0] != "a" {
		t.Fatalf("Names = %q, want [a]", names)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory of the topic not created: Stat = %v, want it gone", err)
	}
	if _, err := a.Append([]byte("full")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
	}
	topics.Close()

	topics, err = log.OpenTopics(cfg)
	if err != nil {
		t.Fatalf("OpenTopics on a full disk: %v", err)
	}
	a, err = topics.Get("a")
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := a.Read(0); err != nil || string(rec.Value) != "kept" {
		t.Fatalf("Read(0) = (%q, %v), want kept", rec.Value, err)
	}
	ffs.Heal()
	if _, err := topics.Open("b"); err != nil {
		t.Fatalf("Open of a new topic once space returned: %v", err)
	}
}
