package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers shared by this package's functional tests (log_test.go,
// suite_test.go, topics_test.go, memory_test.go) carry the prefix "ft".

// ftConfig returns the default configuration for a fresh directory of t,
// with SyncNone (fast; tests of durability set their policy), changed by
// edit.
func ftConfig(t testing.TB, edit func(*Config)) Config {
	t.Helper()
	cfg := DefaultConfig(filepath.Join(t.TempDir(), "log"))
	cfg.Sync = SyncNone
	if edit != nil {
		edit(&cfg)
	}
	return cfg
}

// ftMaxValue is the largest value ftValue returns, and the MaxRecordBytes
// of ftThreePerSegment.
const ftMaxValue = 100

// ftThreePerSegment configures segments of at most three records, whether
// the store or the index fills first.
func ftThreePerSegment(c *Config) {
	c.MaxRecordBytes = ftMaxValue
	c.MaxStoreBytes = 3 * frameSize(ftMaxValue)
	c.MaxIndexBytes = 3 * entryWidth
}

// ftOpen opens a log and closes it when the test ends.
func ftOpen(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.Dir, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// ftValue is the value the tests append at offset off: 0 to ftMaxValue
// bytes, different for every offset.
func ftValue(off uint64) []byte { return ftPattern(off, int(off*29%(ftMaxValue+1))) }

// ftAppendRange appends ftValue(off) for off in [from, to), one by one,
// and checks the offsets.
func ftAppendRange(t testing.TB, l *Log, from, to uint64) {
	t.Helper()
	for off := from; off < to; off++ {
		got, err := l.Append(ftValue(off))
		if err != nil {
			t.Fatalf("Append(offset %d): %v", off, err)
		}
		if got != off {
			t.Fatalf("Append returned offset %d, want %d", got, off)
		}
	}
}

// ftCheckRange reads every offset in [from, to) and checks it holds
// ftValue(off).
func ftCheckRange(t testing.TB, l *Log, from, to uint64) {
	t.Helper()
	for off := from; off < to; off++ {
		rec, err := l.Read(off)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if rec.Offset != off || !bytes.Equal(rec.Value, ftValue(off)) {
			t.Fatalf("Read(%d) = offset %d, %d value bytes; want offset %d, ftValue(%d) (%d bytes)",
				off, rec.Offset, len(rec.Value), off, off, len(ftValue(off)))
		}
	}
}

// ftReadAll reads from offset from with a Reader until io.EOF.
func ftReadAll(t testing.TB, l *Log, from uint64) []Record {
	t.Helper()
	r := l.NewReader(from)
	var recs []Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatalf("Reader.Next at offset %d: %v", r.Offset(), err)
		}
		recs = append(recs, rec)
	}
}

// ftBases returns the base offsets of the files in dir with suffix.
func ftBases(t testing.TB, dir, suffix string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	var bases []uint64
	for _, e := range entries {
		if b, sfx, ok := parseSegmentName(e.Name()); ok && sfx == suffix {
			bases = append(bases, b)
		}
	}
	slices.Sort(bases)
	return bases
}

// ftClock is a fake clock for Config.Now.
type ftClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFtClock() *ftClock {
	return &ftClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *ftClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *ftClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ftHookFS is the operating system's file system with hooks run before a
// file's Sync and ReadAt. The hooks are set before the FS is used.
type ftHookFS struct {
	OSFS
	beforeSync   func(name string)
	beforeReadAt func(name string)
}

func (h *ftHookFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := h.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &ftHookFile{File: f, name: name, fs: h}, nil
}

type ftHookFile struct {
	File
	name string
	fs   *ftHookFS
}

func (f *ftHookFile) Sync() error {
	if h := f.fs.beforeSync; h != nil {
		h(f.name)
	}
	return f.File.Sync()
}

func (f *ftHookFile) ReadAt(p []byte, off int64) (int, error) {
	if h := f.fs.beforeReadAt; h != nil {
		h(f.name)
	}
	return f.File.ReadAt(p, off)
}

// ftGate stops the first goroutine that passes it once armed, until
// released.
type ftGate struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newFtGate(t testing.TB) *ftGate {
	t.Helper()
	g := &ftGate{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open) // never leave a goroutine stuck, even on failure
	return g
}

func (g *ftGate) pass() {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
}

func (g *ftGate) open() { g.once.Do(func() { close(g.release) }) }

// waitEntered waits for a goroutine to be stopped at the gate.
func (g *ftGate) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no goroutine reached the gate in 10s")
	}
}

// ftEventually polls cond until it holds or 10s pass.
func ftEventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ftWritten returns the offset the next append gets: records below it are
// written, though maybe not yet visible.
func ftWritten(l *Log) uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.next
}

func TestLogAppend(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		batches [][]int // value sizes; a batch of one is appended with Append
		want    []uint64
	}{
		{name: "single appends", batches: [][]int{{10}, {0}, {300}}, want: []uint64{0, 1, 2}},
		{name: "one batch", batches: [][]int{{1, 2, 3, 4, 5}}, want: []uint64{0}},
		{name: "batches and singles", batches: [][]int{{5}, {6, 7, 8}, {9}, {10, 11}}, want: []uint64{0, 1, 4, 5}},
		{name: "empty values", batches: [][]int{{0, 0}, {0}}, want: []uint64{0, 2}},
		{
			name:    "initial offset",
			edit:    func(c *Config) { c.InitialOffset = 1000 },
			batches: [][]int{{1}, {2, 3}, {4}},
			want:    []uint64{1000, 1001, 1003},
		},
		{
			name:    "batch across segments",
			edit:    ftThreePerSegment,
			batches: [][]int{{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, {1}, {2, 3}},
			want:    []uint64{0, 10, 11},
		},
		{
			name:    "batch over the write chunk",
			batches: [][]int{{600 << 10, 600 << 10, 600 << 10, 10}, {1}},
			want:    []uint64{0, 4},
		},
		{
			name:    "sync always",
			edit:    func(c *Config) { c.Sync = SyncAlways },
			batches: [][]int{{1}, {2, 3}},
			want:    []uint64{0, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFtClock()
			cfg := ftConfig(t, func(c *Config) {
				c.Now = clock.Now
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			l := ftOpen(t, cfg)
			type appended struct {
				value []byte
				time  time.Time
			}
			var all []appended
			next := cfg.InitialOffset
			for i, sizes := range tt.batches {
				var values [][]byte
				for j, n := range sizes {
					values = append(values, ftPattern(uint64(100*i+j), n))
				}
				clock.Add(time.Second)
				var first uint64
				var err error
				if len(values) == 1 {
					first, err = l.Append(values[0])
				} else {
					first, err = l.AppendBatch(values)
				}
				if err != nil {
					t.Fatalf("append batch %d: %v", i, err)
				}
				if first != tt.want[i] {
					t.Errorf("batch %d: first offset %d, want %d", i, first, tt.want[i])
				}
				next += uint64(len(values))
				if got := l.NextOffset(); got != next {
					t.Errorf("after batch %d: NextOffset = %d, want %d", i, got, next)
				}
				for _, v := range values {
					all = append(all, appended{value: v, time: clock.Now()})
				}
			}
			if lo, nx := l.Offsets(); lo != cfg.InitialOffset || nx != next {
				t.Errorf("Offsets = (%d, %d), want (%d, %d)", lo, nx, cfg.InitialOffset, next)
			}
			for i, a := range all {
				off := cfg.InitialOffset + uint64(i)
				rec, err := l.Read(off)
				if err != nil {
					t.Fatalf("Read(%d): %v", off, err)
				}
				if rec.Offset != off || !bytes.Equal(rec.Value, a.value) || !rec.Time.Equal(a.time) {
					t.Errorf("Read(%d) = (offset %d, %d bytes, %v), want (offset %d, %d bytes, %v)",
						off, rec.Offset, len(rec.Value), rec.Time, off, len(a.value), a.time)
				}
			}
		})
	}
}

func TestLogReadRange(t *testing.T) {
	// Offsets 100..110 in segments of three; Truncate drops 100..102.
	cfg := ftConfig(t, func(c *Config) {
		ftThreePerSegment(c)
		c.InitialOffset = 100
	})
	l := ftOpen(t, cfg)
	ftAppendRange(t, l, 100, 111)
	if err := l.Truncate(103); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	if lo, next := l.Offsets(); lo != 103 || next != 111 {
		t.Fatalf("Offsets = (%d, %d), want (103, 111)", lo, next)
	}
	tests := []struct {
		name string
		off  uint64
		want error // nil: readable
	}{
		{name: "zero", off: 0, want: ErrOffsetCompacted},
		{name: "initial offset", off: 100, want: ErrOffsetCompacted},
		{name: "lowest minus one", off: 102, want: ErrOffsetCompacted},
		{name: "lowest", off: 103, want: nil},
		{name: "middle", off: 107, want: nil},
		{name: "newest", off: 110, want: nil},
		{name: "next", off: 111, want: ErrOffsetOutOfRange},
		{name: "past next", off: 112, want: ErrOffsetOutOfRange},
		{name: "max uint64", off: ^uint64(0), want: ErrOffsetOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := l.Read(tt.off)
			if tt.want == nil {
				if err != nil || rec.Offset != tt.off || !bytes.Equal(rec.Value, ftValue(tt.off)) {
					t.Fatalf("Read(%d) = (offset %d, %v), want (offset %d, nil) with ftValue", tt.off, rec.Offset, err, tt.off)
				}
			} else {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Read(%d) error = %v, want %v", tt.off, err, tt.want)
				}
				other := ErrOffsetOutOfRange
				if tt.want == ErrOffsetOutOfRange {
					other = ErrOffsetCompacted
				}
				if errors.Is(err, other) {
					t.Fatalf("Read(%d) error %v is also %v; the two must be distinct", tt.off, err, other)
				}
			}
			// A Reader reports the end of the log as io.EOF.
			_, err = l.NewReader(tt.off).Next()
			wantNext := tt.want
			if wantNext == ErrOffsetOutOfRange {
				wantNext = io.EOF
			}
			if !errors.Is(err, wantNext) {
				t.Fatalf("NewReader(%d).Next() error = %v, want %v", tt.off, err, wantNext)
			}
		})
	}
}

