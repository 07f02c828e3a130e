package log

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Log is one topic's commit log: a sequence of segments in a directory.
type Log struct {
	cfg      Config
	fs       FS
	logger   *zap.Logger
	recovery Recovery

	mu sync.RWMutex
	// The fields below are guarded by mu.
	segments []*segment // oldest first; the last is the active one
	next     uint64     // offset the next append gets
	closed   bool
	// pend holds records [active().next(), next): framed, not yet written.
	// An append's last records wait there for whoever writes everything
	// pending with one write call: with SyncAlways the fsync leader (see
	// syncActive), otherwise the first appender to wait for them (see
	// writeTo).
	pend pendingWrite

	// visible is the end of what readers may see: with SyncAlways the
	// durable end, else the written end. It only grows.
	visible  atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{} // closed when visible grows; nil if no one waits

	syncMu   sync.Mutex
	syncCond *sync.Cond
	// The fields below are guarded by syncMu.
	syncing bool   // a goroutine is in fsync on everyone's behalf
	durable uint64 // offsets below it are on stable storage
	// inSync is set while that goroutine's fsync of the active store runs:
	// no other fsync of the store may run then (see awaitFsyncLocked).
	inSync bool

	// With SyncAlways, entered counts appends begun and wrote those that
	// have released mu, for an fsync leader to wait for; see awaitWriters.
	entered, wrote atomic.Uint64

	failure atomic.Pointer[error] // sticky; see ErrFailed
	// deleted is set by Remove before it closes the log: calls on the
	// closed log then say the topic was deleted (see closedErr).
	deleted atomic.Bool

	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

// flushBytes bounds the bytes handed to one write call.
const flushBytes = 1 << 20

// pendingWrite is frames waiting to be written, with one write call, at
// the end of the active store. Its fields are guarded by Log.mu.
type pendingWrite struct {
	buf       []byte  // the frames
	positions []int64 // where each frame goes in the store
	lastNanos int64   // append time of the newest frame
	// group is the appends whose last records are in buf, for them to
	// learn if the write fails; nil until one asks.
	group *writeGroup
}

// reset empties p, keeping its buffers unless they grew too large.
func (p *pendingWrite) reset() {
	if cap(p.buf) > 4*flushBytes {
		p.buf = nil
	} else {
		p.buf = p.buf[:0]
	}
	p.positions = p.positions[:0]
	p.group = nil
}

// A writeGroup is the appends whose last records are in one pending
// write. If that write fails, their records are dropped and
// their offsets given to later appends, so waiting for the durable end to
// pass them would be wrong: they check err, which is set before the
// offsets are given again.
type writeGroup struct {
	err atomic.Pointer[error]
}

// failure returns why g's write failed, or nil; g may be nil.
func (g *writeGroup) failure() error {
	if g == nil {
		return nil
	}
	if p := g.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Open opens the log in cfg.Dir, creating it if needed, and recovers it
// from any crash: see the package documentation and Log.Recovery.
func Open(cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &Log{
		cfg:    cfg,
		fs:     cfg.FS,
		logger: cfg.Logger.With(zap.String("dir", cfg.Dir)),
		done:   make(chan struct{}),
	}
	l.syncCond = sync.NewCond(&l.syncMu)
	if err := l.fs.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("log: open: %w", err)
	}
	if err := l.recover(); err != nil {
		return nil, fmt.Errorf("log: open %s: %w", cfg.Dir, err)
	}
	l.next = l.active().next()
	l.durable = l.next
	l.visible.Store(l.next)
	l.logOpen()

	if cfg.Sync == SyncInterval || cfg.RetentionBytes > 0 || cfg.RetentionAge > 0 {
		l.wg.Add(1)
		go l.background()
	}
	return l, nil
}

func (l *Log) logOpen() {
	r := l.recovery
	fields := []zap.Field{
		zap.Uint64("lowest_offset", l.segments[0].base),
		zap.Uint64("next_offset", l.next),
		zap.Int("segments", len(l.segments)),
	}
	if !r.Damaged() && len(r.RebuiltIndexes) == 0 && len(r.RemovedFiles) == 0 {
		l.logger.Info("log opened", fields...)
		return
	}
	fields = append(fields,
		zap.Int64("truncated_bytes", r.TruncatedBytes),
		zap.Uint64("cut_offset", r.CutOffset),
		zap.String("reason", r.Reason),
		zap.Uint64s("removed_segments", r.RemovedSegments),
		zap.Uint64s("rebuilt_indexes", r.RebuiltIndexes),
		zap.Strings("removed_files", r.RemovedFiles),
	)
	l.logger.Warn("log opened after recovery", fields...)
}

// Recovery reports what Open repaired.
func (l *Log) Recovery() Recovery { return l.recovery }

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.cfg.Dir }

