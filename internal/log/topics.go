package log

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// DefaultTopic is the topic of requests that name none.
const DefaultTopic = "default"

// MaxTopicLen is the longest topic name, in bytes.
const MaxTopicLen = 249

// ValidateTopic checks a topic name: segments of [A-Za-z0-9._-] joined by
// '/', no segment empty, "." or "..", at most MaxTopicLen bytes. The error
// wraps ErrInvalidTopic and names the rule broken.
func ValidateTopic(name string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidTopic, name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return bad("must not be empty")
	}
	if len(name) > MaxTopicLen {
		return bad("%d bytes is longer than %d", len(name), MaxTopicLen)
	}
	for _, seg := range strings.Split(name, "/") {
		switch seg {
		case "":
			return bad("segments between '/' must not be empty")
		case ".", "..":
			return bad("segments must not be '.' or '..'")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return bad("byte %q is not allowed: use A-Z a-z 0-9 . _ - and '/' between segments", c)
			}
		}
	}
	return nil
}

// topicDir and dirTopic map topic names to directory names and back: '/'
// becomes '+', which topic names cannot contain.
func topicDir(name string) string { return strings.ReplaceAll(name, "/", "+") }
func dirTopic(dir string) string  { return strings.ReplaceAll(dir, "+", "/") }

// Topics is a data directory of topics, one Log each. Topics are created
// on first use by Open. All methods are safe for concurrent use.
type Topics struct {
	cfg Config // Dir is the data directory

	mu   sync.RWMutex
	logs map[string]*Log // guarded by mu
	// deleting holds the topics Delete is removing, each with a channel
	// closed once its directory is gone: Open of such a topic waits for
	// it, so a new log never shares a directory with a dying one.
	deleting map[string]chan struct{} // guarded by mu
	closed   bool                     // guarded by mu
}

// OpenTopics opens every topic in the data directory cfg.Dir (creating
// the directory if needed); cfg applies to every topic, with Dir replaced
// by the topic's own directory.
func OpenTopics(cfg Config) (*Topics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.FS.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("log: open topics: %w", err)
	}
	entries, err := cfg.FS.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("log: open topics: %w", err)
	}
	t := &Topics{cfg: cfg, logs: map[string]*Log{}, deleting: map[string]chan struct{}{}}
	for _, e := range entries {
		if e.IsDir() && strings.Contains(e.Name(), TombstoneMark) {
			// A Delete that a crash interrupted: finish it.
			if err := cfg.FS.RemoveAll(filepath.Join(cfg.Dir, e.Name())); err != nil {
				cfg.Logger.Warn("remove deleted topic", zap.String("dir", e.Name()), zap.Error(err))
			} else {
				cfg.Logger.Info("removed the rest of a deleted topic", zap.String("dir", e.Name()))
			}
			continue
		}
		name := dirTopic(e.Name())
		if !e.IsDir() || ValidateTopic(name) != nil {
			continue
		}
		l, err := t.open(name)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.logs[name] = l
	}
	return t, nil
}

func (t *Topics) open(name string) (*Log, error) {
	c := t.cfg
	c.Dir = filepath.Join(t.cfg.Dir, topicDir(name))
	c.Name = name
	c.Logger = t.cfg.Logger.With(zap.String("topic", name))
	return Open(c)
}

// Get returns the log of an existing topic, or ErrTopicNotFound.
func (t *Topics) Get(name string) (*Log, error) {
	if err := ValidateTopic(name); err != nil {
		return nil, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, ErrClosed
	}
	l, ok := t.logs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	return l, nil
}

// Open returns the log of a topic, creating the topic if it is new. If
// the topic is being deleted, it waits until the delete is done and
// creates it anew.
func (t *Topics) Open(name string) (*Log, error) {
	for {
		if l, err := t.Get(name); err == nil || !errors.Is(err, ErrTopicNotFound) {
			return l, err
		}
		l, deleting, err := t.create(name)
		if deleting == nil {
			return l, err
		}
		<-deleting
	}
}

// create makes a new topic's log, unless the topic exists (its log) or
// is being deleted (a channel closed once it is gone).
func (t *Topics) create(name string) (*Log, <-chan struct{}, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, nil, ErrClosed
	}
	if l, ok := t.logs[name]; ok {
		return l, nil, nil
	}
	if ch, ok := t.deleting[name]; ok {
		return nil, ch, nil
	}
	// A topic whose directory this call makes, and whose log then fails
	// to open (a full disk), must not leave the directory behind: the
	// topic would exist, empty, and OpenTopics would fail on it.
	dir := filepath.Join(t.cfg.Dir, topicDir(name))
	_, err := t.cfg.FS.ReadDir(dir)
	fresh := errors.Is(err, fs.ErrNotExist)
	l, err := t.open(name)
	if err != nil {
		if fresh {
			if rerr := t.cfg.FS.RemoveAll(dir); rerr != nil {
				t.cfg.Logger.Warn("remove the directory of a topic not created", zap.String("topic", name), zap.Error(rerr))
			}
		}
		return nil, nil, err
	}
	t.logs[name] = l
	return l, nil, nil
}

// Names returns the topics, sorted.
func (t *Topics) Names() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	names := make([]string, 0, len(t.logs))
	for n := range t.logs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Delete closes a topic's log and deletes its data (see Log.Remove), and
// returns the log's stats as it was closed. Calls on the log that are in
// flight, and later ones through a *Log obtained before, fail with an
// error that is ErrTopicDeleted (and ErrClosed); appends acknowledged
// before are gone with the topic. Get and Names no longer see the topic;
// an Open while the delete runs waits for it and creates the topic anew.
func (t *Topics) Delete(name string) (Stats, error) {
	if err := ValidateTopic(name); err != nil {
		return Stats{}, err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return Stats{}, ErrClosed
	}
	l, ok := t.logs[name]
	if !ok {
		t.mu.Unlock()
		return Stats{}, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	delete(t.logs, name)
	done := make(chan struct{})
	t.deleting[name] = done
	t.mu.Unlock()

	err := l.Remove()
	t.mu.Lock()
	delete(t.deleting, name)
	t.mu.Unlock()
	close(done)
	st := l.Stats()
	if err != nil {
		t.cfg.Logger.Error("delete topic", zap.String("topic", name), zap.Error(err))
	} else {
		t.cfg.Logger.Info("topic deleted", zap.String("topic", name), zap.Uint64("lowest_offset", st.Lowest),
			zap.Uint64("next_offset", st.Next), zap.Int("segments", st.Segments), zap.Int64("bytes", st.Bytes))
	}
	return st, err
}

// Close closes every topic's log.
func (t *Topics) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, l := range t.logs {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}