func TestLogReader(t *testing.T) {
	// Segments of three records by index size, with two values larger than
	// the Reader's read chunk.
	cfg := ftConfig(t, func(c *Config) { c.MaxIndexBytes = 3 * entryWidth })
	l := ftOpen(t, cfg)
	var values [][]byte
	for i := range 20 {
		n := i * 7
		switch i {
		case 4:
			n = readChunk + 1000
		case 8:
			n = 3 * readChunk
		case 5, 9:
			n = 0
		}
		values = append(values, ftPattern(uint64(i)+7, n))
	}
	if _, err := l.AppendBatch(values[:10]); err != nil {
		t.Fatal(err)
	}
	for _, v := range values[10:] {
		if _, err := l.Append(v); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := ftBases(t, cfg.Dir, storeSuffix), []uint64{0, 3, 6, 9, 12, 15, 18}; !slices.Equal(got, want) {
		t.Fatalf("segments = %v, want %v", got, want)
	}
	for _, from := range []uint64{0, 1, 2, 3, 4, 8, 9, 17, 18, 19, 20} {
		t.Run(fmt.Sprintf("from=%d", from), func(t *testing.T) {
			r := l.NewReader(from)
			if r.Offset() != from {
				t.Fatalf("Offset() = %d, want %d", r.Offset(), from)
			}
			for off := from; off < 20; off++ {
				rec, err := r.Next()
				if err != nil {
					t.Fatalf("Next at %d: %v", off, err)
				}
				if rec.Offset != off || !bytes.Equal(rec.Value, values[off]) {
					t.Fatalf("Next = (offset %d, %d bytes), want (offset %d, %d bytes)", rec.Offset, len(rec.Value), off, len(values[off]))
				}
			}
			if _, err := r.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("Next at the end: got %v, want io.EOF", err)
			}
			if r.Offset() != 20 {
				t.Fatalf("Offset() at the end = %d, want 20", r.Offset())
			}
		})
	}

	t.Run("continues after appends", func(t *testing.T) {
		r := l.NewReader(18)
		for range 2 {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("Next at the end: got %v, want io.EOF", err)
		}
		for i := range 5 {
			v := []byte(fmt.Sprintf("later-%d", i))
			if _, err := l.Append(v); err != nil {
				t.Fatal(err)
			}
			rec, err := r.Next()
			if err != nil || rec.Offset != uint64(20+i) || !bytes.Equal(rec.Value, v) {
				t.Fatalf("Next after append = (%d, %q, %v), want (%d, %q, nil)", rec.Offset, rec.Value, err, 20+i, v)
			}
		}
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("Next at the end: got %v, want io.EOF", err)
		}
	})

	t.Run("value is the caller's", func(t *testing.T) {
		r := l.NewReader(0)
		a, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		keep := append([]byte(nil), a.Value...)
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Value, keep) {
			t.Fatalf("a record's Value changed after the next Next")
		}
	})
}