// Config returns the log's configuration, with defaults filled in.
func (l *Log) Config() Config { return l.cfg }

// active returns the active segment. Lock must be held.
func (l *Log) active() *segment { return l.segments[len(l.segments)-1] }

// Append appends one record and returns its offset. It returns once the
// sync policy is met: see SyncPolicy.
func (l *Log) Append(value []byte) (uint64, error) {
	return l.AppendBatch([][]byte{value})
}

// AppendBatch appends records with consecutive offsets and returns the
// first. It returns once the sync policy is met for all of them. A batch
// is written with as few write calls as its size allows, shared with
// concurrent appends; if one fails, every append it covered
// fails, and the batch's records in the active segment are undone
// (records already in a segment sealed during the batch remain,
// unacknowledged but readable like any other).
func (l *Log) AppendBatch(values [][]byte) (uint64, error) {
	p, err := l.StartAppend(values)
	if err != nil {
		return 0, err
	}
	if err := p.Wait(); err != nil {
		return 0, err
	}
	return p.First, nil
}

// Pending is an append whose records have offsets but which may not meet
// the sync policy yet: its last records may not even be written.
type Pending struct {
	l *Log
	// First is the offset of the append's first record.
	First uint64
	end   uint64
	group *writeGroup // see writeGroup
}

// Wait returns once the sync policy is met for the append, or the write
// (or fsync) covering it failed: with SyncAlways, once a write and an
// fsync cover it (shared with every append waiting at the time);
// otherwise once it is written, with everything pending at the time if
// no one wrote it before. Its records are then readable.
func (p Pending) Wait() error {
	if p.l.cfg.Sync == SyncAlways {
		return p.l.syncTo(p.end, p.group)
	}
	return p.l.writeTo(p.end, p.group)
}

// StartAppend appends records like AppendBatch but returns before the
// sync policy is met: the caller acknowledges them after Pending.Wait.
// The last records may not even be written yet: whoever waits first (with
// SyncAlways, the fsync leader) writes every pending append with one write
// call. This lets one caller pipeline appends, and concurrent callers
// share writes, so that one write (and one fsync) covers many. Records
// are readable once written (with SyncAlways, once durable); an append
// nobody waits for is written with the next one waited for, or at Close.
func (l *Log) StartAppend(values [][]byte) (Pending, error) {
	return l.StartAppendCapped(values, 0)
}

