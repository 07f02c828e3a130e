package log

import (
	"time"
)

// EnforceRetention removes the oldest sealed segments while the log is
// over Config.RetentionBytes, or while the oldest segment's newest record
// is older than Config.RetentionAge. It also runs on every roll-over and
// every Config.RetentionCheck. The active segment is never removed.
func (l *Log) EnforceRetention() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closedErr()
	}
	return l.enforceRetentionLocked()
}

// enforceRetentionLocked: lock must be held.
func (l *Log) enforceRetentionLocked() error {
	maxBytes, maxAge := l.cfg.RetentionBytes, l.cfg.RetentionAge
	if maxBytes <= 0 && maxAge <= 0 {
		return nil
	}
	now := l.cfg.Now()
	total := l.sizeLocked()
	return l.removeOldestLocked(func(s *segment) bool {
		overBytes := maxBytes > 0 && total > maxBytes
		tooOld := maxAge > 0 && now.Sub(time.Unix(0, s.lastNanos)) > maxAge
		if overBytes || tooOld {
			total -= s.size + int64(s.n)*entryWidth
			return true
		}
		return false
	})
}