func TestLogRollOver(t *testing.T) {
	const v = 100 // value size of most records
	fs := frameSize(v)
	tests := []struct {
		name      string
		edit      func(*Config)
		sizes     []int
		batch     bool
		wantBases []uint64
	}{
		{
			name:      "store bytes",
			edit:      func(c *Config) { c.MaxRecordBytes = v; c.MaxStoreBytes = 3 * fs },
			sizes:     []int{v, v, v, v, v, v, v, v, v, v},
			wantBases: []uint64{0, 3, 6, 9},
		},
		{
			name:      "store bytes, one batch",
			edit:      func(c *Config) { c.MaxRecordBytes = v; c.MaxStoreBytes = 3 * fs },
			sizes:     []int{v, v, v, v, v, v, v, v, v, v},
			batch:     true,
			wantBases: []uint64{0, 3, 6, 9},
		},
		{
			// 100+100+50 fills the store exactly; the next record rolls.
			name:      "store bytes, exact fit",
			edit:      func(c *Config) { c.MaxRecordBytes = v; c.MaxStoreBytes = 2*fs + frameSize(50) },
			sizes:     []int{v, v, 50, 1, v, v, 50},
			wantBases: []uint64{0, 3, 6},
		},
		{
			name:      "store bytes, a record as large as the store",
			edit:      func(c *Config) { c.MaxRecordBytes = v; c.MaxStoreBytes = fs },
			sizes:     []int{v, 0, 0, v, 1},
			wantBases: []uint64{0, 1, 3, 4},
		},
		{
			name:      "index bytes",
			edit:      func(c *Config) { c.MaxIndexBytes = 3 * entryWidth },
			sizes:     []int{v, v, v, v, v, v, v, v, v, v},
			wantBases: []uint64{0, 3, 6, 9},
		},
		{
			name:      "index bytes, one batch",
			edit:      func(c *Config) { c.MaxIndexBytes = 3 * entryWidth },
			sizes:     []int{0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			batch:     true,
			wantBases: []uint64{0, 3, 6, 9},
		},
		{
			name:      "index bytes not a multiple of the entry",
			edit:      func(c *Config) { c.MaxIndexBytes = 4*entryWidth - 1 },
			sizes:     []int{1, 2, 3, 4, 5, 6, 7},
			wantBases: []uint64{0, 3, 6},
		},
		{
			name:      "one entry per index",
			edit:      func(c *Config) { c.MaxIndexBytes = entryWidth },
			sizes:     []int{1, 2, 3},
			wantBases: []uint64{0, 1, 2},
		},
		{
			name: "index fills before store",
			edit: func(c *Config) {
				c.MaxRecordBytes = v
				c.MaxStoreBytes = 3 * fs
				c.MaxIndexBytes = 2 * entryWidth
			},
			sizes:     []int{v, v, v, v, v, v, v},
			wantBases: []uint64{0, 2, 4, 6},
		},
		{
			name: "store fills before index",
			edit: func(c *Config) {
				c.MaxRecordBytes = v
				c.MaxStoreBytes = 3 * fs
				c.MaxIndexBytes = 4 * entryWidth
			},
			sizes:     []int{v, v, v, v, v, v, v},
			wantBases: []uint64{0, 3, 6},
		},
		{
			name:      "no roll-over below both limits",
			sizes:     []int{v, v, v, v, v, v, v},
			wantBases: []uint64{0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ftConfig(t, tt.edit)
			l := ftOpen(t, cfg)
			var values [][]byte
			for i, n := range tt.sizes {
				values = append(values, ftPattern(uint64(i), n))
			}
			if tt.batch {
				if _, err := l.AppendBatch(values); err != nil {
					t.Fatalf("AppendBatch: %v", err)
				}
			} else {
				for _, val := range values {
					if _, err := l.Append(val); err != nil {
						t.Fatalf("Append: %v", err)
					}
				}
			}
			if got := ftBases(t, cfg.Dir, storeSuffix); !slices.Equal(got, tt.wantBases) {
				t.Fatalf("store files = %v, want %v", got, tt.wantBases)
			}
			// Every sealed segment has its index on disk; the active one's
			// is written on Close.
			sealed := tt.wantBases[:len(tt.wantBases)-1]
			if got := ftBases(t, cfg.Dir, indexSuffix); !slices.Equal(got, sealed) {
				t.Fatalf("index files before Close = %v, want %v", got, sealed)
			}
			if got := l.Stats().Segments; got != len(tt.wantBases) {
				t.Errorf("Stats().Segments = %d, want %d", got, len(tt.wantBases))
			}
			// Sizes on disk: whole records, within both limits.
			bounds := slices.Concat(tt.wantBases[1:], []uint64{uint64(len(tt.sizes))})
			for i, base := range tt.wantBases {
				var want int64
				for _, n := range tt.sizes[base:bounds[i]] {
					want += frameSize(n)
				}
				fi, err := os.Stat(segmentName(cfg.Dir, base, storeSuffix))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() != want {
					t.Errorf("segment %d: store is %d bytes, want %d", base, fi.Size(), want)
				}
				if fi.Size() > l.Config().MaxStoreBytes {
					t.Errorf("segment %d: store is %d bytes, over MaxStoreBytes %d", base, fi.Size(), l.Config().MaxStoreBytes)
				}
				if i < len(sealed) {
					fi, err := os.Stat(segmentName(cfg.Dir, base, indexSuffix))
					if err != nil {
						t.Fatal(err)
					}
					if want := int64(bounds[i]-base) * entryWidth; fi.Size() != want {
						t.Errorf("segment %d: index is %d bytes, want %d", base, fi.Size(), want)
					}
				}
			}
			for i, val := range values {
				rec, err := l.Read(uint64(i))
				if err != nil || !bytes.Equal(rec.Value, val) {
					t.Fatalf("Read(%d) = (%d bytes, %v), want (%d bytes, nil)", i, len(rec.Value), err, len(val))
				}
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := ftBases(t, cfg.Dir, indexSuffix); !slices.Equal(got, tt.wantBases) {
				t.Fatalf("index files after Close = %v, want %v", got, tt.wantBases)
			}
		})
	}
}

func TestLogReopen(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		n    uint64 // records before the first Close
	}{
		{name: "empty", n: 0},
		{name: "one segment", n: 20},
		{name: "many segments", edit: ftThreePerSegment, n: 20},
		{name: "many segments, active full", edit: ftThreePerSegment, n: 21},
		{name: "initial offset", edit: func(c *Config) { ftThreePerSegment(c); c.InitialOffset = 500 }, n: 10},
		{name: "sync always", edit: func(c *Config) { ftThreePerSegment(c); c.Sync = SyncAlways }, n: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFtClock()
			cfg := ftConfig(t, func(c *Config) {
				c.Now = clock.Now
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			start := cfg.InitialOffset
			end := start + tt.n

			l, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for off := start; off < end; off++ {
				clock.Add(time.Millisecond)
				if _, err := l.Append(ftValue(off)); err != nil {
					t.Fatal(err)
				}
			}
			before := ftReadAll(t, l, start)
			statsBefore := l.Stats()
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			// A different InitialOffset is ignored for an existing log.
			cfg2 := cfg
			cfg2.InitialOffset = start + 12345
			l = ftOpen(t, cfg2)
			if r := l.Recovery(); r.Damaged() || len(r.RebuiltIndexes) > 0 || len(r.RemovedFiles) > 0 || r.Reason != "" {
				t.Errorf("Recovery after a clean Close = %+v, want nothing repaired", r)
			}
			if lo, next := l.Offsets(); lo != start || next != end {
				t.Fatalf("Offsets after reopen = (%d, %d), want (%d, %d)", lo, next, start, end)
			}
			if got := l.Stats(); got != statsBefore {
				t.Errorf("Stats after reopen = %+v, want %+v", got, statsBefore)
			}
			after := ftReadAll(t, l, start)
			if len(after) != len(before) {
				t.Fatalf("after reopen read %d records, want %d", len(after), len(before))
			}
			for i := range before {
				a, b := after[i], before[i]
				if a.Offset != b.Offset || !a.Time.Equal(b.Time) || !bytes.Equal(a.Value, b.Value) {
					t.Fatalf("record %d after reopen = (%d, %v, %d bytes), want (%d, %v, %d bytes)",
						i, a.Offset, a.Time, len(a.Value), b.Offset, b.Time, len(b.Value))
				}
			}

			// Appends continue where the log ended, and survive another reopen.
			ftAppendRange(t, l, end, end+7)
			ftCheckRange(t, l, start, end+7)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = ftOpen(t, cfg)
			if lo, next := l.Offsets(); lo != start || next != end+7 {
				t.Fatalf("Offsets after second reopen = (%d, %d), want (%d, %d)", lo, next, start, end+7)
			}
			ftCheckRange(t, l, start, end+7)
		})
	}
}

func TestLogInitialOffset(t *testing.T) {
	cfg := ftConfig(t, func(c *Config) { c.InitialOffset = 1000 })
	l := ftOpen(t, cfg)
	if lo, next := l.Offsets(); lo != 1000 || next != 1000 {
		t.Fatalf("Offsets of a new log = (%d, %d), want (1000, 1000)", lo, next)
	}
	if got, want := ftBases(t, cfg.Dir, storeSuffix), []uint64{1000}; !slices.Equal(got, want) {
		t.Fatalf("store files = %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "00000000000000001000.store")); err != nil {
		t.Fatalf("store file of the first segment: %v", err)
	}
	if _, err := l.Read(1000); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("Read(1000) of an empty log = %v, want ErrOffsetOutOfRange", err)
	}
	if _, err := l.Read(999); !errors.Is(err, ErrOffsetCompacted) {
		t.Errorf("Read(999) = %v, want ErrOffsetCompacted", err)
	}
	ftAppendRange(t, l, 1000, 1003)
	ftCheckRange(t, l, 1000, 1003)
}

func TestLogTruncate(t *testing.T) {
	// Segments 0-2, 3-5, 6-8 and the active 9-10.
	tests := []struct {
		truncate   uint64
		wantLowest uint64
		wantBases  []uint64
	}{
		{truncate: 0, wantLowest: 0, wantBases: []uint64{0, 3, 6, 9}},
		{truncate: 2, wantLowest: 0, wantBases: []uint64{0, 3, 6, 9}},
		{truncate: 3, wantLowest: 3, wantBases: []uint64{3, 6, 9}},
		{truncate: 5, wantLowest: 3, wantBases: []uint64{3, 6, 9}},
		{truncate: 6, wantLowest: 6, wantBases: []uint64{6, 9}},
		{truncate: 9, wantLowest: 9, wantBases: []uint64{9}},
		{truncate: 10, wantLowest: 9, wantBases: []uint64{9}},  // the active segment stays
		{truncate: 11, wantLowest: 9, wantBases: []uint64{9}},  // even when all below
		{truncate: 1e9, wantLowest: 9, wantBases: []uint64{9}}, // far beyond the end
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("truncate=%d", tt.truncate), func(t *testing.T) {
			cfg := ftConfig(t, ftThreePerSegment)
			l := ftOpen(t, cfg)
			ftAppendRange(t, l, 0, 11)
			if err := l.Truncate(tt.truncate); err != nil {
				t.Fatalf("Truncate(%d): %v", tt.truncate, err)
			}
			check := func(state string) {
				t.Helper()
				if lo, next := l.Offsets(); lo != tt.wantLowest || next != 11 {
					t.Fatalf("%s: Offsets = (%d, %d), want (%d, 11)", state, lo, next, tt.wantLowest)
				}
				if got := ftBases(t, cfg.Dir, storeSuffix); !slices.Equal(got, tt.wantBases) {
					t.Fatalf("%s: store files = %v, want %v", state, got, tt.wantBases)
				}
				if tt.wantLowest > 0 {
					if _, err := l.Read(tt.wantLowest - 1); !errors.Is(err, ErrOffsetCompacted) {
						t.Fatalf("%s: Read(%d) = %v, want ErrOffsetCompacted", state, tt.wantLowest-1, err)
					}
				}
				ftCheckRange(t, l, tt.wantLowest, 11)
			}
			check("after Truncate")
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = ftOpen(t, cfg)
			check("after reopen")
			// Truncating lower again changes nothing.
			if err := l.Truncate(0); err != nil {
				t.Fatal(err)
			}
			check("after Truncate(0)")
		})
	}
}

func TestLogRetention(t *testing.T) {
	// ftThreePerSegment with 100-byte values: every record takes
	// frameSize(100)+12 = 136 bytes on disk, a full segment 408.
	const v = 100
	value := func(i int) []byte { return ftPattern(uint64(i), v) }
	tests := []struct {
		name string
		cfg  func(c *Config)
		// run appends and enforces retention, advancing clock; it returns
		// the lowest offset it expects.
		run func(t *testing.T, l *Log, clock *ftClock) uint64
	}{
		{
			name: "bytes, on roll-over",
			cfg:  func(c *Config) { c.RetentionBytes = 600 },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				// Rolling at 6 finds 0-2, 3-5 and an empty active: 816
				// bytes, so 0-2 goes; rolling at 9 drops 3-5 the same way.
				for i := range 10 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				return 6
			},
		},
		{
			name: "bytes, explicit",
			cfg:  func(c *Config) { c.RetentionBytes = 600 },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				for i := range 9 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				// Roll-over at 6 removed 0-2; 3-5 and the full active 6-8
				// make 816 bytes, which only an explicit check trims.
				if lo := l.LowestOffset(); lo != 3 {
					t.Fatalf("LowestOffset before EnforceRetention = %d, want 3", lo)
				}
				if err := l.EnforceRetention(); err != nil {
					t.Fatal(err)
				}
				if b := l.Stats().Bytes; b > 600 {
					t.Errorf("Stats().Bytes after EnforceRetention = %d, want <= 600", b)
				}
				return 6
			},
		},
		{
			name: "bytes, never the active segment",
			cfg:  func(c *Config) { c.RetentionBytes = 1 },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				for i := range 8 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				if err := l.EnforceRetention(); err != nil {
					t.Fatal(err)
				}
				return 6
			},
		},
		{
			name: "age, explicit",
			cfg:  func(c *Config) { c.RetentionAge = time.Hour },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				for i := range 7 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				clock.Add(time.Hour) // exactly the age: kept
				if err := l.EnforceRetention(); err != nil {
					t.Fatal(err)
				}
				if lo := l.LowestOffset(); lo != 0 {
					t.Fatalf("LowestOffset at exactly RetentionAge = %d, want 0", lo)
				}
				clock.Add(time.Second)
				if err := l.EnforceRetention(); err != nil {
					t.Fatal(err)
				}
				return 6
			},
		},
		{
			name: "age, only old segments",
			cfg:  func(c *Config) { c.RetentionAge = time.Hour },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				for i := range 3 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				clock.Add(50 * time.Minute)
				for i := 3; i < 7; i++ {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				clock.Add(20 * time.Minute) // 0-2 are 70 minutes old, 3-5 20
				if err := l.EnforceRetention(); err != nil {
					t.Fatal(err)
				}
				return 3
			},
		},
		{
			// The segment's newest record decides, not the time it was
			// sealed: 0-2 are appended, and two hours later record 3 rolls
			// the segment over; 0-2 are then two hours old and must go.
			name: "age, on roll-over",
			cfg:  func(c *Config) { c.RetentionAge = time.Hour },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				for i := range 3 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				clock.Add(2 * time.Hour)
				if _, err := l.Append(value(3)); err != nil {
					t.Fatal(err)
				}
				return 3
			},
		},
		{
			name: "age, on roll-over within a batch",
			cfg:  func(c *Config) { c.RetentionAge = time.Hour },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				if _, err := l.AppendBatch([][]byte{value(0), value(1)}); err != nil {
					t.Fatal(err)
				}
				clock.Add(2 * time.Hour)
				// 2 joins 0-1 in the first segment, so that segment is new.
				if _, err := l.AppendBatch([][]byte{value(2), value(3), value(4)}); err != nil {
					t.Fatal(err)
				}
				return 0
			},
		},
		{
			name: "age, after reopen",
			cfg:  func(c *Config) { c.RetentionAge = time.Hour },
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				for i := range 4 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				clock.Add(2 * time.Hour)
				l2, err := Open(l.Config())
				if err != nil {
					t.Fatal(err)
				}
				defer l2.Close()
				if err := l2.EnforceRetention(); err != nil {
					t.Fatal(err)
				}
				if lo := l2.LowestOffset(); lo != 3 {
					t.Errorf("LowestOffset after reopen and EnforceRetention = %d, want 3", lo)
				}
				return 0 // l is closed; nothing else to check on it
			},
		},
		{
			name: "none configured",
			cfg:  func(c *Config) {},
			run: func(t *testing.T, l *Log, clock *ftClock) uint64 {
				for i := range 10 {
					if _, err := l.Append(value(i)); err != nil {
						t.Fatal(err)
					}
				}
				clock.Add(1000 * time.Hour)
				if err := l.EnforceRetention(); err != nil {
					t.Fatal(err)
				}
				return 0
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFtClock()
			cfg := ftConfig(t, func(c *Config) {
				ftThreePerSegment(c)
				c.Now = clock.Now
				tt.cfg(c)
			})
			l := ftOpen(t, cfg)
			wantLowest := tt.run(t, l, clock)
			if t.Failed() {
				return
			}
			l.mu.RLock()
			closed := l.closed
			l.mu.RUnlock()
			if closed {
				return
			}
			lo, next := l.Offsets()
			if lo != wantLowest {
				t.Fatalf("LowestOffset = %d, want %d", lo, wantLowest)
			}
			bases := ftBases(t, cfg.Dir, storeSuffix)
			if len(bases) == 0 || bases[0] != wantLowest {
				t.Fatalf("store files = %v, want the first at %d", bases, wantLowest)
			}
			if wantLowest > 0 {
				if _, err := l.Read(wantLowest - 1); !errors.Is(err, ErrOffsetCompacted) {
					t.Errorf("Read(%d) = %v, want ErrOffsetCompacted", wantLowest-1, err)
				}
			}
			for off := lo; off < next; off++ {
				rec, err := l.Read(off)
				if err != nil || !bytes.Equal(rec.Value, value(int(off))) {
					t.Fatalf("Read(%d) = (%d bytes, %v), want ftPattern(%d, %d)", off, len(rec.Value), err, off, v)
				}
			}
		})
	}
}