// StartAppendCapped is StartAppend for a log capped at maxBytes on disk
// (store and index bytes, as Stats counts them, appends not yet written
// included): an append that would take the log over the cap is refused,
// with nothing written, by a *FullError (wrapping ErrFull). maxBytes 0 or
// less means no cap. The check and the append are one step under the
// log's lock, so concurrent appends cannot pass the cap together.
func (l *Log) StartAppendCapped(values [][]byte, maxBytes int64) (Pending, error) {
	if len(values) == 0 {
		return Pending{}, ErrEmptyBatch
	}
	for _, v := range values {
		if len(v) > l.cfg.MaxRecordBytes {
			return Pending{}, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooLarge, len(v), l.cfg.MaxRecordBytes)
		}
	}
	if l.cfg.Sync == SyncAlways {
		l.entered.Add(1)
	}
	l.mu.Lock()
	if l.closed {
		l.unlockAppend()
		return Pending{}, l.closedErr()
	}
	if err := l.failed(); err != nil {
		l.unlockAppend()
		return Pending{}, err
	}
	if maxBytes > 0 {
		if err := l.checkCapLocked(values, maxBytes); err != nil {
			l.unlockAppend()
			return Pending{}, err
		}
	}
	first := l.next
	err := l.writeLocked(values)
	end := l.next
	var g *writeGroup
	if err == nil {
		if l.pend.group == nil {
			l.pend.group = new(writeGroup)
		}
		g = l.pend.group
	}
	l.unlockAppend()
	if err != nil && l.cfg.Sync != SyncAlways && l.failed() == nil {
		// Only after a failed write: records of the batch that stay, in
		// a segment sealed during it, are written, and everything below
		// end with them. After a successful append its last records may
		// still be pending: Pending.Wait publishes them once written.
		l.publish(end)
	}
	if err != nil {
		return Pending{}, err
	}
	return Pending{l: l, First: first, end: end, group: g}, nil
}

// unlockAppend releases the lock StartAppend took.
func (l *Log) unlockAppend() {
	l.mu.Unlock()
	if l.cfg.Sync == SyncAlways {
		l.wrote.Add(1)
	}
}

// writeLocked frames values into l.pend and advances l.next, writing the
// pending frames to the active segment when they would pass flushBytes
// and before a roll-over. The last frames stay pending, for Pending.Wait
// (or the fsync leader) to write. Lock must be held.
func (l *Log) writeLocked(values [][]byte) error {
	now := l.cfg.Now().UnixNano()
	maxEntries := int(l.cfg.MaxIndexBytes / entryWidth)
	p := &l.pend
	s := l.active()
	// Where this batch starts in s, to undo it on error.
	startN, startSize := s.n+len(p.positions), s.size+int64(len(p.buf))
	flush := func() error {
		if err := l.flushLocked(); err != nil {
			// Undo the failed write, and this batch's records that an
			// earlier write put in s.
			return l.undo(s, min(startN, s.n), min(startSize, s.size), err)
		}
		return nil
	}
	for _, v := range values {
		fsz := frameSize(len(v))
		n, end := s.n+len(p.positions), s.size+int64(len(p.buf))
		if n > 0 && (end+fsz > l.cfg.MaxStoreBytes || n+1 > maxEntries) {
			if err := flush(); err != nil {
				return err
			}
			if err := l.rollLocked(); err != nil {
				if errors.Is(err, ErrFailed) {
					return err
				}
				// s stays active, its store fsynced: undo this batch's
				// records in it; those before them are durable.
				err = l.undo(s, min(startN, s.n), min(startSize, s.size), err)
				l.markDurable(s.next())
				return err
			}
			s = l.active()
			startN, startSize = 0, 0
			end = 0
		} else if len(p.buf) > 0 && int64(len(p.buf))+fsz > flushBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		p.positions = append(p.positions, end)
		p.buf = appendFrame(p.buf, l.next, now, v)
		p.lastNanos = now
		l.next++
	}
	return nil
}

// flushLocked writes the pending frames to the end of the active store
// with one write call and adds them to its index. If the write fails, it
// changes nothing and returns the error: the caller must undo. Lock must
// be held.
func (l *Log) flushLocked() error {
	p := &l.pend
	if len(p.positions) == 0 {
		return nil
	}
	s := l.active()
	if _, err := s.store.WriteAt(p.buf, s.size); err != nil {
		return fmt.Errorf("log: append: %w", err)
	}
	s.positions = append(s.positions, p.positions...)
	s.n += len(p.positions)
	s.size += int64(len(p.buf))
	s.lastNanos = p.lastNanos
	p.reset()
	l.startWriteback(s)
	return nil
}

