package log

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestValidateTopic(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		ok    bool
		rule  string // a word of the error message naming the rule broken
	}{
		{name: "default", topic: "default", ok: true},
		{name: "with slash", topic: "alice/orders", ok: true},
		{name: "punctuation", topic: "a.b-c_d", ok: true},
		{name: "digits and capitals", topic: "Team42/Q3.v2", ok: true},
		{name: "dots inside a segment", topic: "a/..b/c..", ok: true},
		{name: "249 bytes", topic: strings.Repeat("a", MaxTopicLen), ok: true},
		{name: "249 bytes with slashes", topic: strings.Repeat("ab/", 82) + "abc", ok: true},
		{name: "249 bytes ending in a slash", topic: strings.Repeat("ab/", 83), rule: "empty"},
		{name: "empty", topic: "", rule: "empty"},
		{name: "leading slash", topic: "/a", rule: "empty"},
		{name: "trailing slash", topic: "a/", rule: "empty"},
		{name: "double slash", topic: "a//b", rule: "empty"},
		{name: "dot", topic: ".", rule: "'.'"},
		{name: "dot dot", topic: "..", rule: "'..'"},
		{name: "dot dot segment", topic: "a/../b", rule: "'..'"},
		{name: "dot segment", topic: "a/./b", rule: "'.'"},
		{name: "space", topic: "a b", rule: "not allowed"},
		{name: "plus", topic: "a+b", rule: "not allowed"},
		{name: "backslash", topic: `a\b`, rule: "not allowed"},
		{name: "NUL", topic: "a\x00b", rule: "not allowed"},
		{name: "250 bytes", topic: strings.Repeat("a", MaxTopicLen+1), rule: "longer"},
		{name: "unicode", topic: "café", rule: "not allowed"},
		{name: "unicode only", topic: "日本", rule: "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTopic(tt.topic)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidateTopic(%q) = %v, want nil", tt.topic, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("ValidateTopic(%q) = %v, want an error wrapping ErrInvalidTopic", tt.topic, err)
			}
			if !strings.Contains(err.Error(), tt.rule) {
				t.Errorf("ValidateTopic(%q) = %q, want it to name the rule (%q)", tt.topic, err, tt.rule)
			}
		})
	}
}

// ftTopicsConfig returns a configuration for a fresh data directory.
func ftTopicsConfig(t testing.TB) Config {
	t.Helper()
	cfg := DefaultConfig(filepath.Join(t.TempDir(), "data"))
	cfg.Sync = SyncNone
	ftThreePerSegment(&cfg)
	return cfg
}

// ftOpenTopics opens topics and closes them when the test ends.
func ftOpenTopics(t testing.TB, cfg Config) *Topics {
	t.Helper()
	tp, err := OpenTopics(cfg)
	if err != nil {
		t.Fatalf("OpenTopics: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("Topics.Close: %v", err)
		}
	})
	return tp
}