func TestLogRetentionBackground(t *testing.T) {
	clock := newFtClock()
	cfg := ftConfig(t, func(c *Config) {
		ftThreePerSegment(c)
		c.Now = clock.Now
		c.RetentionAge = time.Hour
		c.RetentionCheck = 5 * time.Millisecond
	})
	l := ftOpen(t, cfg)
	ftAppendRange(t, l, 0, 7)
	time.Sleep(30 * time.Millisecond)
	if lo := l.LowestOffset(); lo != 0 {
		t.Fatalf("LowestOffset before the records are old = %d, want 0", lo)
	}
	clock.Add(2 * time.Hour)
	ftEventually(t, "background retention", func() bool { return l.LowestOffset() == 6 })
	ftCheckRange(t, l, 6, 7)
}

func TestLogRecordTooLarge(t *testing.T) {
	tests := []struct {
		name      string
		maxRecord int
		sizes     []int
		wantErr   error
	}{
		{name: "at the limit", maxRecord: 100, sizes: []int{100}},
		{name: "one over the limit", maxRecord: 100, sizes: []int{101}, wantErr: ErrRecordTooLarge},
		{name: "empty value", maxRecord: 100, sizes: []int{0}},
		{name: "batch at the limit", maxRecord: 100, sizes: []int{100, 100, 1}},
		{name: "batch with one too large", maxRecord: 100, sizes: []int{10, 101, 10}, wantErr: ErrRecordTooLarge},
		{name: "default limit", maxRecord: 0, sizes: []int{DefaultMaxRecordBytes}},
		{name: "over the default limit", maxRecord: 0, sizes: []int{DefaultMaxRecordBytes + 1}, wantErr: ErrRecordTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := ftOpen(t, ftConfig(t, func(c *Config) { c.MaxRecordBytes = tt.maxRecord }))
			if _, err := l.Append([]byte("first")); err != nil {
				t.Fatal(err)
			}
			var values [][]byte
			for _, n := range tt.sizes {
				values = append(values, make([]byte, n))
			}
			off, err := l.AppendBatch(values)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("AppendBatch error = %v, want %v", err, tt.wantErr)
			}
			wantNext := uint64(1 + len(values))
			if tt.wantErr != nil {
				wantNext = 1
			} else if off != 1 {
				t.Errorf("AppendBatch offset = %d, want 1", off)
			}
			if got := l.NextOffset(); got != wantNext {
				t.Errorf("NextOffset = %d, want %d", got, wantNext)
			}
			if got := ftWritten(l); got != wantNext {
				t.Errorf("written end = %d, want %d (a refused batch writes nothing)", got, wantNext)
			}
			// The log is usable after a refused append.
			off, err = l.Append([]byte("after"))
			if err != nil || off != wantNext {
				t.Fatalf("Append after = (%d, %v), want (%d, nil)", off, err, wantNext)
			}
		})
	}
	t.Run("single append", func(t *testing.T) {
		l := ftOpen(t, ftConfig(t, func(c *Config) { c.MaxRecordBytes = 10 }))
		if _, err := l.Append(make([]byte, 11)); !errors.Is(err, ErrRecordTooLarge) {
			t.Fatalf("Append(11 bytes) = %v, want ErrRecordTooLarge", err)
		}
		if _, err := l.Append(make([]byte, 10)); err != nil {
			t.Fatalf("Append(10 bytes) = %v, want nil", err)
		}
	})
}