// writebackBytes is how many written bytes of the active store may wait
// in the page cache before the log asks the OS to start writing them to
// the device. Without it, the fsync that seals a segment would write the
// whole segment while holding the lock, stalling appends and reads.
const writebackBytes = 4 << 20

// startWriteback starts write-back of s's store if enough bytes are
// waiting. It makes nothing durable (fsync still does that) and ignores
// errors, which the next fsync reports. With SyncAlways, fsyncs keep the
// store clean anyway. Lock must be held.
func (l *Log) startWriteback(s *segment) {
	if l.cfg.Sync == SyncAlways || s.size-s.writeback < writebackBytes {
		return
	}
	if w, ok := s.store.(writebacker); ok {
		_ = w.StartWriteback(s.writeback, s.size-s.writeback)
	}
	s.writeback = s.size
}

// undo takes the active segment s back to n records and size bytes after
// a failed write, drops the pending frames, fails their appends with err,
// and returns err. If the store cannot be cut back, the log fails. Lock
// must be held.
func (l *Log) undo(s *segment, n int, size int64, err error) error {
	s.positions = s.positions[:n]
	s.n = n
	s.size = size
	s.writeback = min(s.writeback, size)
	if terr := s.store.Truncate(size); terr != nil {
		err = l.fail(fmt.Errorf("%w; undo: %w", err, terr))
	}
	if g := l.pend.group; g != nil {
		g.err.Store(&err)
	}
	l.pend.reset()
	l.next = s.next()
	return err
}

// rollLocked seals the active segment and starts a new one at l.next.
// Lock must be held, and nothing pending (see flushLocked).
//
// A failed fsync fails the log. A failed write (of the index, or the next
// segment's store: a full disk) is returned as it is, with the active
// segment still active and unsealed, its store fsynced, for the caller to
// undo its append; the next append that needs the roll-over tries again.
func (l *Log) rollLocked() error {
	s := l.active()
	if err := l.awaitFsyncLocked(); err != nil {
		return err
	}
	if err := s.store.Sync(); err != nil {
		return l.fail(fmt.Errorf("seal segment %d: fsync: %w", s.base, err))
	}
	if err := s.writeIndex(l.fs); err != nil {
		if errors.As(err, new(fsyncError)) {
			return l.fail(fmt.Errorf("seal segment %d: %w", s.base, err))
		}
		return fmt.Errorf("log: seal segment %d: %w", s.base, err)
	}
	ns, err := createSegment(l.fs, l.cfg.Dir, s.next())
	if err != nil {
		return fmt.Errorf("log: create segment %d: %w", s.next(), err)
	}
	l.segments = append(l.segments, ns)
	if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
		return l.fail(fmt.Errorf("sync dir: %w", err))
	}
	l.markDurable(s.next())
	// The mapping only saves memory: without it the index stays in memory.
	if err := s.mapIndex(l.fs); err != nil {
		l.logger.Warn("map sealed index: keeping it in memory", zap.Uint64("base", s.base), zap.Error(err))
	}
	l.enforceRetentionLocked()
	return nil
}

// awaitFsyncLocked waits until no fsync of the active store is in flight
// (see syncActive), so that the caller's fsync of it is the only one, and
// returns the log's failure if that fsync failed. An fsync error is
// reported to one of two concurrent fsyncs of a file only: the other's
// success would not mean that the data is on disk. Lock must be held.
func (l *Log) awaitFsyncLocked() error {
	l.syncMu.Lock()
	for l.inSync {
		l.syncCond.Wait()
	}
	l.syncMu.Unlock()
	return l.failed()
}

// fail puts the log in its failed state, if it is not already, and
// returns the failure.
func (l *Log) fail(err error) error {
	e := fmt.Errorf("%w: %w", ErrFailed, err)
	if l.failure.CompareAndSwap(nil, &e) {
		l.logger.Error("log failed: appends refused until reopened", zap.Error(err))
	}
	return *l.failure.Load()
}