func TestTopics(t *testing.T) {
	cfg := ftTopicsConfig(t)
	tp := ftOpenTopics(t, cfg)
	if names := tp.Names(); len(names) != 0 {
		t.Fatalf("Names of a new data directory = %v, want none", names)
	}

	topics := []string{"default", "alice/orders", "a.b-c_d", "alice/orders/eu"}
	for i, name := range topics {
		if _, err := tp.Get(name); !errors.Is(err, ErrTopicNotFound) {
			t.Fatalf("Get(%q) before Open = %v, want ErrTopicNotFound", name, err)
		}
		l, err := tp.Open(name)
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		ftAppendRange(t, l, 0, uint64(3+i))
		// Open and Get of an existing topic return the same log.
		if again, err := tp.Open(name); err != nil || again != l {
			t.Fatalf("second Open(%q) = (%p, %v), want (%p, nil)", name, again, err, l)
		}
		if got, err := tp.Get(name); err != nil || got != l {
			t.Fatalf("Get(%q) = (%p, %v), want (%p, nil)", name, got, err, l)
		}
		// The topic's own directory holds the log, '/' spelled '+'.
		want := filepath.Join(cfg.Dir, strings.ReplaceAll(name, "/", "+"))
		if l.Dir() != want {
			t.Fatalf("topic %q in %q, want %q", name, l.Dir(), want)
		}
		if _, err := os.Stat(filepath.Join(want, "00000000000000000000.store")); err != nil {
			t.Fatalf("topic %q: first store file: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "alice+orders")); err != nil {
		t.Errorf("directory of alice/orders: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "alice")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(data/alice) = %v, want ErrNotExist: topics are not nested directories", err)
	}
	wantNames := []string{"a.b-c_d", "alice/orders", "alice/orders/eu", "default"}
	if got := tp.Names(); !slices.Equal(got, wantNames) {
		t.Fatalf("Names = %v, want %v", got, wantNames)
	}

	// Names that are not valid topics are refused, not created.
	for _, bad := range []string{"", "a b", "../escape", "a+b"} {
		if _, err := tp.Open(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Open(%q) = %v, want ErrInvalidTopic", bad, err)
		}
		if _, err := tp.Get(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Get(%q) = %v, want ErrInvalidTopic", bad, err)
		}
		if _, err := tp.Delete(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidTopic", bad, err)
		}
	}
	if _, err := tp.Get("unknown"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrTopicNotFound", err)
	}
	if _, err := tp.Delete("unknown"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("Delete(unknown) = %v, want ErrTopicNotFound", err)
	}

	// Reopen: every topic is found again, with its data.
	if err := tp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := tp.Open("default"); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close = %v, want ErrClosed", err)
	}
	if _, err := tp.Get("default"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if _, err := tp.Delete("default"); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close = %v, want ErrClosed", err)
	}
	// Entries of the data directory that are not topics are ignored.
	if err := os.WriteFile(filepath.Join(cfg.Dir, "README"), []byte("not a topic"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(cfg.Dir, "not a topic"), 0o755); err != nil {
		t.Fatal(err)
	}
	tp = ftOpenTopics(t, cfg)
	if got := tp.Names(); !slices.Equal(got, wantNames) {
		t.Fatalf("Names after reopen = %v, want %v", got, wantNames)
	}
	for i, name := range topics {
		l, err := tp.Get(name)
		if err != nil {
			t.Fatalf("Get(%q) after reopen: %v", name, err)
		}
		if lo, next := l.Offsets(); lo != 0 || next != uint64(3+i) {
			t.Fatalf("topic %q after reopen: Offsets = (%d, %d), want (0, %d)", name, lo, next, 3+i)
		}
		ftCheckRange(t, l, 0, uint64(3+i))
	}

	// Delete removes the topic and its directory, and only those.
	deleted, _ := tp.Get("alice/orders")
	st, err := tp.Delete("alice/orders")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if st.Lowest != 0 || st.Next != 4 || st.Segments != 2 || st.Bytes == 0 {
		t.Errorf("Delete returned stats %+v, want offsets 0..3 in two segments", st)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "alice+orders")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(alice+orders) after Delete = %v, want ErrNotExist", err)
	}
	if _, err := deleted.Append([]byte("x")); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrTopicDeleted) {
		t.Errorf("Append to a deleted topic's log = %v, want ErrTopicDeleted and ErrClosed", err)
	}
	if _, err := deleted.Read(0); !errors.Is(err, ErrTopicDeleted) || !strings.Contains(err.Error(), `"alice/orders"`) {
		t.Errorf("Read of a deleted topic's log = %v, want ErrTopicDeleted naming the topic", err)
	}
	if _, err := tp.Get("alice/orders"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("Get after Delete = %v, want ErrTopicNotFound", err)
	}
	if _, err := tp.Delete("alice/orders"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("second Delete = %v, want ErrTopicNotFound", err)
	}
	wantNames = []string{"a.b-c_d", "alice/orders/eu", "default"}
	if got := tp.Names(); !slices.Equal(got, wantNames) {
		t.Fatalf("Names after Delete = %v, want %v", got, wantNames)
	}
	l, err := tp.Get("alice/orders/eu")
	if err != nil {
		t.Fatalf("Get(alice/orders/eu) after deleting alice/orders: %v", err)
	}
	ftCheckRange(t, l, 0, 6)

	// A deleted topic can be created again, empty.
	l, err = tp.Open("alice/orders")
	if err != nil {
		t.Fatal(err)
	}
	if lo, next := l.Offsets(); lo != 0 || next != 0 {
		t.Fatalf("recreated topic: Offsets = (%d, %d), want (0, 0)", lo, next)
	}
}