func TestLogEmptyBatch(t *testing.T) {
	l := ftOpen(t, ftConfig(t, nil))
	for _, batch := range [][][]byte{nil, {}} {
		if _, err := l.AppendBatch(batch); !errors.Is(err, ErrEmptyBatch) {
			t.Fatalf("AppendBatch(%#v) = %v, want ErrEmptyBatch", batch, err)
		}
	}
	if got := l.NextOffset(); got != 0 {
		t.Fatalf("NextOffset after empty batches = %d, want 0", got)
	}
	// A batch of one empty value is not an empty batch.
	if off, err := l.AppendBatch([][]byte{nil}); err != nil || off != 0 {
		t.Fatalf("AppendBatch([nil]) = (%d, %v), want (0, nil)", off, err)
	}
}

func TestLogClosed(t *testing.T) {
	cfg := ftConfig(t, func(c *Config) {
		ftThreePerSegment(c)
		c.RetentionBytes = 1 << 20
	})
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ftAppendRange(t, l, 0, 5)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	tests := []struct {
		name string
		op   func() error
	}{
		{name: "Append", op: func() error { _, err := l.Append([]byte("x")); return err }},
		{name: "AppendBatch", op: func() error { _, err := l.AppendBatch([][]byte{{1}, {2}}); return err }},
		{name: "Read", op: func() error { _, err := l.Read(1); return err }},
		{name: "Reader.Next", op: func() error { _, err := l.NewReader(0).Next(); return err }},
		{name: "Sync", op: l.Sync},
		{name: "Truncate", op: func() error { return l.Truncate(3) }},
		{name: "EnforceRetention", op: l.EnforceRetention},
		{name: "Wait", op: func() error { return l.Wait(context.Background(), 5) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, ErrClosed) {
				t.Fatalf("%s after Close = %v, want ErrClosed", tt.name, err)
			}
		})
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	// Closing made the data durable and the log reopens whole.
	l2 := ftOpen(t, cfg)
	ftCheckRange(t, l2, 0, 5)
}

func TestLogRemove(t *testing.T) {
	cfg := ftConfig(t, ftThreePerSegment)
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ftAppendRange(t, l, 0, 10)
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(cfg.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat(dir) after Remove = %v, want ErrNotExist", err)
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Remove = %v, want ErrClosed", err)
	}
	// The directory can hold a new log.
	l2 := ftOpen(t, cfg)
	if lo, next := l2.Offsets(); lo != 0 || next != 0 {
		t.Fatalf("Offsets of a log opened after Remove = (%d, %d), want (0, 0)", lo, next)
	}
}

func TestLogStats(t *testing.T) {
	tests := []struct {
		name         string
		edit         func(*Config)
		n            uint64
		truncate     uint64
		wantSegments int
		wantLowest   uint64
	}{
		{name: "empty", n: 0, wantSegments: 1},
		{name: "one segment", n: 10, wantSegments: 1},
		{name: "many segments", edit: ftThreePerSegment, n: 10, wantSegments: 4},
		{name: "after truncate", edit: ftThreePerSegment, n: 10, truncate: 6, wantSegments: 2, wantLowest: 6},
		{name: "initial offset", edit: func(c *Config) { ftThreePerSegment(c); c.InitialOffset = 7 }, n: 3, wantSegments: 1, wantLowest: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ftConfig(t, tt.edit)
			l := ftOpen(t, cfg)
			start := cfg.InitialOffset
			ftAppendRange(t, l, start, start+tt.n)
			if err := l.Truncate(tt.truncate); err != nil {
				t.Fatal(err)
			}
			var wantBytes int64
			for off := max(start, tt.wantLowest); off < start+tt.n; off++ {
				wantBytes += frameSize(len(ftValue(off))) + entryWidth
			}
			want := Stats{Segments: tt.wantSegments, Bytes: wantBytes, Lowest: max(start, tt.wantLowest), Next: start + tt.n}
			if got := l.Stats(); got != want {
				t.Fatalf("Stats = %+v, want %+v", got, want)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// After Close every index is on disk: Bytes is the directory's size.
			entries, err := os.ReadDir(cfg.Dir)
			if err != nil {
				t.Fatal(err)
			}
			var onDisk int64
			for _, e := range entries {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				onDisk += fi.Size()
			}
			if onDisk != wantBytes {
				t.Fatalf("bytes on disk after Close = %d, want Stats().Bytes %d", onDisk, wantBytes)
			}
		})
	}
}