func (l *Log) failed() error {
	if p := l.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Sync fsyncs everything appended so far. On a failed log it returns the
// failure (see ErrFailed), whatever is durable.
func (l *Log) Sync() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return l.closedErr()
	}
	if err := l.failed(); err != nil {
		l.mu.RUnlock()
		return err
	}
	end := l.next
	l.mu.RUnlock()
	return l.syncTo(end, nil)
}

// syncTo returns once every offset below end is durable, or g (which may
// be nil) failed. The first caller to find no fsync in flight runs one for
// everyone (group commit); the others wait for it and, if it did not cover
// them, run the next one. If an fsync fails, the log fails: only appends
// that earlier fsyncs covered succeed.
func (l *Log) syncTo(end uint64, g *writeGroup) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	var closed error
	for {
		// Read the durable end before g: see writeGroup.
		durable := l.durable
		if err := g.failure(); err != nil {
			return err
		}
		if durable >= end {
			return nil
		}
		if err := l.failed(); err != nil {
			return err
		}
		if closed != nil {
			return closed
		}
		if l.syncing {
			l.syncCond.Wait()
			continue
		}
		l.syncing = true
		l.syncMu.Unlock()
		l.awaitWriters()
		start := time.Now()
		target, err := l.syncActive()
		d := time.Since(start)
		l.syncMu.Lock()
		l.syncing, l.inSync = false, false
		switch {
		case err == nil:
			if l.cfg.OnSync != nil {
				l.cfg.OnSync(l.cfg.Name, d, target-min(target, l.durable))
			}
			l.advanceDurableLocked(target)
		case errors.Is(err, ErrClosed):
			// Close made durable what it could.
			closed = err
		default:
			// Fail before waking the others: a second fsync could
			// succeed after the kernel dropped the dirty pages, and must
			// never be taken as covering them.
			l.fail(err)
		}
		l.syncCond.Broadcast()
	}
}

// writeTo returns once every offset below end is written and readable,
// or g (which may be nil) failed: if they are still pending, it writes
// everything pending with one write call. For the policies other than
// SyncAlways, where that is all an acknowledgement needs.
func (l *Log) writeTo(end uint64, g *writeGroup) error {
	// Read the visible end before g: see writeGroup.
	if l.visible.Load() >= end {
		return g.failure()
	}
	l.mu.Lock()
	if err := g.failure(); err != nil {
		l.mu.Unlock()
		return err
	}
	written := l.next - uint64(len(l.pend.positions))
	if written < end {
		if l.closed {
			l.mu.Unlock()
			return l.closedErr()
		}
		if err := l.failed(); err != nil {
			l.mu.Unlock()
			return err
		}
		if err := l.flushLocked(); err != nil {
			s := l.active()
			err = l.undo(s, s.n, s.size, err)
			written = l.next
			l.mu.Unlock()
			if l.failed() == nil {
				// What stays written is the log's (records of a batch in
				// a segment sealed during it, see AppendBatch): readers
				// and the next append agree on where it ends.
				l.publish(written)
			}
			return err
		}
		written = l.next
	}
	l.mu.Unlock()
	l.publish(written)
	return nil
}

// awaitQuiet and awaitMax bound awaitWriters: it returns once no append
// has begun or been under way for awaitQuiet, and after awaitMax at most.
// A lone appender pays awaitQuiet per fsync.
const (
	awaitQuiet = 5 * time.Microsecond
	awaitMax   = 100 * time.Microsecond
)

// awaitWriters lets appenders that the last fsync just released, and
// appends under way, frame their records before an fsync leader writes
// what is pending and picks the end its fsync covers. Without it,
// appenders fall into two groups that take turns, and each fsync covers
// only about half of them.
func (l *Log) awaitWriters() {
	start := time.Now()
	last, seen := start, l.entered.Load()
	for {
		runtime.Gosched()
		now := time.Now()
		if e := l.entered.Load(); e != seen || l.wrote.Load() != e {
			seen, last = e, now
		} else if now.Sub(last) >= awaitQuiet {
			return
		}
		if now.Sub(start) >= awaitMax {
			return
		}
	}
}

