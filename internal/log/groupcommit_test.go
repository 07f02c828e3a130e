package log

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Tests of group commit with SyncAlways: appends waiting for an fsync
// leave their frames pending, and the leader writes them all with one
// write call before its fsync. Helpers carry the prefix "gc".

// gcFS is the operating system's file system counting the writes and
// fsyncs of store files, with faults to inject into them. Before each store
// fsync it passes gate.
type gcFS struct {
	OSFS
	gate          *ftGate
	writes, syncs atomic.Int64
	// failWrite makes the next store write write half its bytes and
	// fail with ENOSPC; failSync makes the next store fsync fail with EIO.
	failWrite, failSync atomic.Bool
}

func (g *gcFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := g.OSFS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, storeSuffix) {
		return f, err
	}
	return &gcFile{File: f, fs: g}, nil
}

type gcFile struct {
	File
	fs *gcFS
}

func (f *gcFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.writes.Add(1)
	if f.fs.failWrite.CompareAndSwap(true, false) {
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func (f *gcFile) Sync() error {
	f.fs.syncs.Add(1)
	f.fs.gate.pass()
	if f.fs.failSync.CompareAndSwap(true, false) {
		return syscall.EIO
	}
	return f.File.Sync()
}

// gcStoreSize returns the size of the active segment's store file and
// the store bytes its index covers.
func gcStoreSize(t *testing.T, l *Log) (file, indexed int64) {
	t.Helper()
	l.mu.RLock()
	s := l.active()
	indexed = s.size
	l.mu.RUnlock()
	fi, err := os.Stat(s.storePath)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size(), indexed
}

// gcHoldFsync appends record 1 (after record 0) and holds its fsync at
// the gate, then starts waiters appends: they frame their records and wait
// for the held fsync to end. It returns the appends' results, ready once
// the gate opens.
func gcHoldFsync(t *testing.T, l *Log, fsys *gcFS, waiters int) (leader chan error, results []chan error) {
	t.Helper()
	leader = gcHoldLeader(t, l, fsys)
	results = gcStartWaiters(l, waiters)
	ftEventually(t, "every waiter to frame its record", func() bool { return ftWritten(l) == uint64(2+waiters) })
	return leader, results
}

// gcHoldLeader appends record 0, then record 1 from a goroutine, whose
// fsync it holds at the gate. It returns record 1's result, ready once the
// gate opens.
func gcHoldLeader(t *testing.T, l *Log, fsys *gcFS) chan error {
	t.Helper()
	if off, err := l.Append([]byte("record 0")); err != nil || off != 0 {
		t.Fatalf("Append = (%d, %v), want (0, nil)", off, err)
	}
	fsys.gate.armed.Store(true)
	leader := make(chan error, 1)
	go func() {
		off, err := l.Append([]byte("record 1"))
		if err == nil && off != 1 {
			err = fmt.Errorf("offset %d, want 1", off)
		}
		leader <- err
	}()
	fsys.gate.waitEntered(t)
	return leader
}

// gcStartWaiters starts n appends of "waiter i" and returns their results.
func gcStartWaiters(l *Log, n int) []chan error {
	var results []chan error
	for i := range n {
		ch := make(chan error, 1)
		results = append(results, ch)
		go func() {
			_, err := l.Append([]byte(fmt.Sprintf("waiter %d", i)))
			ch <- err
		}()
	}
	return results
}

// TestLogGroupCommitOneWrite checks that appends waiting for an fsync
// are not written, indexed or visible until the next leader writes them
// all with one write call, and that one fsync then covers them.
func TestLogGroupCommitOneWrite(t *testing.T) {
	const waiters = 8
	fsys := &gcFS{gate: newFtGate(t)}
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = fsys
	}))
	leader, results := gcHoldFsync(t, l, fsys, waiters)
	writes, syncs := fsys.writes.Load(), fsys.syncs.Load()

	// Only records 0 and 1 are in the store and its index.
	file, indexed := gcStoreSize(t, l)
	if want := 2 * frameSize(len("record 0")); file != want || indexed != want {
		t.Fatalf("store file %d bytes, index covers %d, want both %d (records 0 and 1)", file, indexed, want)
	}
	l.mu.RLock()
	n := l.active().n
	l.mu.RUnlock()
	if n != 2 {
		t.Fatalf("active segment indexes %d records, want 2", n)
	}
	if got := l.NextOffset(); got != 1 {
		t.Fatalf("NextOffset = %d, want 1", got)
	}

	fsys.gate.open()
	if err := <-leader; err != nil {
		t.Fatalf("leader: %v", err)
	}
	for i, ch := range results {
		if err := <-ch; err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	if got := fsys.writes.Load() - writes; got != 1 {
		t.Errorf("store writes for %d waiting appends = %d, want 1", waiters, got)
	}
	if got := fsys.syncs.Load() - syncs; got != 1 {
		t.Errorf("store fsyncs for %d waiting appends = %d, want 1", waiters, got)
	}
	if got := l.NextOffset(); got != 2+waiters {
		t.Fatalf("NextOffset = %d, want %d", got, 2+waiters)
	}
	file, indexed = gcStoreSize(t, l)
	if file != indexed {
		t.Fatalf("store file %d bytes, index covers %d", file, indexed)
	}
	seen := map[string]bool{}
	for _, rec := range ftReadAll(t, l, 2) {
		seen[string(rec.Value)] = true
	}
	for i := range waiters {
		if v := fmt.Sprintf("waiter %d", i); !seen[v] {
			t.Errorf("%q not read back", v)
		}
	}
}