func TestLogWait(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			newLog := func(t *testing.T) *Log {
				l := ftOpen(t, ftConfig(t, func(c *Config) {
					ftThreePerSegment(c)
					c.Sync = policy
				}))
				ftAppendRange(t, l, 0, 5)
				return l
			}
			t.Run("readable offset returns at once", func(t *testing.T) {
				l := newLog(t)
				ctx, cancel := context.WithCancel(context.Background())
				cancel() // a canceled context must not matter
				for _, off := range []uint64{0, 3, 4} {
					if err := l.Wait(ctx, off); err != nil {
						t.Fatalf("Wait(%d) = %v, want nil", off, err)
					}
				}
			})
			t.Run("below lowest returns at once", func(t *testing.T) {
				l := newLog(t)
				if err := l.Truncate(3); err != nil {
					t.Fatal(err)
				}
				if err := l.Wait(context.Background(), 1); err != nil {
					t.Fatalf("Wait(1) below lowest 3 = %v, want nil", err)
				}
			})
			t.Run("blocks until append", func(t *testing.T) {
				l := newLog(t)
				var appending atomic.Bool
				done := make(chan error, 1)
				go func() {
					time.Sleep(50 * time.Millisecond)
					appending.Store(true)
					_, err := l.AppendBatch([][]byte{ftValue(5), ftValue(6)})
					done <- err
				}()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := l.Wait(ctx, 6); err != nil {
					t.Fatalf("Wait(6) = %v, want nil", err)
				}
				if !appending.Load() {
					t.Fatalf("Wait(6) returned before the append started")
				}
				if next := l.NextOffset(); next <= 6 {
					t.Fatalf("NextOffset after Wait(6) = %d, want > 6", next)
				}
				ftCheckRange(t, l, 0, 7)
				if err := <-done; err != nil {
					t.Fatalf("AppendBatch: %v", err)
				}
			})
			t.Run("many waiters", func(t *testing.T) {
				l := newLog(t)
				var wg sync.WaitGroup
				errs := make(chan error, 10)
				for i := range 10 {
					off := uint64(5 + i)
					wg.Go(func() {
						if err := l.Wait(context.Background(), off); err != nil {
							errs <- fmt.Errorf("Wait(%d) = %v, want nil", off, err)
							return
						}
						if _, err := l.Read(off); err != nil {
							errs <- fmt.Errorf("Read(%d) after Wait = %v, want nil", off, err)
						}
					})
				}
				time.Sleep(10 * time.Millisecond)
				ftAppendRange(t, l, 5, 15)
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			})
			t.Run("context canceled", func(t *testing.T) {
				l := newLog(t)
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(20*time.Millisecond, cancel)
				if err := l.Wait(ctx, 5); !errors.Is(err, context.Canceled) {
					t.Fatalf("Wait(5) = %v, want context.Canceled", err)
				}
			})
			t.Run("deadline", func(t *testing.T) {
				l := newLog(t)
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				if err := l.Wait(ctx, 100); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Wait(100) = %v, want context.DeadlineExceeded", err)
				}
				if d := time.Since(start); d < 20*time.Millisecond {
					t.Fatalf("Wait returned after %v, before its 20ms deadline", d)
				}
			})
			t.Run("close", func(t *testing.T) {
				l := newLog(t)
				done := make(chan error, 1)
				go func() { done <- l.Wait(context.Background(), 5) }()
				time.Sleep(20 * time.Millisecond)
				select {
				case err := <-done:
					t.Fatalf("Wait(5) returned %v before Close", err)
				default:
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-done:
					if !errors.Is(err, ErrClosed) {
						t.Fatalf("Wait(5) after Close = %v, want ErrClosed", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Wait did not return after Close")
				}
			})
		})
	}
}

// TestLogSyncAlwaysVisibleOnlyWhenDurable holds an append's fsync and
// checks that nobody sees the record until the fsync is done.
func TestLogSyncAlwaysVisibleOnlyWhenDurable(t *testing.T) {
	gate := newFtGate(t)
	hfs := &ftHookFS{beforeSync: func(name string) {
		if strings.HasSuffix(name, storeSuffix) {
			gate.pass()
		}
	}}
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = hfs
	}))
	ftAppendRange(t, l, 0, 1)

	gate.armed.Store(true)
	type result struct {
		off uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		off, err := l.Append(ftValue(1))
		done <- result{off, err}
	}()
	gate.waitEntered(t)

	// Record 1 is written, and its fsync is running.
	if got := ftWritten(l); got != 2 {
		t.Fatalf("written end while the fsync runs = %d, want 2", got)
	}
	if got := l.NextOffset(); got != 1 {
		t.Errorf("NextOffset while the fsync runs = %d, want 1", got)
	}
	if _, next := l.Offsets(); next != 1 {
		t.Errorf("Offsets next while the fsync runs = %d, want 1", next)
	}
	if got := l.Stats().Next; got != 1 {
		t.Errorf("Stats().Next while the fsync runs = %d, want 1", got)
	}
	if _, err := l.Read(1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("Read(1) while the fsync runs = %v, want ErrOffsetOutOfRange", err)
	}
	r := l.NewReader(0)
	if _, err := r.Next(); err != nil {
		t.Errorf("Reader.Next at 0 = %v, want nil", err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Reader.Next at 1 while the fsync runs = %v, want io.EOF", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait(1) while the fsync runs = %v, want context.DeadlineExceeded", err)
	}
	select {
	case res := <-done:
		t.Fatalf("Append returned %+v before its fsync finished", res)
	default:
	}

	gate.open()
	res := <-done
	if res.err != nil || res.off != 1 {
		t.Fatalf("Append = (%d, %v), want (1, nil)", res.off, res.err)
	}
	if got := l.NextOffset(); got != 2 {
		t.Errorf("NextOffset after the append = %d, want 2", got)
	}
	if rec, err := r.Next(); err != nil || rec.Offset != 1 {
		t.Errorf("Reader.Next after the append = (%d, %v), want (1, nil)", rec.Offset, err)
	}
	ftCheckRange(t, l, 0, 2)
}

// TestLogGroupCommit holds one appender's fsync while others append: they
// must all share a single further fsync.
func TestLogGroupCommit(t *testing.T) {
	const waiters = 8
	gate := newFtGate(t)
	var syncs atomic.Int64
	hfs := &ftHookFS{beforeSync: func(name string) {
		if strings.HasSuffix(name, storeSuffix) {
			syncs.Add(1)
			gate.pass()
		}
	}}
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = hfs
	}))
	before := syncs.Load()
	gate.armed.Store(true)

	var wg sync.WaitGroup
	offs := make([]uint64, waiters+1)
	errs := make([]error, waiters+1)
	wg.Go(func() { offs[0], errs[0] = l.Append([]byte("leader")) })
	gate.waitEntered(t)
	for i := 1; i <= waiters; i++ {
		wg.Go(func() { offs[i], errs[i] = l.Append([]byte(fmt.Sprintf("waiter-%d", i))) })
	}
	ftEventually(t, "every appender to write", func() bool { return ftWritten(l) == waiters+1 })
	if got := l.NextOffset(); got != 0 {
		t.Errorf("NextOffset before any fsync finished = %d, want 0", got)
	}
	gate.open()
	wg.Wait()

	seen := map[uint64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("appender %d: %v", i, err)
		}
		seen[offs[i]] = true
	}
	if offs[0] != 0 || len(seen) != waiters+1 {
		t.Fatalf("offsets = %v, want the leader at 0 and %d distinct", offs, waiters+1)
	}
	// The leader's fsync covered only its record; one more covered the rest.
	if got := syncs.Load() - before; got != 2 {
		t.Errorf("fsyncs for %d appends = %d, want 2", waiters+1, got)
	}
	if got := l.NextOffset(); got != waiters+1 {
		t.Errorf("NextOffset = %d, want %d", got, waiters+1)
	}
}