// syncActive writes the pending frames, fsyncs the active store and
// returns the end the fsync covers. If the write fails, the appends it
// covered fail (see undo) and the fsync covers the records before them.
func (l *Log) syncActive() (uint64, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, l.closedErr()
	}
	if err := l.failed(); err != nil {
		// A roll-over's fsync failed since this leader looked: an fsync
		// now could succeed without the data being on disk.
		l.mu.Unlock()
		return 0, err
	}
	if err := l.flushLocked(); err != nil {
		s := l.active()
		if err := l.undo(s, s.n, s.size, err); errors.Is(err, ErrFailed) {
			target := l.next
			l.mu.Unlock()
			return target, err
		}
	}
	target, f := l.next, l.active().store
	l.syncMu.Lock()
	l.inSync = true
	l.syncMu.Unlock()
	l.mu.Unlock()
	start := time.Now()
	err := f.Sync()
	if d := time.Since(start); l.cfg.SlowSyncThreshold > 0 && d > l.cfg.SlowSyncThreshold {
		l.logger.Warn("slow fsync", zap.Duration("duration", d), zap.Uint64("next_offset", target))
	}
	if err != nil {
		return target, fmt.Errorf("fsync: %w", err)
	}
	return target, nil
}

// markDurable records that every offset below end is durable.
func (l *Log) markDurable(end uint64) {
	l.syncMu.Lock()
	l.advanceDurableLocked(end)
	l.syncCond.Broadcast()
	l.syncMu.Unlock()
}

// advanceDurableLocked: syncMu must be held. Once the log failed, the
// durable end stays where it is: no fsync after a failed one is trusted.
func (l *Log) advanceDurableLocked(end uint64) {
	if l.failed() != nil {
		return
	}
	if end > l.durable {
		l.durable = end
	}
	if l.cfg.Sync == SyncAlways {
		l.publish(end)
	}
}

// publish makes offsets below end visible to readers and wakes waiters.
func (l *Log) publish(end uint64) {
	for {
		old := l.visible.Load()
		if end <= old {
			return
		}
		if l.visible.CompareAndSwap(old, end) {
			break
		}
	}
	l.notifyMu.Lock()
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
	l.notifyMu.Unlock()
}

// Wait blocks until offset off is readable (or below the lowest offset),
// the context ends, or the log closes (ErrClosed). It does not poll: it
// sleeps until an append makes off visible.
func (l *Log) Wait(ctx context.Context, off uint64) error {
	for {
		l.notifyMu.Lock()
		if off < l.visible.Load() {
			l.notifyMu.Unlock()
			return nil
		}
		if l.notify == nil {
			l.notify = make(chan struct{})
		}
		ch := l.notify
		l.notifyMu.Unlock()
		select {
		case <-ch:
		case <-l.done:
			return l.closedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Offsets returns the lowest offset and the end of the readable log: the
// log holds records lowest..next-1, and is empty if lowest == next.
func (l *Log) Offsets() (lowest, next uint64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segments[0].base, l.visible.Load()
}

// LowestOffset returns the offset of the oldest record kept.
func (l *Log) LowestOffset() uint64 {
	lo, _ := l.Offsets()
	return lo
}

// NextOffset returns the offset the next record will be readable at: one
// past the newest readable record.
func (l *Log) NextOffset() uint64 { return l.visible.Load() }

// Stats describes a log's size on disk.
type Stats struct {
	Segments int
	Bytes    int64 // store and index bytes
	Lowest   uint64
	Next     uint64
}

// Stats returns the log's size on disk and its offsets.
func (l *Log) Stats() Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return Stats{Segments: len(l.segments), Bytes: l.sizeLocked(), Lowest: l.segments[0].base, Next: l.visible.Load()}
}

// sizeLocked returns the bytes on disk. Lock must be held.
func (l *Log) sizeLocked() int64 {
	var n int64
	for _, s := range l.segments {
		n += s.size + int64(s.n)*entryWidth
	}
	return n
}

// locate returns the store, position and frame size of record off.
func (l *Log) locate(off uint64) (*segment, int64, int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, 0, 0, l.closedErr()
	}
	if err := l.checkRangeLocked(off); err != nil {
		return nil, 0, 0, err
	}
	s := l.findLocked(off)
	i := int(off - s.base)
	pos, end := s.position(i), s.end(i)
	// A sealed index is checked cheaply at Open (first and last entry):
	// a bad entry in its middle must read as ErrCorrupt, not size a buffer.
	if pos < 0 || end > s.size || end-pos < headerSize || end-pos > frameSize(maxValueLen) {
		return nil, 0, 0, fmt.Errorf("%w: offset %d in %s: bad index entry (position %d, end %d)", ErrCorrupt, off, s.storePath, pos, end)
	}
	return s, pos, end - pos, nil
}

// checkRangeLocked says whether off is readable. RLock must be held.
func (l *Log) checkRangeLocked(off uint64) error {
	if lo := l.segments[0].base; off < lo {
		return fmt.Errorf("%w: %d is below the lowest offset %d", ErrOffsetCompacted, off, lo)
	}
	if next := l.visible.Load(); off >= next {
		return fmt.Errorf("%w: %d is past the end (next offset %d)", ErrOffsetOutOfRange, off, next)
	}
	return nil
}

// findLocked returns the segment holding off, which must be in range.
// RLock must be held.
func (l *Log) findLocked(off uint64) *segment {
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].base > off })
	return l.segments[i-1]
}

