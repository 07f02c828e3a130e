package log

import (
	"fmt"
	"time"
)

// FullError is the error StartAppendCapped returns for an append that
// would take a log over its cap. It wraps ErrFull.
type FullError struct {
	// Bytes is the log's size on disk, appends not yet written included;
	// Adding what the append would add; Max the cap.
	Bytes, Adding, Max int64
	// Frees is, if retention is configured and could remove a segment,
	// how long until it runs on one; 0 if retention will not free space.
	Frees time.Duration
}

func (e *FullError) Error() string {
	return fmt.Sprintf("%v: appending %d bytes would take it from %d to %d bytes, over its cap of %d",
		ErrFull, e.Adding, e.Bytes, e.Bytes+e.Adding, e.Max)
}

func (e *FullError) Unwrap() error { return ErrFull }

// CheckCap returns the *FullError StartAppendCapped would return for
// values now, or nil; maxBytes 0 or less means no cap. It lets a caller
// refuse an append before doing anything else for it; the append itself
// checks again.
func (l *Log) CheckCap(values [][]byte, maxBytes int64) error {
	if maxBytes <= 0 {
		return nil
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.checkCapLocked(values, maxBytes)
}

// appendSize returns the bytes on disk an append of values takes: frames
// in the store and entries in the index.
func appendSize(values [][]byte) int64 {
	var n int64
	for _, v := range values {
		n += frameSize(len(v)) + entryWidth
	}
	return n
}

// checkCapLocked returns a *FullError if appending values would take the
// log over maxBytes. Lock (or RLock) must be held.
func (l *Log) checkCapLocked(values [][]byte, maxBytes int64) error {
	size := l.sizeLocked() + int64(len(l.pend.buf)) + int64(len(l.pend.positions))*entryWidth
	add := appendSize(values)
	if size+add <= maxBytes {
		return nil
	}
	return &FullError{Bytes: size, Adding: add, Max: maxBytes, Frees: l.freesLocked(size)}
}

// freesLocked returns how long until retention runs with a sealed
// segment to remove, the log being size bytes: the oldest one's age limit
// plus the time to the next background check (at most RetentionCheck),
// or the next check if the log is over RetentionBytes. 0 if retention will
// not remove anything. Lock must be held.
func (l *Log) freesLocked(size int64) time.Duration {
	if len(l.segments) < 2 {
		return 0
	}
	if l.cfg.RetentionBytes > 0 && size > l.cfg.RetentionBytes {
		return l.cfg.RetentionCheck
	}
	if l.cfg.RetentionAge > 0 {
		expires := time.Unix(0, l.segments[0].lastNanos).Add(l.cfg.RetentionAge)
		return max(0, expires.Sub(l.cfg.Now())) + l.cfg.RetentionCheck
	}
	return 0
}