func TestLogSyncPolicyFsyncs(t *testing.T) {
	tests := []struct {
		name   string
		policy SyncPolicy
		check  func(t *testing.T, l *Log, syncs func() int64)
	}{
		{
			name:   "none leaves fsync to roll-over and Close",
			policy: SyncNone,
			check: func(t *testing.T, l *Log, syncs func() int64) {
				if got := syncs(); got != 0 {
					t.Errorf("fsyncs after 20 appends = %d, want 0", got)
				}
			},
		},
		{
			name:   "always fsyncs every lone append",
			policy: SyncAlways,
			check: func(t *testing.T, l *Log, syncs func() int64) {
				if got := syncs(); got != 20 {
					t.Errorf("fsyncs after 20 appends = %d, want 20", got)
				}
			},
		},
		{
			name:   "interval fsyncs in the background",
			policy: SyncInterval,
			check: func(t *testing.T, l *Log, syncs func() int64) {
				ftEventually(t, "an interval fsync", func() bool {
					l.syncMu.Lock()
					defer l.syncMu.Unlock()
					return l.durable == 20
				})
				if syncs() == 0 {
					t.Errorf("durable end reached 20 with no fsync")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			var counting atomic.Bool
			hfs := &ftHookFS{beforeSync: func(name string) {
				if counting.Load() && strings.HasSuffix(name, storeSuffix) {
					n.Add(1)
				}
			}}
			l := ftOpen(t, ftConfig(t, func(c *Config) {
				c.Sync = tt.policy
				c.SyncInterval = 5 * time.Millisecond
				c.FS = hfs
			}))
			counting.Store(true)
			ftAppendRange(t, l, 0, 20)
			tt.check(t, l, n.Load)
			ftCheckRange(t, l, 0, 20)
		})
	}
}

func TestLogSync(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			l := ftOpen(t, ftConfig(t, func(c *Config) {
				ftThreePerSegment(c)
				c.Sync = policy
				c.SyncInterval = time.Hour // only explicit syncs
			}))
			ftAppendRange(t, l, 0, 8)
			if err := l.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			l.syncMu.Lock()
			durable := l.durable
			l.syncMu.Unlock()
			if durable != 8 {
				t.Fatalf("durable end after Sync = %d, want 8", durable)
			}
		})
	}
}