// TestLogGroupCommitWriteFails fails the leader's write of the waiting
// appends: they all fail, the store is cut back, and the log goes on,
// giving their offsets to the next appends.
func TestLogGroupCommitWriteFails(t *testing.T) {
	const waiters = 8
	fsys := &gcFS{gate: newFtGate(t)}
	cfg := ftConfig(t, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = fsys
	})
	l := ftOpen(t, cfg)
	leader, results := gcHoldFsync(t, l, fsys, waiters)
	fsys.failWrite.Store(true)
	fsys.gate.open()
	if err := <-leader; err != nil {
		t.Fatalf("leader (written before the failure): %v", err)
	}
	for i, ch := range results {
		if err := <-ch; !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("waiter %d = %v, want ENOSPC", i, err)
		}
	}
	if err := l.failed(); err != nil {
		t.Fatalf("log failed after an undone write: %v", err)
	}
	if got, written := l.NextOffset(), ftWritten(l); got != 2 || written != 2 {
		t.Fatalf("NextOffset %d, next append's offset %d, want both 2", got, written)
	}
	file, indexed := gcStoreSize(t, l)
	if want := 2 * frameSize(len("record 0")); file != want || indexed != want {
		t.Fatalf("store file %d bytes, index covers %d, want both %d (records 0 and 1)", file, indexed, want)
	}
	if _, err := l.Read(2); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read(2) = %v, want ErrOffsetOutOfRange", err)
	}

	// The lost offsets go to the next appends, which must not be taken
	// for the failed ones, nor these for them.
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() {
			if _, err := l.Append([]byte(fmt.Sprintf("again %d", i))); err != nil {
				t.Errorf("Append after the failed write: %v", err)
			}
		})
	}
	wg.Wait()
	if got := l.NextOffset(); got != 2+waiters {
		t.Fatalf("NextOffset = %d, want %d", got, 2+waiters)
	}
	recs := ftReadAll(t, l, 0)
	for i, rec := range recs[2:] {
		if !bytes.HasPrefix(rec.Value, []byte("again ")) {
			t.Fatalf("record %d = %q, want one appended after the failure", 2+i, rec.Value)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = ftOpen(t, cfg)
	if r := l.Recovery(); r.Damaged() {
		t.Errorf("Recovery = %+v, want nothing cut", r)
	}
	if got := len(ftReadAll(t, l, 0)); got != 2+waiters {
		t.Errorf("%d records after reopen, want %d", got, 2+waiters)
	}
}

// TestLogGroupCommitAppenderWriteFails fails a write that an append makes
// itself because its batch does not fit with the frames pending: the
// appends waiting with them fail too.
func TestLogGroupCommitAppenderWriteFails(t *testing.T) {
	const waiters = 4
	fsys := &gcFS{gate: newFtGate(t)}
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = fsys
	}))
	leader, results := gcHoldFsync(t, l, fsys, waiters)
	fsys.failWrite.Store(true)
	big := make([][]byte, 2)
	for i := range big {
		big[i] = make([]byte, flushBytes/2)
	}
	if _, err := l.AppendBatch(big); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("AppendBatch = %v, want ENOSPC", err)
	}
	fsys.gate.open()
	if err := <-leader; err != nil {
		t.Fatalf("leader: %v", err)
	}
	for i, ch := range results {
		if err := <-ch; !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("waiter %d = %v, want ENOSPC", i, err)
		}
	}
	if got, written := l.NextOffset(), ftWritten(l); got != 2 || written != 2 {
		t.Fatalf("NextOffset %d, next append's offset %d, want both 2", got, written)
	}
	file, indexed := gcStoreSize(t, l)
	if want := 2 * frameSize(len("record 0")); file != want || indexed != want {
		t.Fatalf("store file %d bytes, index covers %d, want both %d", file, indexed, want)
	}
	if off, err := l.AppendBatch(big); err != nil || off != 2 {
		t.Fatalf("AppendBatch = (%d, %v), want (2, nil)", off, err)
	}
}