func TestTopicsConfigApplies(t *testing.T) {
	cfg := ftTopicsConfig(t)
	cfg.InitialOffset = 77
	tp := ftOpenTopics(t, cfg)
	l, err := tp.Open("x/y")
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config()
	if c.Dir != filepath.Join(cfg.Dir, "x+y") || c.MaxStoreBytes != cfg.MaxStoreBytes || c.MaxIndexBytes != cfg.MaxIndexBytes || c.Sync != cfg.Sync {
		t.Fatalf("topic config = Dir %q, MaxStoreBytes %d, MaxIndexBytes %d, Sync %v; want Dir %q and the data directory's settings",
			c.Dir, c.MaxStoreBytes, c.MaxIndexBytes, c.Sync, filepath.Join(cfg.Dir, "x+y"))
	}
	if off, err := l.Append([]byte("v")); err != nil || off != 77 {
		t.Fatalf("first Append = (%d, %v), want (77, nil)", off, err)
	}

	bad := cfg
	bad.MaxIndexBytes = 1
	if _, err := OpenTopics(bad); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("OpenTopics with a bad config = %v, want ErrInvalidConfig", err)
	}
}

func TestTopicsConcurrentOpen(t *testing.T) {
	tp := ftOpenTopics(t, ftTopicsConfig(t))
	const goroutines = 8
	var wg sync.WaitGroup
	logs := make([]*Log, goroutines)
	for i := range goroutines {
		wg.Go(func() {
			l, err := tp.Open("shared/topic")
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			if _, err := l.Append([]byte{byte(i)}); err != nil {
				t.Errorf("Append: %v", err)
			}
			logs[i] = l
		})
	}
	wg.Wait()
	for i, l := range logs {
		if l != logs[0] {
			t.Fatalf("goroutine %d got log %p, goroutine 0 got %p: want one log per topic", i, l, logs[0])
		}
	}
	if next := logs[0].NextOffset(); next != goroutines {
		t.Fatalf("NextOffset = %d, want %d", next, goroutines)
	}
}