// Read returns the record at off.
func (l *Log) Read(off uint64) (Record, error) {
	s, pos, size, err := l.locate(off)
	if err != nil {
		return Record{}, err
	}
	buf := make([]byte, size)
	if _, err := s.store.ReadAt(buf, pos); err != nil {
		return Record{}, l.readError(off, err)
	}
	rec, n, err := decodeFrame(buf, off)
	if err != nil || n != size {
		return Record{}, fmt.Errorf("%w: offset %d in %s at position %d", ErrCorrupt, off, s.storePath, pos)
	}
	return rec, nil
}

// readError explains a failed read of off: the log closed, or retention
// removed the segment while the read ran.
func (l *Log) readError(off uint64, err error) error {
	if errors.Is(err, os.ErrClosed) {
		l.mu.RLock()
		defer l.mu.RUnlock()
		if l.closed {
			return l.closedErr()
		}
		if rerr := l.checkRangeLocked(off); rerr != nil {
			return rerr
		}
	}
	return fmt.Errorf("log: read offset %d: %w", off, err)
}

// Truncate removes every sealed segment whose records are all below
// lowest. The active segment is never removed, so records below lowest
// that share a segment with newer ones stay readable.
func (l *Log) Truncate(lowest uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closedErr()
	}
	return l.removeOldestLocked(func(s *segment) bool { return s.next() <= lowest })
}

// removeOldestLocked removes the oldest sealed segments while drop says
// so. Lock must be held.
func (l *Log) removeOldestLocked(drop func(*segment) bool) error {
	removed := 0
	var err error
	for len(l.segments) > 1 && drop(l.segments[0]) {
		s := l.segments[0]
		l.segments = l.segments[1:]
		removed++
		if rerr := s.remove(l.fs); rerr != nil && err == nil {
			err = fmt.Errorf("log: remove segment %d: %w", s.base, rerr)
		}
		l.logger.Debug("segment removed", zap.Uint64("base", s.base), zap.Uint64("next", s.next()))
	}
	if removed > 0 {
		if serr := l.fs.SyncDir(l.cfg.Dir); serr != nil && err == nil {
			err = fmt.Errorf("log: sync dir: %w", serr)
		}
	}
	return err
}