// TestLogGroupCommitSyncFails fails the fsync that covers the waiting
// appends: none is acknowledged and the log fails.
func TestLogGroupCommitSyncFails(t *testing.T) {
	const waiters = 8
	fsys := &gcFS{gate: newFtGate(t)}
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = fsys
	}))
	leader, results := gcHoldFsync(t, l, fsys, waiters)
	fsys.failSync.Store(true)
	fsys.gate.open()
	// The held fsync is the one that fails: the leader's record and the
	// waiters' are all lost.
	if err := <-leader; !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("leader = %v, want ErrFailed wrapping EIO", err)
	}
	for i, ch := range results {
		if err := <-ch; !errors.Is(err, ErrFailed) {
			t.Fatalf("waiter %d = %v, want ErrFailed", i, err)
		}
	}
	if got := l.NextOffset(); got != 1 {
		t.Fatalf("NextOffset = %d, want 1", got)
	}
	if _, err := l.Append([]byte("after")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after the failed fsync = %v, want ErrFailed", err)
	}
}

// TestLogWritesPerAppend checks that without group commit each append is
// one write call, and that with SyncNone and SyncInterval an append is
// readable once it returns.
func TestLogWritesPerAppend(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			fsys := &gcFS{gate: newFtGate(t)}
			l := ftOpen(t, ftConfig(t, func(c *Config) {
				c.Sync = policy
				c.FS = fsys
			}))
			before := fsys.writes.Load()
			for off := range uint64(10) {
				if _, err := l.Append(ftValue(off)); err != nil {
					t.Fatal(err)
				}
				if got := fsys.writes.Load() - before; got != int64(off+1) {
					t.Fatalf("%d store writes after %d appends, want one each", got, off+1)
				}
				ftCheckRange(t, l, off, off+1)
			}
		})
	}
}