// TestTopicsDeleteUnderLoad deletes a topic while appenders (opening it
// for every batch, as the server does) and tail followers use it: every
// call fails with ErrTopicDeleted or succeeds, nothing panics, and the
// topic the appenders recreate holds only good records from offset 0.
func TestTopicsDeleteUnderLoad(t *testing.T) {
	cfg := ftTopicsConfig(t)
	cfg.Sync = SyncAlways // group commit: appends waiting for an fsync when the log closes
	tp := ftOpenTopics(t, cfg)
	const topic = "load/t"
	first, err := tp.Open(topic)
	if err != nil {
		t.Fatal(err)
	}
	ftAppendRange(t, first, 0, 10)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, err := tp.Open(topic)
				if err != nil {
					t.Errorf("appender %d: Open: %v", i, err)
					return
				}
				_, err = l.AppendBatch([][]byte{[]byte("a"), []byte("b")})
				if err != nil && !errors.Is(err, ErrTopicDeleted) {
					t.Errorf("appender %d: Append: %v, want nil or ErrTopicDeleted", i, err)
					return
				}
			}
		})
	}
	followed := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			r := first.NewReader(0)
			for {
				_, err := r.Next()
				if errors.Is(err, io.EOF) {
					err = first.Wait(context.Background(), r.Offset())
				}
				if err != nil {
					followed <- err
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	st, err := tp.Delete(topic)
	if err != nil {
		t.Fatalf("Delete under load: %v", err)
	}
	if st.Next < 10 {
		t.Errorf("Delete returned stats %+v, want at least the 10 records appended first", st)
	}
	for range 2 {
		select {
		case err := <-followed:
			if !errors.Is(err, ErrTopicDeleted) {
				t.Errorf("follower ended with %v, want ErrTopicDeleted", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a follower of the deleted topic still waits after 10s")
		}
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()

	// The appenders recreated the topic: from offset 0, every record good.
	l, err := tp.Get(topic)
	if err != nil {
		t.Fatalf("Get after the appenders recreated the topic: %v", err)
	}
	if l == first {
		t.Fatal("Get returns the deleted log")
	}
	lo, next := l.Offsets()
	if lo != 0 || next == 0 || next%2 != 0 {
		t.Fatalf("recreated topic holds offsets [%d, %d), want [0, n) with whole batches of 2", lo, next)
	}
	r := l.NewReader(0)
	for off := range next {
		rec, err := r.Next()
		want := "a"
		if off%2 == 1 {
			want = "b"
		}
		if err != nil || rec.Offset != off || string(rec.Value) != want {
			t.Fatalf("recreated topic at %d: got %+v, %v; want %q", off, rec, err, want)
		}
	}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), TombstoneMark) {
			t.Errorf("data directory still holds %s after Delete", e.Name())
		}
	}
}

// ftBlockRenameFS blocks Rename until release is closed, after closing
// renaming.
type ftBlockRenameFS struct {
	OSFS
	renaming, release chan struct{}
}

func (f ftBlockRenameFS) Rename(oldname, newname string) error {
	close(f.renaming)
	<-f.release
	return f.OSFS.Rename(oldname, newname)
}

// TestTopicsOpenWaitsForDelete: an Open while a Delete removes the
// topic's directory waits for it, so the new log's files are not removed
// with the old ones.
func TestTopicsOpenWaitsForDelete(t *testing.T) {
	cfg := ftTopicsConfig(t)
	fsys := ftBlockRenameFS{renaming: make(chan struct{}), release: make(chan struct{})}
	cfg.FS = fsys
	tp := ftOpenTopics(t, cfg)
	l, err := tp.Open("w")
	if err != nil {
		t.Fatal(err)
	}
	ftAppendRange(t, l, 0, 5)
	deleted := make(chan error, 1)
	go func() {
		_, err := tp.Delete("w")
		deleted <- err
	}()
	<-fsys.renaming
	opened := make(chan *Log, 1)
	go func() {
		l, err := tp.Open("w")
		if err != nil {
			t.Errorf("Open during Delete: %v", err)
		}
		opened <- l
	}()
	select {
	case <-opened:
		t.Fatal("Open returned while Delete was still removing the directory")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := tp.Get("w"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("Get during Delete = %v, want ErrTopicNotFound", err)
	}
	close(fsys.release)
	if err := <-deleted; err != nil {
		t.Fatalf("Delete: %v", err)
	}
	nl := <-opened
	if nl == nil || nl == l {
		t.Fatalf("Open after Delete returned %p (deleted log %p), want a new log", nl, l)
	}
	if lo, next := nl.Offsets(); lo != 0 || next != 0 {
		t.Fatalf("new log: Offsets = (%d, %d), want (0, 0)", lo, next)
	}
	ftAppendRange(t, nl, 0, 4) // rolls over: the new log's files are all there
	ftCheckRange(t, nl, 0, 4)
}

// TestTopicsDeleteLongName: a topic whose name has the longest length
// allowed is deleted like any other, although its directory's name
// followed by TombstoneMark and a number is longer than a file name may
// be (255 bytes).
func TestTopicsDeleteLongName(t *testing.T) {
	cfg := ftTopicsConfig(t)
	tp := ftOpenTopics(t, cfg)
	for _, name := range []string{strings.Repeat("a", MaxTopicLen), strings.Repeat("ab/", 82) + "abc"} {
		l, err := tp.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		ftAppendRange(t, l, 0, 4)
		dir := l.Dir()
		if _, err := tp.Delete(name); err != nil {
			t.Fatalf("Delete of a %d-byte topic: %v", len(name), err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(topic directory) after Delete = %v, want ErrNotExist", err)
		}
		if entries, err := os.ReadDir(cfg.Dir); err != nil || len(entries) != 0 {
			t.Errorf("data directory after Delete: %d entries (%v), want none", len(entries), err)
		}
		// The topic comes back empty.
		nl, err := tp.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		ftAppendRange(t, nl, 0, 1)
		if _, err := tp.Delete(name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenTopicsRemovesTombstones: a directory a Delete left behind when
// the process died is removed at open, and is not a topic.
func TestOpenTopicsRemovesTombstones(t *testing.T) {
	cfg := ftTopicsConfig(t)
	tomb := filepath.Join(cfg.Dir, "alice+orders"+TombstoneMark+"123")
	if err := os.MkdirAll(tomb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tomb, "00000000000000000000.store"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	tp := ftOpenTopics(t, cfg)
	if names := tp.Names(); len(names) != 0 {
		t.Errorf("Names = %v, want none", names)
	}
	if _, err := os.Stat(tomb); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(tombstone) after OpenTopics = %v, want ErrNotExist", err)
	}
}
