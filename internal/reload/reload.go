// Package reload re-reads logd's live configuration files (the ACL
// policy, the quota file, the server certificate, the CA bundle, the CRL)
// when the operator sends SIGHUP and when a file changes on disk.
//
// Each Source names its files and a Load function that re-reads them and,
// only if they parse, swaps the new value in whole (an atomic pointer
// swap in the owner): a reload that fails keeps the old value and is
// logged. A file counts as changed when its contents differ from the last
// ones loaded and have stayed the same for one poll, so that a file being
// written in place is not loaded half-written; renaming a finished file
// into place is still the safe way to update it.
//
// Every reload is reported by a log line ("reloaded" or "reload failed")
// with the source's name and what triggered it, and to the OnReload hook.
// A Watcher is safe for concurrent use; Reload, Check and Run may be
// called from any goroutine.
package reload

import (
	"context"
	"crypto/sha256"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultInterval is how often Run looks at the files.
const DefaultInterval = time.Second

// Source is one reloadable piece of configuration.
type Source struct {
	// Name says what it is in log lines, e.g. "acl policy".
	Name string
	// Paths are the files it is read from; empty paths are skipped (an
	// embedded default does not change).
	Paths []string
	// Load re-reads the files and swaps the new value in, or returns an
	// error and changes nothing.
	Load func() error
}

// Trigger says why a reload happened.
type Trigger string

// Triggers.
const (
	Signal     Trigger = "signal"
	FileChange Trigger = "file change"
)

// Watcher reloads Sources.
type Watcher struct {
	logger   *zap.Logger
	interval time.Duration

	// OnReload, if set before Run, is called after every reload attempt.
	OnReload func(name string, trigger Trigger, err error)

	mu      sync.Mutex // serializes reloads and guards sources
	sources []*watched
}

type watched struct {
	Source
	loaded  [][sha256.Size]byte // contents last loaded
	pending [][sha256.Size]byte // contents seen changed at the last poll
}

// New returns a Watcher that polls files every interval (DefaultInterval
// if zero) once Run is called.
func New(logger *zap.Logger, interval time.Duration) *Watcher {
	if logger == nil {
		logger = zap.NewNop()
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Watcher{logger: logger, interval: interval}
}

// Add registers a Source whose current value is already loaded: its
// files' contents now are the baseline for change detection.
func (w *Watcher) Add(s Source) {
	var paths []string
	for _, p := range s.Paths {
		if p != "" {
			paths = append(paths, p)
		}
	}
	s.Paths = paths
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sources = append(w.sources, &watched{Source: s, loaded: digests(paths)})
}

// Reload reloads every Source now, as SIGHUP does, and returns the first
// error (each is also logged).
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first error
	for _, s := range w.sources {
		if err := w.load(s, Signal, digests(s.Paths)); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Check reloads the Sources whose files changed and then stayed the same
// since the previous Check.
func (w *Watcher) Check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.sources {
		now := digests(s.Paths)
		switch {
		case slices.Equal(now, s.loaded):
			s.pending = nil
		case s.pending != nil && slices.Equal(now, s.pending):
			s.pending = nil
			w.load(s, FileChange, now)
		default:
			s.pending = now
		}
	}
}

// load runs s.Load; on success, sums become the loaded contents. A
// failed load also records them, so the same broken file is not retried
// every poll; the next change or signal tries again.
func (w *Watcher) load(s *watched, trigger Trigger, sums [][sha256.Size]byte) error {
	err := s.Load()
	s.loaded = sums
	if err != nil {
		w.logger.Error("reload failed, keeping the previous one", zap.String("source", s.Name),
			zap.Strings("files", s.Paths), zap.String("trigger", string(trigger)), zap.Error(err))
	} else {
		w.logger.Info("reloaded", zap.String("source", s.Name),
			zap.Strings("files", s.Paths), zap.String("trigger", string(trigger)))
	}
	if w.OnReload != nil {
		w.OnReload(s.Name, trigger, err)
	}
	return err
}

// Run polls the files and reloads on every value from signals (pass a
// channel fed by signal.Notify(ch, syscall.SIGHUP), or nil) until ctx
// ends.
func (w *Watcher) Run(ctx context.Context, signals <-chan os.Signal) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			w.Reload()
		case <-t.C:
			w.Check()
		}
	}
}

// digests returns a checksum of each file's contents; an unreadable file
// gets the zero sum, so that it counts as changed when it comes back.
func digests(paths []string) [][sha256.Size]byte {
	out := make([][sha256.Size]byte, len(paths))
	for i, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			out[i] = sha256.Sum256(b)
		}
	}
	return out
}