// TestLogGroupCommitRollOver lets waiting appends fill several tiny
// segments while an fsync is held. A roll-over fsyncs the store, which
// must not run while another fsync of it does (an fsync error is reported
// to one of them only): the first append that needs one waits for the
// held fsync. Then each roll-over writes what is pending first, so
// segments stay within their limits and every record is kept.
func TestLogGroupCommitRollOver(t *testing.T) {
	const waiters = 10
	fsys := &gcFS{gate: newFtGate(t)}
	cfg := ftConfig(t, func(c *Config) {
		ftThreePerSegment(c)
		c.Sync = SyncAlways
		c.FS = fsys
	})
	l := ftOpen(t, cfg)
	leader := gcHoldLeader(t, l, fsys)
	writes, syncs := fsys.writes.Load(), fsys.syncs.Load()
	results := gcStartWaiters(l, waiters)
	// A roll-over writes what is pending before it fsyncs.
	ftEventually(t, "a roll-over to write the pending records", func() bool { return fsys.writes.Load() > writes })
	time.Sleep(20 * time.Millisecond) // let the roll-over fsync, if it can
	if got := fsys.syncs.Load() - syncs; got != 0 {
		t.Fatalf("%d fsyncs ran while one was held, want none", got)
	}
	fsys.gate.open()
	if err := <-leader; err != nil {
		t.Fatalf("leader: %v", err)
	}
	for i, ch := range results {
		if err := <-ch; err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	const total = 2 + waiters
	if got := l.NextOffset(); got != total {
		t.Fatalf("NextOffset = %d, want %d", got, total)
	}
	if got := len(ftReadAll(t, l, 0)); got != total {
		t.Fatalf("read %d records, want %d", got, total)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	crashCheckFiles(t, cfg.Dir)
	for _, s := range crashLayout(t, cfg.Dir) {
		if s.size > cfg.MaxStoreBytes || int64(s.n())*entryWidth > cfg.MaxIndexBytes {
			t.Errorf("segment %d: %d bytes, %d records: over the limits", s.base, s.size, s.n())
		}
	}
	l = ftOpen(t, cfg)
	if r := l.Recovery(); r.Damaged() || len(r.RebuiltIndexes) > 0 {
		t.Errorf("Recovery = %+v, want nothing repaired", r)
	}
	if got := len(ftReadAll(t, l, 0)); got != total {
		t.Errorf("read %d records after reopen, want %d", got, total)
	}
}

// TestLogGroupCommitClose closes the log while appends wait for a held
// fsync: Close waits for it (two fsyncs of a file must not run at once),
// then writes and fsyncs the waiting appends, and they are acknowledged.
func TestLogGroupCommitClose(t *testing.T) {
	const waiters = 8
	fsys := &gcFS{gate: newFtGate(t)}
	cfg := ftConfig(t, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = fsys
	})
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	leader, results := gcHoldFsync(t, l, fsys, waiters)
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an fsync was held", err)
	case <-time.After(20 * time.Millisecond):
	}
	fsys.gate.open()
	if err := <-leader; err != nil {
		t.Fatalf("leader: %v", err)
	}
	for i, ch := range results {
		if err := <-ch; err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	l = ftOpen(t, cfg)
	if r := l.Recovery(); r.Damaged() {
		t.Errorf("Recovery = %+v, want nothing cut", r)
	}
	if got := len(ftReadAll(t, l, 0)); got != 2+waiters {
		t.Errorf("read %d records after reopen, want %d", got, 2+waiters)
	}
}

// TestLogWriteSharedByWaiters checks that with SyncNone and SyncInterval
// appends started together are written by the first to wait, with one
// write call, readable only then; and that a failed write fails them all
// and gives their offsets to the next append.
func TestLogWriteSharedByWaiters(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			fsys := &gcFS{gate: newFtGate(t)}
			l := ftOpen(t, ftConfig(t, func(c *Config) {
				c.Sync = policy
				c.SyncInterval = time.Hour
				c.FS = fsys
			}))
			start := func(n int) []Pending {
				var ps []Pending
				for i := range n {
					p, err := l.StartAppend([][]byte{ftValue(uint64(i))})
					if err != nil {
						t.Fatal(err)
					}
					ps = append(ps, p)
				}
				return ps
			}
			before := fsys.writes.Load()
			ps := start(5)
			if got := fsys.writes.Load() - before; got != 0 || l.NextOffset() != 0 {
				t.Fatalf("before any wait: %d writes, next offset %d; want 0, 0", got, l.NextOffset())
			}
			for _, p := range ps {
				if err := p.Wait(); err != nil {
					t.Fatal(err)
				}
				if got := fsys.writes.Load() - before; got != 1 {
					t.Fatalf("%d store writes for 5 appends, want 1", got)
				}
			}
			ftCheckRange(t, l, 0, 5)

			fsys.failWrite.Store(true)
			for _, p := range start(3) {
				if err := p.Wait(); !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Wait after a failed write = %v, want ENOSPC", err)
				}
			}
			if off, err := l.Append(ftValue(5)); err != nil || off != 5 {
				t.Fatalf("Append after the failed write = (%d, %v), want (5, nil)", off, err)
			}
			ftCheckRange(t, l, 0, 6)
		})
	}
}