// Close makes everything appended durable, writes the active segment's
// index and releases the log's files. Waiters get ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	var err error
	s := l.active()
	if l.failed() == nil {
		if ferr := l.flushLocked(); ferr != nil {
			err = l.undo(s, s.n, s.size, ferr)
		}
	}
	if l.awaitFsyncLocked() == nil {
		if serr := s.store.Sync(); serr != nil {
			err = l.fail(fmt.Errorf("fsync: %w", serr))
		} else {
			l.markDurable(l.next)
			if werr := s.writeIndex(l.fs); werr != nil && err == nil {
				err = fmt.Errorf("log: write index: %w", werr)
			}
		}
	}
	for _, s := range l.segments {
		if cerr := s.close(); cerr != nil && err == nil {
			err = fmt.Errorf("log: close: %w", cerr)
		}
	}
	l.mu.Unlock()
	l.syncMu.Lock()
	l.syncCond.Broadcast()
	l.syncMu.Unlock()
	l.wg.Wait()
	return err
}

// Remove closes the log and deletes its directory. Calls in flight and
// later calls get an error that is both ErrTopicDeleted and ErrClosed.
// The directory is first renamed to a tombstone beside it (its name, cut
// to maxTombstonePrefix bytes, with TombstoneMark and a number appended),
// so that a crash during the removal leaves either the whole log or a
// tombstone, never part of a log; OpenTopics removes tombstones it finds.
func (l *Log) Remove() error {
	l.deleted.Store(true)
	cerr := l.Close()
	dir := filepath.Clean(l.cfg.Dir)
	base := filepath.Base(dir)
	base = base[:min(len(base), maxTombstonePrefix)]
	tomb := filepath.Join(filepath.Dir(dir), fmt.Sprintf("%s%s%d", base, TombstoneMark, l.cfg.Now().UnixNano()))
	if err := l.fs.Rename(dir, tomb); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("log: remove: %w", err)
		}
		tomb = ""
	} else if err := l.fs.SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("log: remove: %w", err)
	}
	if tomb != "" {
		if err := l.fs.RemoveAll(tomb); err != nil {
			return fmt.Errorf("log: remove: %w", err)
		}
	}
	if errors.Is(cerr, ErrFailed) {
		return nil
	}
	return cerr
}

// TombstoneMark is what Remove puts in the name of a log directory it is
// deleting; it cannot appear in a topic's directory name.
const TombstoneMark = "~deleted-"

// maxTombstonePrefix is how much of a log directory's name its tombstone
// keeps, so that with TombstoneMark and up to 20 digits it fits in 255
// bytes, the longest file name of common file systems: a topic of
// MaxTopicLen bytes would not.
const maxTombstonePrefix = 255 - len(TombstoneMark) - 20

// closedErr is the error of a call on the closed log: ErrClosed, or if
// the log was removed an error that is also ErrTopicDeleted.
func (l *Log) closedErr() error {
	if l.deleted.Load() {
		return deletedError{topic: l.cfg.Name}
	}
	return ErrClosed
}

// Failure returns the error that failed the log (see ErrFailed), or nil
// while it accepts appends.
func (l *Log) Failure() error { return l.failed() }

// background runs the interval fsync and periodic retention until Close.
func (l *Log) background() {
	defer l.wg.Done()
	var syncC, retainC <-chan time.Time
	if l.cfg.Sync == SyncInterval {
		t := time.NewTicker(l.cfg.SyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	if l.cfg.RetentionBytes > 0 || l.cfg.RetentionAge > 0 {
		t := time.NewTicker(l.cfg.RetentionCheck)
		defer t.Stop()
		retainC = t.C
	}
	for {
		select {
		case <-l.done:
			return
		case <-syncC:
			// A failed fsync was logged once, when the log failed.
			if err := l.Sync(); err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrFailed) {
				l.logger.Error("interval fsync", zap.Error(err))
			}
		case <-retainC:
			if err := l.EnforceRetention(); err != nil && !errors.Is(err, ErrClosed) {
				l.logger.Error("retention", zap.Error(err))
			}
		}
	}
}