func TestLogConcurrentWriterReaders(t *testing.T) {
	tests := []struct {
		name   string
		policy SyncPolicy
		n      uint64
		batch  int
	}{
		{name: "none", policy: SyncNone, n: 1500, batch: 1},
		{name: "none batches", policy: SyncNone, n: 1500, batch: 7},
		{name: "always", policy: SyncAlways, n: 150, batch: 1},
		{name: "interval", policy: SyncInterval, n: 1000, batch: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := ftOpen(t, ftConfig(t, func(c *Config) {
				c.MaxRecordBytes = ftMaxValue
				c.MaxStoreBytes = 2 << 10 // a few dozen records per segment
				c.Sync = tt.policy
				c.SyncInterval = 2 * time.Millisecond
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			var writerDone atomic.Bool

			wg.Go(func() {
				defer writerDone.Store(true)
				for off := uint64(0); off < tt.n; {
					var values [][]byte
					for i := 0; i < tt.batch && off+uint64(i) < tt.n; i++ {
						values = append(values, ftValue(off+uint64(i)))
					}
					first, err := l.AppendBatch(values)
					if err != nil || first != off {
						t.Errorf("AppendBatch = (%d, %v), want (%d, nil)", first, err, off)
						return
					}
					off += uint64(len(values))
					// Acknowledged means readable.
					if next := l.NextOffset(); next < off {
						t.Errorf("NextOffset %d after appending up to %d", next, off)
						return
					}
				}
			})
			// Sequential readers: a gap-free prefix with the right values.
			for range 3 {
				wg.Go(func() {
					r := l.NewReader(0)
					for r.Offset() < tt.n {
						rec, err := r.Next()
						if errors.Is(err, io.EOF) {
							if err := l.Wait(ctx, r.Offset()); err != nil {
								t.Errorf("Wait(%d): %v", r.Offset(), err)
								return
							}
							continue
						}
						if err != nil {
							t.Errorf("Next at %d: %v", r.Offset(), err)
							return
						}
						if want := r.Offset() - 1; rec.Offset != want || !bytes.Equal(rec.Value, ftValue(want)) {
							t.Errorf("Next = (offset %d, %d bytes), want (offset %d, ftValue)", rec.Offset, len(rec.Value), want)
							return
						}
					}
				})
			}
			// Random readers: everything below NextOffset is readable.
			for g := range 2 {
				wg.Go(func() {
					x := uint64(g + 1)
					for !writerDone.Load() {
						runtime.Gosched() // leave the writer room on a busy machine
						next := l.NextOffset()
						if next == 0 {
							continue
						}
						x = x*6364136223846793005 + 1442695040888963407
						off := (x >> 33) % next
						rec, err := l.Read(off)
						if err != nil || rec.Offset != off || !bytes.Equal(rec.Value, ftValue(off)) {
							t.Errorf("Read(%d) below NextOffset %d = (offset %d, %v), want ftValue", off, next, rec.Offset, err)
							return
						}
						if _, err := l.Read(next + 1); !errors.Is(err, ErrOffsetOutOfRange) {
							// next+1 may have become visible only if it was written.
							if err != nil || ftWritten(l) <= next+1 {
								t.Errorf("Read(%d) past NextOffset %d = %v, want ErrOffsetOutOfRange", next+1, next, err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			ftCheckRange(t, l, 0, tt.n)
		})
	}
}

func TestLogConcurrentAppendersSyncAlways(t *testing.T) {
	const appenders, each = 8, 40
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		c.MaxRecordBytes = ftMaxValue
		c.MaxStoreBytes = 1 << 10
		c.Sync = SyncAlways
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	offsets := make([][]uint64, appenders)
	for g := range appenders {
		wg.Go(func() {
			for i := range each {
				v := []byte(fmt.Sprintf("appender %d record %d", g, i))
				var off uint64
				var err error
				if i%5 == 4 {
					off, err = l.AppendBatch([][]byte{v})
				} else {
					off, err = l.Append(v)
				}
				if err != nil {
					t.Errorf("appender %d: %v", g, err)
					return
				}
				// Acknowledged (fsynced) means readable, right away.
				if next := l.NextOffset(); next <= off {
					t.Errorf("NextOffset %d after Append returned %d", next, off)
					return
				}
				rec, err := l.Read(off)
				if err != nil || !bytes.Equal(rec.Value, v) {
					t.Errorf("Read(%d) after Append = (%q, %v), want (%q, nil)", off, rec.Value, err, v)
					return
				}
				offsets[g] = append(offsets[g], off)
			}
		})
	}
	// A follower sees a gap-free prefix.
	got := make(chan []Record, 1)
	wg.Go(func() {
		var recs []Record
		r := l.NewReader(0)
		for r.Offset() < appenders*each {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				if err := l.Wait(ctx, r.Offset()); err != nil {
					t.Errorf("Wait: %v", err)
					break
				}
				continue
			}
			if err != nil {
				t.Errorf("Next: %v", err)
				break
			}
			if rec.Offset != uint64(len(recs)) {
				t.Errorf("follower read offset %d, want %d", rec.Offset, len(recs))
				break
			}
			recs = append(recs, rec)
		}
		got <- recs
	})
	wg.Wait()
	recs := <-got
	if t.Failed() {
		return
	}
	all := map[uint64]string{}
	for g, offs := range offsets {
		if !slices.IsSorted(offs) {
			t.Errorf("appender %d got offsets out of order: %v", g, offs)
		}
		for i, off := range offs {
			all[off] = fmt.Sprintf("appender %d record %d", g, i)
		}
	}
	if len(all) != appenders*each {
		t.Fatalf("%d distinct offsets, want %d", len(all), appenders*each)
	}
	for off := range uint64(appenders * each) {
		want, ok := all[off]
		if !ok {
			t.Fatalf("offset %d was given to no append", off)
		}
		if string(recs[off].Value) != want {
			t.Fatalf("follower read %q at %d, want %q", recs[off].Value, off, want)
		}
	}
}

// TestLogReadRacingRemoval holds a read between looking its position up
// and reading the store, removes the segment or closes the log, and checks
// that the read reports it.
func TestLogReadRacingRemoval(t *testing.T) {
	tests := []struct {
		name   string
		reader bool // Reader.Next instead of Read
		remove func(l *Log, clock *ftClock) error
		want   error
	}{
		{name: "Read, Truncate", remove: func(l *Log, _ *ftClock) error { return l.Truncate(3) }, want: ErrOffsetCompacted},
		{name: "Reader, Truncate", reader: true, remove: func(l *Log, _ *ftClock) error { return l.Truncate(3) }, want: ErrOffsetCompacted},
		{
			name: "Read, retention",
			remove: func(l *Log, clock *ftClock) error {
				clock.Add(2 * time.Hour)
				return l.EnforceRetention()
			},
			want: ErrOffsetCompacted,
		},
		{
			name:   "Reader, retention",
			reader: true,
			remove: func(l *Log, clock *ftClock) error {
				clock.Add(2 * time.Hour)
				return l.EnforceRetention()
			},
			want: ErrOffsetCompacted,
		},
		{name: "Read, Close", remove: func(l *Log, _ *ftClock) error { return l.Close() }, want: ErrClosed},
		{name: "Reader, Close", reader: true, remove: func(l *Log, _ *ftClock) error { return l.Close() }, want: ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gate := newFtGate(t)
			clock := newFtClock()
			hfs := &ftHookFS{}
			cfg := ftConfig(t, func(c *Config) {
				ftThreePerSegment(c)
				c.FS = hfs
				c.Now = clock.Now
				c.RetentionAge = time.Hour
			})
			first := segmentName(cfg.Dir, 0, storeSuffix)
			hfs.beforeReadAt = func(name string) {
				if name == first {
					gate.pass()
				}
			}
			l := ftOpen(t, cfg)
			ftAppendRange(t, l, 0, 7)

			gate.armed.Store(true)
			done := make(chan error, 1)
			go func() {
				var rec Record
				var err error
				if tt.reader {
					rec, err = l.NewReader(1).Next()
				} else {
					rec, err = l.Read(1)
				}
				if err == nil && !bytes.Equal(rec.Value, ftValue(1)) {
					err = fmt.Errorf("read returned a wrong value")
				}
				done <- err
			}()
			gate.waitEntered(t)
			if err := tt.remove(l, clock); err != nil {
				t.Fatalf("remove: %v", err)
			}
			gate.open()
			if err := <-done; !errors.Is(err, tt.want) {
				t.Fatalf("racing read = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestLogReadersRacingRetention runs readers against a writer whose
// roll-overs keep removing old segments: a read gets the right record or
// ErrOffsetCompacted, never garbage or a panic.
func TestLogReadersRacingRetention(t *testing.T) {
	const n = 600
	l := ftOpen(t, ftConfig(t, func(c *Config) {
		ftThreePerSegment(c)
		c.RetentionBytes = 4 * 3 * (frameSize(ftMaxValue) + entryWidth)
	}))
	var wg sync.WaitGroup
	var writerDone atomic.Bool
	var compacted atomic.Int64
	wg.Go(func() {
		defer writerDone.Store(true)
		for off := uint64(0); off < n; off++ {
			if _, err := l.Append(ftValue(off)); err != nil {
				t.Errorf("Append: %v", err)
				return
			}
		}
	})
	for g := range 2 {
		// Random reads, below and above the lowest offset.
		wg.Go(func() {
			x := uint64(g + 7)
			for !writerDone.Load() {
				runtime.Gosched() // leave the writer room on a busy machine
				lo, next := l.Offsets()
				x = x*6364136223846793005 + 1442695040888963407
				off := (x >> 33) % (next + 1)
				rec, err := l.Read(off)
				switch {
				case err == nil:
					if rec.Offset != off || !bytes.Equal(rec.Value, ftValue(off)) {
						t.Errorf("Read(%d) = offset %d, %d bytes: wrong record", off, rec.Offset, len(rec.Value))
						return
					}
				case errors.Is(err, ErrOffsetCompacted):
					compacted.Add(1)
				case errors.Is(err, ErrOffsetOutOfRange) && off >= next:
				default:
					t.Errorf("Read(%d) with offsets [%d, %d) = %v, want a record or ErrOffsetCompacted", off, lo, next, err)
					return
				}
			}
		})
		// Sequential readers that restart at the lowest offset when left
		// behind.
		wg.Go(func() {
			r := l.NewReader(0)
			for !writerDone.Load() {
				want := r.Offset()
				rec, err := r.Next()
				switch {
				case err == nil:
					if rec.Offset != want || !bytes.Equal(rec.Value, ftValue(want)) {
						t.Errorf("Next = offset %d, %d bytes; want offset %d, ftValue", rec.Offset, len(rec.Value), want)
						return
					}
					if g == 0 {
						time.Sleep(50 * time.Microsecond) // fall behind
					}
				case errors.Is(err, io.EOF):
					time.Sleep(10 * time.Microsecond)
				case errors.Is(err, ErrOffsetCompacted):
					compacted.Add(1)
					if lo := l.LowestOffset(); lo <= want {
						t.Errorf("Next(%d) = ErrOffsetCompacted, but the lowest offset is %d", want, lo)
						return
					}
					r = l.NewReader(l.LowestOffset())
				default:
					t.Errorf("Next at %d: %v", want, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	lo, next := l.Offsets()
	if next != n || lo == 0 {
		t.Fatalf("Offsets = (%d, %d), want next %d and retention to have removed offset 0", lo, next, n)
	}
	if _, err := l.NewReader(0).Next(); !errors.Is(err, ErrOffsetCompacted) {
		t.Fatalf("Reader at 0 after retention: %v, want ErrOffsetCompacted", err)
	}
	ftCheckRange(t, l, lo, n)
	t.Logf("reads that found their offset compacted: %d", compacted.Load())
}

// TestLogCloseRacingAppends closes a log under concurrent appenders: every
// append either fails with ErrClosed or is acknowledged, and every
// acknowledged record is there after reopening.
func TestLogCloseRacingAppends(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			cfg := ftConfig(t, func(c *Config) {
				c.MaxRecordBytes = ftMaxValue
				c.MaxStoreBytes = 1 << 10
				c.Sync = policy
				c.SyncInterval = time.Millisecond
			})
			l, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			const appenders = 4
			acked := make([]map[uint64][]byte, appenders)
			var wg sync.WaitGroup
			for g := range appenders {
				acked[g] = map[uint64][]byte{}
				wg.Go(func() {
					for i := 0; ; i++ {
						v := []byte(fmt.Sprintf("appender %d record %d", g, i))
						off, err := l.Append(v)
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil {
							t.Errorf("Append: %v, want nil or ErrClosed", err)
							return
						}
						acked[g][off] = v
					}
				})
			}
			ftEventually(t, "some appends", func() bool { return l.NextOffset() >= 50 })
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			wg.Wait()

			l = ftOpen(t, cfg)
			if r := l.Recovery(); r.Damaged() {
				t.Errorf("Recovery after Close = %+v, want nothing lost", r)
			}
			n := 0
			for _, m := range acked {
				for off, v := range m {
					n++
					rec, err := l.Read(off)
					if err != nil || !bytes.Equal(rec.Value, v) {
						t.Fatalf("Read(%d) after reopen = (%q, %v), want acknowledged (%q, nil)", off, rec.Value, err, v)
					}
				}
			}
			if n < 50 {
				t.Fatalf("%d acknowledged appends, want at least 50", n)
			}
		})
	}
}

// TestLogIgnoresOtherFiles checks that names other than segment files in a
// log's directory are left alone.
func TestLogIgnoresOtherFiles(t *testing.T) {
	cfg := ftConfig(t, ftThreePerSegment)
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ftAppendRange(t, l, 0, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	others := []string{"README", "LOCK", "00000000000000000042.store.tmp", "x.index", "0000000000000000001.store"}
	for _, name := range others {
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), []byte("not a segment"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A directory with a segment's name is not a segment either.
	if err := os.Mkdir(segmentName(cfg.Dir, 99, storeSuffix), 0o755); err != nil {
		t.Fatal(err)
	}
	l = ftOpen(t, cfg)
	if r := l.Recovery(); r.Damaged() || len(r.RemovedFiles) > 0 || len(r.RebuiltIndexes) > 0 {
		t.Errorf("Recovery = %+v, want nothing repaired", r)
	}
	if lo, next := l.Offsets(); lo != 0 || next != 5 {
		t.Fatalf("Offsets = (%d, %d), want (0, 5)", lo, next)
	}
	ftCheckRange(t, l, 0, 5)
	ftAppendRange(t, l, 5, 8)
	for _, name := range append(others, filepath.Base(segmentName(cfg.Dir, 99, storeSuffix))) {
		if _, err := os.Stat(filepath.Join(cfg.Dir, name)); err != nil {
			t.Errorf("%s after Open and appends: %v, want it left alone", name, err)
		}
	}
}
