package log

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash tests build a small log (three segments of ten records at
// bases 0, 10 and 20, the tail holding eight), damage a copy of its files
// the way a crash, a torn write or bit rot would, reopen it and check that
// recovery keeps exactly the good prefix, reports the cut, and lets appends
// continue where the good records end.

const (
	crashRecords    = 28
	crashPerSegment = 10
)

// crashConfig is the configuration of the crash tests' logs: a segment
// rolls over every crashPerSegment records.
func crashConfig(dir string) Config {
	return Config{
		Dir:            dir,
		MaxStoreBytes:  1 << 20,
		MaxIndexBytes:  crashPerSegment * entryWidth,
		MaxRecordBytes: 1 << 10,
		Sync:           SyncNone,
	}
}

// crashValue is the value of record i: distinct for every i, and of
// varying length so that frames do not line up.
func crashValue(i int) []byte {
	return []byte(fmt.Sprintf("record-%03d-%s", i, strings.Repeat("v", i%7)))
}

// crashSegment describes one segment's files as the test reads them,
// independently of the engine: the frame positions come from walking the
// store's length fields.
type crashSegment struct {
	base  uint64
	store string
	index string
	pos   []int64
	size  int64
}

func (s crashSegment) n() int          { return len(s.pos) }
func (s crashSegment) end(i int) int64 { return s.boundary(i + 1) }

// boundary returns where frame i starts, or the store's size for i == n.
func (s crashSegment) boundary(i int) int64 {
	if i < len(s.pos) {
		return s.pos[i]
	}
	return s.size
}

// crashLayout reads the segments in dir, oldest first.
func crashLayout(t testing.TB, dir string) []crashSegment {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	var segs []crashSegment
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), storeSuffix)
		if !ok || len(stem) != 20 || e.IsDir() {
			continue
		}
		base, err := strconv.ParseUint(stem, 10, 64)
		if err != nil {
			continue
		}
		s := crashSegment{
			base:  base,
			store: filepath.Join(dir, e.Name()),
			index: filepath.Join(dir, stem+indexSuffix),
		}
		data, err := os.ReadFile(s.store)
		if err != nil {
			t.Fatalf("read store: %v", err)
		}
		s.size = int64(len(data))
		for p := int64(0); p < s.size; {
			if s.size-p < headerSize {
				t.Fatalf("store %s: torn header at %d", s.store, p)
			}
			s.pos = append(s.pos, p)
			p += frameSize(int(binary.BigEndian.Uint32(data[p:])))
			if p > s.size {
				t.Fatalf("store %s: torn frame at %d", s.store, s.pos[len(s.pos)-1])
			}
		}
		segs = append(segs, s)
	}
	slices.SortFunc(segs, func(a, b crashSegment) int {
		switch {
		case a.base < b.base:
			return -1
		case a.base > b.base:
			return 1
		}
		return 0
	})
	return segs
}

// crashGolden writes crashRecords records to a new log and closes it. It
// returns the directory, the values by offset and the layout.
func crashGolden(t testing.TB) (string, [][]byte, []crashSegment) {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(crashConfig(dir))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	vals := make([][]byte, crashRecords)
	for i := range vals {
		vals[i] = crashValue(i)
		off, err := l.Append(vals[i])
		if err != nil || off != uint64(i) {
			l.Close()
			t.Fatalf("Append %d: got (%d, %v), want (%d, nil)", i, off, err, i)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	segs := crashLayout(t, dir)
	var bases []uint64
	for _, s := range segs {
		bases = append(bases, s.base)
	}
	if want := []uint64{0, 10, 20}; !slices.Equal(bases, want) {
		t.Fatalf("golden log: got segment bases %v, want %v", bases, want)
	}
	if got := segs[2].n(); got != crashRecords-20 {
		t.Fatalf("golden log: got %d records in the tail, want %d", got, crashRecords-20)
	}
	return dir, vals, segs
}

// crashCopyDir copies the files of src into a new temporary directory and
// returns it with the layout translated to it.
func crashCopyDir(t testing.TB, src string, segs []crashSegment) (string, []crashSegment) {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatalf("copy: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatalf("copy: %v", err)
		}
	}
	out := slices.Clone(segs)
	for i := range out {
		out[i].store = filepath.Join(dst, filepath.Base(out[i].store))
		out[i].index = filepath.Join(dst, filepath.Base(out[i].index))
	}
	return dst, out
}

func crashTruncate(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatalf("truncate: %v", err)
	}
}

// crashFlip inverts the byte at position at of the file.
func crashFlip(t testing.TB, path string, at int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("flip: %v", err)
	}
	data[at] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("flip: %v", err)
	}
}

// crashWriteAt overwrites the file at position at with b.
func crashWriteAt(t testing.TB, path string, at int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func crashAppendFile(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func crashRemove(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
}

func crashRename(t testing.TB, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatalf("rename: %v", err)
	}
}

// crashWant is what recovery of a damaged log must report and keep.
type crashWant struct {
	lowest, next    uint64
	truncated       int64
	cut             uint64
	reason          string // a substring of Recovery.Reason; "" means none
	removedSegments []uint64
	rebuilt         []uint64
	removedFiles    []string // base names
	// vals, if set, replaces the golden values (records past the golden
	// end that recovery must keep).
	vals [][]byte
}

// crashCheckRecovery compares what Open reported with w.
func crashCheckRecovery(t testing.TB, r Recovery, w crashWant) {
	t.Helper()
	if r.TruncatedBytes != w.truncated {
		t.Errorf("Recovery.TruncatedBytes: got %d, want %d", r.TruncatedBytes, w.truncated)
	}
	if r.CutOffset != w.cut {
		t.Errorf("Recovery.CutOffset: got %d, want %d", r.CutOffset, w.cut)
	}
	if w.reason == "" && r.Reason != "" {
		t.Errorf("Recovery.Reason: got %q, want none", r.Reason)
	}
	if w.reason != "" && !strings.Contains(r.Reason, w.reason) {
		t.Errorf("Recovery.Reason: got %q, want it to contain %q", r.Reason, w.reason)
	}
	if !slices.Equal(r.RemovedSegments, w.removedSegments) {
		t.Errorf("Recovery.RemovedSegments: got %v, want %v", r.RemovedSegments, w.removedSegments)
	}
	if !slices.Equal(r.RebuiltIndexes, w.rebuilt) {
		t.Errorf("Recovery.RebuiltIndexes: got %v, want %v", r.RebuiltIndexes, w.rebuilt)
	}
	var files []string
	for _, f := range r.RemovedFiles {
		files = append(files, filepath.Base(f))
	}
	slices.Sort(files)
	if !slices.Equal(files, w.removedFiles) {
		t.Errorf("Recovery.RemovedFiles: got %v, want %v", files, w.removedFiles)
	}
	damaged := w.truncated > 0 || len(w.removedSegments) > 0
	if r.Damaged() != damaged {
		t.Errorf("Recovery.Damaged(): got %v, want %v", r.Damaged(), damaged)
	}
}

// crashCheckRecords checks that l holds exactly vals[lowest:next] at
// their offsets, through Read and through a Reader, and serves nothing
// else.
func crashCheckRecords(t testing.TB, l *Log, vals [][]byte, lowest, next uint64) {
	t.Helper()
	if got := l.LowestOffset(); got != lowest {
		t.Errorf("LowestOffset: got %d, want %d", got, lowest)
	}
	if got := l.NextOffset(); got != next {
		t.Fatalf("NextOffset: got %d, want %d", got, next)
	}
	times := map[uint64]time.Time{}
	for off := lowest; off < next; off++ {
		rec, err := l.Read(off)
		if err != nil {
			t.Fatalf("Read(%d): got error %v, want record", off, err)
		}
		if rec.Offset != off || !bytes.Equal(rec.Value, vals[off]) {
			t.Fatalf("Read(%d): got (%d, %q), want (%d, %q)", off, rec.Offset, rec.Value, off, vals[off])
		}
		times[off] = rec.Time
	}
	r := l.NewReader(lowest)
	for off := lowest; off < next; off++ {
		rec, err := r.Next()
		if err != nil {
			t.Fatalf("Reader.Next at %d: got error %v, want record", off, err)
		}
		if rec.Offset != off || !bytes.Equal(rec.Value, vals[off]) || !rec.Time.Equal(times[off]) {
			t.Fatalf("Reader.Next at %d: got (%d, %q, %v), want (%d, %q, %v)",
				off, rec.Offset, rec.Value, rec.Time, off, vals[off], times[off])
		}
	}
	if rec, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Reader.Next at the end (%d): got (%d, %q, %v), want io.EOF", next, rec.Offset, rec.Value, err)
	}
	for off := next; off < max(next, uint64(len(vals)))+2; off++ {
		if rec, err := l.Read(off); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("Read(%d) past the end: got (%q, %v), want ErrOffsetOutOfRange", off, rec.Value, err)
		}
	}
	if lowest > 0 {
		if _, err := l.Read(lowest - 1); !errors.Is(err, ErrOffsetCompacted) {
			t.Errorf("Read(%d) below the lowest offset: got %v, want ErrOffsetCompacted", lowest-1, err)
		}
	}
}

// crashCheckFiles checks that dir holds well-formed segment pairs only,
// each index exactly describing its store, as a clean Close leaves them.
func crashCheckFiles(t testing.TB, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	for _, e := range entries {
		if stem, ok := strings.CutSuffix(e.Name(), indexSuffix); ok && len(stem) == 20 {
			if _, err := os.Stat(filepath.Join(dir, stem+storeSuffix)); err != nil {
				t.Errorf("index %s has no store after a clean close: %v", e.Name(), err)
			}
		}
	}
	for _, s := range crashLayout(t, dir) {
		data, err := os.ReadFile(s.index)
		if err != nil {
			t.Errorf("segment %d: index after a clean close: %v", s.base, err)
			continue
		}
		want := make([]byte, 0, s.n()*entryWidth)
		for i, p := range s.pos {
			want = binary.BigEndian.AppendUint32(want, uint32(i))
			want = binary.BigEndian.AppendUint64(want, uint64(p))
		}
		if !bytes.Equal(data, want) {
			t.Errorf("segment %d: index after a clean close: got %d bytes %x, want %d bytes %x",
				s.base, len(data), data, len(want), want)
		}
	}
}

// crashCheck opens the damaged log in dir and checks it against w: the
// recovery report, the records kept, that nothing past them is served,
// that an append continues at the first lost offset, and that the repair
// is on disk (a second open finds nothing to repair).
func crashCheck(t testing.TB, dir string, golden [][]byte, w crashWant) {
	t.Helper()
	vals := golden
	if w.vals != nil {
		vals = w.vals
	}
	cfg := crashConfig(dir)
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: got error %v, want recovery", err)
	}
	defer l.Close()
	crashCheckRecovery(t, l.Recovery(), w)
	crashCheckRecords(t, l, vals, w.lowest, w.next)

	v := []byte(fmt.Sprintf("appended-after-recovery-at-%d", w.next))
	off, err := l.Append(v)
	if err != nil || off != w.next {
		t.Fatalf("Append after recovery: got (%d, %v), want (%d, nil)", off, err, w.next)
	}
	// vals[:next] then v: what the log must hold from now on.
	after := append(slices.Clone(vals[:w.next]), v)
	crashCheckRecords(t, l, after, w.lowest, w.next+1)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l2, err := Open(cfg)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer l2.Close()
	if r := l2.Recovery(); !reflect.DeepEqual(r, Recovery{}) {
		t.Errorf("second Open: got Recovery %+v, want nothing repaired", r)
	}
	crashCheckRecords(t, l2, after, w.lowest, w.next+1)
	if err := l2.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	crashCheckFiles(t, dir)
}

// crashCase is one kind of damage and what recovery must make of it.
type crashCase struct {
	name   string
	damage func(t testing.TB, segs []crashSegment)
	want   crashWant
}

// crashRun runs each case on a copy of the golden log.
func crashRun(t *testing.T, golden string, vals [][]byte, segs []crashSegment, cases []crashCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case has its own copy; fsyncs overlap
			dir, segs := crashCopyDir(t, golden, segs)
			tc.damage(t, segs)
			crashCheck(t, dir, vals, tc.want)
		})
	}
}

// TestCrashTornTail cuts the tail store at every byte from the start of
// its third-last record to its end, and appends partial, foreign and
// complete frames past its end.
func TestCrashTornTail(t *testing.T) {
	golden, vals, segs := crashGolden(t)
	tail := segs[2]
	var cases []crashCase
	for c := tail.pos[tail.n()-3]; c <= tail.size; c++ {
		k := 0 // whole frames kept
		for k < tail.n() && tail.end(k) <= c {
			k++
		}
		w := crashWant{next: tail.base + uint64(k)}
		if partial := c - tail.boundary(k); partial > 0 {
			w.truncated, w.cut, w.reason = partial, w.next, "torn frame"
		}
		cases = append(cases, crashCase{
			name: fmt.Sprintf("cut=%d(record=%d+%d)", c, tail.base+uint64(k), c-tail.boundary(k)),
			damage: func(t testing.TB, segs []crashSegment) {
				crashTruncate(t, segs[2].store, c)
			},
			want: w,
		})
	}

	next := uint64(crashRecords)
	now := time.Now().UnixNano()
	extra := crashValue(crashRecords)
	good := appendFrame(nil, next, now, extra)
	withExtra := append(slices.Clone(vals), extra)
	appendBytes := func(b []byte) func(testing.TB, []crashSegment) {
		return func(t testing.TB, segs []crashSegment) { crashAppendFile(t, segs[2].store, b) }
	}
	cases = append(cases,
		crashCase{
			name:   "zero-filled tail",
			damage: appendBytes(make([]byte, 4096)),
			want:   crashWant{next: next, truncated: 4096, cut: next, reason: "checksum mismatch"},
		},
		crashCase{
			name:   "garbage tail",
			damage: appendBytes(bytes.Repeat([]byte{0xab}, 100)),
			want:   crashWant{next: next, truncated: 100, cut: next, reason: "torn frame"},
		},
		crashCase{
			name: "duplicate of the last frame",
			damage: func(t testing.TB, segs []crashSegment) {
				data, err := os.ReadFile(segs[2].store)
				if err != nil {
					t.Fatal(err)
				}
				crashAppendFile(t, segs[2].store, data[segs[2].pos[segs[2].n()-1]:])
			},
			want: crashWant{next: next, truncated: tail.size - tail.pos[tail.n()-1], cut: next, reason: "holds offset 27, want 28"},
		},
		crashCase{
			name:   "frame with a skipped offset",
			damage: appendBytes(appendFrame(nil, next+1, now, extra)),
			want:   crashWant{next: next, truncated: int64(len(good)), cut: next, reason: "holds offset 29, want 28"},
		},
		crashCase{
			// The write completed but the process died before the index
			// was written: the record is whole, so recovery keeps it.
			name:   "whole frame past the index",
			damage: appendBytes(good),
			want:   crashWant{next: next + 1, vals: withExtra},
		},
		crashCase{
			name:   "whole frame then a torn one",
			damage: appendBytes(append(slices.Clone(good), appendFrame(nil, next+1, now, extra)[:30]...)),
			want:   crashWant{next: next + 1, truncated: 30, cut: next + 1, reason: "torn frame", vals: withExtra},
		},
	)
	crashRun(t, golden, vals, segs, cases)
}

// TestCrashTornSealed cuts a sealed store (which a crash cannot do, as it
// was fsynced before the next segment was created, but a lost disk block
// can) at every byte of its last two records: the segment is cut, the
// segments after it are removed.
func TestCrashTornSealed(t *testing.T) {
	golden, vals, segs := crashGolden(t)
	s := segs[1]
	var cases []crashCase
	for c := s.pos[s.n()-2]; c <= s.size; c++ {
		k := 0
		for k < s.n() && s.end(k) <= c {
			k++
		}
		next := s.base + uint64(k)
		var w crashWant
		switch partial := c - s.boundary(k); {
		case k == s.n():
			w = crashWant{next: crashRecords}
		case partial > 0:
			// A torn frame: cut it, remove the tail.
			w = crashWant{next: next, truncated: partial, cut: next, reason: "segment 10: torn frame",
				removedSegments: []uint64{20}}
		default:
			// Whole frames, fewer than the index says: the index is
			// rebuilt, and the tail no longer follows the segment.
			w = crashWant{next: next, cut: next, reason: "segment 20 does not follow segment 10",
				removedSegments: []uint64{20}, rebuilt: []uint64{10}}
		}
		cases = append(cases, crashCase{
			name: fmt.Sprintf("cut=%d(record=%d+%d)", c, next, c-s.boundary(k)),
			damage: func(t testing.TB, segs []crashSegment) {
				crashTruncate(t, segs[1].store, c)
			},
			want: w,
		})
	}
	crashRun(t, golden, vals, segs, cases)
}

// crashField names the frame field that byte i of a frame belongs to.
func crashField(i int64) string {
	switch {
	case i < 4:
		return "length"
	case i < 8:
		return "crc"
	case i < 16:
		return "offset"
	case i < headerSize:
		return "time"
	}
	return "value"
}

// TestCrashFlippedByte flips, one at a time, every byte of the last,
// a middle and the first record of the tail, and of the last record of
// each sealed segment: recovery cuts the store at that record and removes
// the segments after it.
func TestCrashFlippedByte(t *testing.T) {
	golden, vals, segs := crashGolden(t)
	targets := []struct {
		name string
		seg  int
		rec  int // relative
	}{
		{"tail-last", 2, segs[2].n() - 1},
		{"tail-middle", 2, segs[2].n() / 2},
		{"tail-first", 2, 0},
		{"sealed-last", 1, segs[1].n() - 1},
		{"first-segment-last", 0, segs[0].n() - 1},
	}
	var cases []crashCase
	for _, tg := range targets {
		s := segs[tg.seg]
		pos, end := s.pos[tg.rec], s.end(tg.rec)
		off := s.base + uint64(tg.rec)
		var removed []uint64
		for _, later := range segs[tg.seg+1:] {
			removed = append(removed, later.base)
		}
		for b := pos; b < end; b++ {
			w := crashWant{
				next:            off,
				truncated:       s.size - pos,
				cut:             off,
				reason:          fmt.Sprintf("segment %d: ", s.base),
				removedSegments: removed,
			}
			if b-pos >= 4 {
				// Everything but the length is checked by the CRC alone.
				w.reason += "checksum mismatch"
			}
			cases = append(cases, crashCase{
				name: fmt.Sprintf("%s(offset=%d)/%s+%d", tg.name, off, crashField(b-pos), b-pos),
				damage: func(t testing.TB, segs []crashSegment) {
					crashFlip(t, segs[tg.seg].store, b)
				},
				want: w,
			})
		}
	}
	crashRun(t, golden, vals, segs, cases)
}

// TestCrashSealedMiddleRecordCorrupt flips bytes of a record in the middle
// of a sealed segment. Open checks sealed segments cheaply (index length,
// first and last entry, last frame: see the package documentation), so the
// damage is found by the read, which must report ErrCorrupt and never
// return the bad frame, while every other record stays readable.
func TestCrashSealedMiddleRecordCorrupt(t *testing.T) {
	golden, vals, segs := crashGolden(t)
	const bad = 15
	s := segs[1]
	pos := s.pos[bad-s.base]
	for _, b := range []int64{2, 5, 12, 20, headerSize + 3} {
		t.Run(fmt.Sprintf("%s+%d", crashField(b), b), func(t *testing.T) {
			dir, segs := crashCopyDir(t, golden, segs)
			crashFlip(t, segs[1].store, pos+b)
			l, err := Open(crashConfig(dir))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			if r := l.Recovery(); !reflect.DeepEqual(r, Recovery{}) {
				t.Errorf("Recovery: got %+v, want nothing repaired (the cheap check passes)", r)
			}
			if got := l.NextOffset(); got != crashRecords {
				t.Errorf("NextOffset: got %d, want %d", got, crashRecords)
			}
			for off := uint64(0); off < crashRecords; off++ {
				rec, err := l.Read(off)
				if off == bad {
					if !errors.Is(err, ErrCorrupt) {
						t.Errorf("Read(%d): got (%q, %v), want ErrCorrupt", off, rec.Value, err)
					}
					continue
				}
				if err != nil || !bytes.Equal(rec.Value, vals[off]) {
					t.Errorf("Read(%d): got (%q, %v), want %q", off, rec.Value, err, vals[off])
				}
			}
			r := l.NewReader(s.base)
			for off := s.base; off < bad; off++ {
				if rec, err := r.Next(); err != nil || rec.Offset != off || !bytes.Equal(rec.Value, vals[off]) {
					t.Fatalf("Reader.Next at %d: got (%d, %q, %v), want (%d, %q)", off, rec.Offset, rec.Value, err, off, vals[off])
				}
			}
			for range 2 {
				if rec, err := r.Next(); !errors.Is(err, ErrCorrupt) || r.Offset() != bad {
					t.Fatalf("Reader.Next at %d: got (%q, %v) and Offset %d, want ErrCorrupt and to stay at %d",
						bad, rec.Value, err, r.Offset(), bad)
				}
			}
			r = l.NewReader(bad + 1)
			for off := uint64(bad + 1); off < crashRecords; off++ {
				if rec, err := r.Next(); err != nil || rec.Offset != off || !bytes.Equal(rec.Value, vals[off]) {
					t.Fatalf("Reader.Next at %d: got (%d, %q, %v), want (%d, %q)", off, rec.Offset, rec.Value, err, off, vals[off])
				}
			}
			if off, err := l.Append([]byte("more")); err != nil || off != crashRecords {
				t.Fatalf("Append: got (%d, %v), want (%d, nil)", off, err, crashRecords)
			}
			if rec, err := l.Read(crashRecords); err != nil || string(rec.Value) != "more" {
				t.Fatalf("Read(%d): got (%q, %v), want %q", crashRecords, rec.Value, err, "more")
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestCrashSealedMiddleIndexEntry overwrites an entry in the middle of a
// sealed index, which the cheap check at Open does not see: the two
// records whose frame bounds it gives must read as ErrCorrupt (never as
// a wrong record, never a panic), a Reader reading on from the previous
// frame still reads them, and everything else is intact.
func TestCrashSealedMiddleIndexEntry(t *testing.T) {
	golden, vals, segs := crashGolden(t)
	const entry = 4 // offset 14, whose entry also ends offset 13
	for _, tc := range []struct {
		name string
		pos  uint64
	}{
		{"past the store", 1 << 40},
		{"negative", 1<<64 - 1},
		{"near 2^63", 1<<63 - 5},
		{"at a later frame", uint64(segs[1].pos[6])},
		{"at the first frame", 0},
		{"inside a frame", uint64(segs[1].pos[4] + 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, segs := crashCopyDir(t, golden, segs)
			crashWriteAt(t, segs[1].index, entry*entryWidth+4, binary.BigEndian.AppendUint64(nil, tc.pos))
			l, err := Open(crashConfig(dir))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			if r := l.Recovery(); !reflect.DeepEqual(r, Recovery{}) {
				t.Errorf("Recovery: got %+v, want nothing repaired (the cheap check passes)", r)
			}
			for off := uint64(0); off < crashRecords; off++ {
				rec, err := l.Read(off)
				if off == 13 || off == 14 {
					if !errors.Is(err, ErrCorrupt) {
						t.Errorf("Read(%d): got (%q, %v), want ErrCorrupt", off, rec.Value, err)
					}
					continue
				}
				if err != nil || rec.Offset != off || !bytes.Equal(rec.Value, vals[off]) {
					t.Errorf("Read(%d): got (%d, %q, %v), want (%d, %q)", off, rec.Offset, rec.Value, err, off, vals[off])
				}
			}
			if rec, err := l.NewReader(14).Next(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("NewReader(14).Next: got (%q, %v), want ErrCorrupt", rec.Value, err)
			}
			r := l.NewReader(10)
			for off := uint64(10); off < crashRecords; off++ {
				if rec, err := r.Next(); err != nil || rec.Offset != off || !bytes.Equal(rec.Value, vals[off]) {
					t.Fatalf("Reader.Next at %d: got (%d, %q, %v), want (%d, %q)", off, rec.Offset, rec.Value, err, off, vals[off])
				}
			}
			if off, err := l.Append([]byte("more")); err != nil || off != crashRecords {
				t.Fatalf("Append: got (%d, %v), want (%d, nil)", off, err, crashRecords)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestCrashIndexDamage leaves over-long, short, missing and wrong index
// files for the tail (whose index recovery ignores: the tail is always
// rescanned) and for sealed segments (whose index is rebuilt from the
// store, losing nothing).
func TestCrashIndexDamage(t *testing.T) {
	golden, vals, segs := crashGolden(t)
	type damage struct {
		name string
		do   func(t testing.TB, s crashSegment)
	}
	entryAt := func(i int) int64 { return int64(i) * entryWidth }
	damages := []damage{
		{"garbage entries appended", func(t testing.TB, s crashSegment) {
			crashAppendFile(t, s.index, bytes.Repeat([]byte{0xab}, 5*entryWidth))
		}},
		{"copies of the last entry appended", func(t testing.TB, s crashSegment) {
			data, err := os.ReadFile(s.index)
			if err != nil {
				t.Fatal(err)
			}
			last := data[len(data)-entryWidth:]
			crashAppendFile(t, s.index, bytes.Repeat(last, 3))
		}},
		{"zero-filled preallocation", func(t testing.TB, s crashSegment) {
			crashTruncate(t, s.index, 1<<20)
		}},
		{"one zero entry appended", func(t testing.TB, s crashSegment) {
			crashTruncate(t, s.index, entryAt(s.n()+1))
		}},
		{"all entries zeroed", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, 0, make([]byte, entryAt(s.n())))
		}},
		{"torn last entry", func(t testing.TB, s crashSegment) {
			crashTruncate(t, s.index, entryAt(s.n())-5)
		}},
		{"last entry missing", func(t testing.TB, s crashSegment) {
			crashTruncate(t, s.index, entryAt(s.n()-1))
		}},
		{"half the entries", func(t testing.TB, s crashSegment) {
			crashTruncate(t, s.index, entryAt(s.n()/2))
		}},
		{"empty", func(t testing.TB, s crashSegment) {
			crashTruncate(t, s.index, 0)
		}},
		{"missing", func(t testing.TB, s crashSegment) {
			crashRemove(t, s.index)
		}},
		{"last entry at the previous frame", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, entryAt(s.n()-1)+4, binary.BigEndian.AppendUint64(nil, uint64(s.pos[s.n()-2])))
		}},
		{"last entry past the store", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, entryAt(s.n()-1)+4, binary.BigEndian.AppendUint64(nil, uint64(s.size+100)))
		}},
		{"last entry position near 2^63", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, entryAt(s.n()-1)+4, binary.BigEndian.AppendUint64(nil, 1<<63-10))
		}},
		{"last entry position negative", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, entryAt(s.n()-1)+4, binary.BigEndian.AppendUint64(nil, 1<<64-10))
		}},
		{"last entry misnumbered", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, entryAt(s.n()-1), binary.BigEndian.AppendUint32(nil, uint32(s.n())))
		}},
		{"first entry not at 0", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, 4, binary.BigEndian.AppendUint64(nil, uint64(s.pos[1])))
		}},
		{"first entry misnumbered", func(t testing.TB, s crashSegment) {
			crashWriteAt(t, s.index, 0, binary.BigEndian.AppendUint32(nil, 7))
		}},
	}
	var cases []crashCase
	for seg, kind := range []string{"first-sealed", "sealed", "tail"} {
		for _, d := range damages {
			w := crashWant{next: crashRecords}
			if kind != "tail" {
				w.rebuilt = []uint64{uint64(seg * crashPerSegment)}
			}
			cases = append(cases, crashCase{
				name:   kind + "/" + d.name,
				damage: func(t testing.TB, segs []crashSegment) { d.do(t, segs[seg]) },
				want:   w,
			})
		}
	}
	crashRun(t, golden, vals, segs, cases)
}

// TestCrashSegmentFiles removes and adds whole files: a gap between
// segments, an index without its store, a stray index, foreign files.
func TestCrashSegmentFiles(t *testing.T) {
	golden, vals, segs := crashGolden(t)
	name := func(base uint64, sfx string) string { return fmt.Sprintf("%020d%s", base, sfx) }
	cases := []crashCase{
		{
			name:   "middle segment removed",
			damage: func(t testing.TB, segs []crashSegment) { crashRemove(t, segs[1].store, segs[1].index) },
			want: crashWant{next: 10, cut: 10, reason: "segment 20 does not follow segment 0",
				removedSegments: []uint64{20}},
		},
		{
			name:   "middle segment's store removed",
			damage: func(t testing.TB, segs []crashSegment) { crashRemove(t, segs[1].store) },
			want: crashWant{next: 10, cut: 10, reason: "segment 20 does not follow segment 0",
				removedSegments: []uint64{20}, removedFiles: []string{name(10, indexSuffix)}},
		},
		{
			name:   "first segment removed",
			damage: func(t testing.TB, segs []crashSegment) { crashRemove(t, segs[0].store, segs[0].index) },
			want:   crashWant{lowest: 10, next: crashRecords},
		},
		{
			name:   "first segment's store removed",
			damage: func(t testing.TB, segs []crashSegment) { crashRemove(t, segs[0].store) },
			want:   crashWant{lowest: 10, next: crashRecords, removedFiles: []string{name(0, indexSuffix)}},
		},
		{
			name:   "tail removed",
			damage: func(t testing.TB, segs []crashSegment) { crashRemove(t, segs[2].store, segs[2].index) },
			want:   crashWant{next: 20},
		},
		{
			name:   "tail's store removed",
			damage: func(t testing.TB, segs []crashSegment) { crashRemove(t, segs[2].store) },
			want:   crashWant{next: 20, removedFiles: []string{name(20, indexSuffix)}},
		},
		{
			name: "tail and middle segment removed",
			damage: func(t testing.TB, segs []crashSegment) {
				crashRemove(t, segs[1].store, segs[1].index, segs[2].store, segs[2].index)
			},
			want: crashWant{next: 10},
		},
		{
			name: "all segments removed",
			damage: func(t testing.TB, segs []crashSegment) {
				for _, s := range segs {
					crashRemove(t, s.store, s.index)
				}
			},
			want: crashWant{next: 0},
		},
		{
			name: "stray index after the tail",
			damage: func(t testing.TB, segs []crashSegment) {
				data, err := os.ReadFile(segs[2].index)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(filepath.Dir(segs[2].index), name(crashRecords, indexSuffix)), data, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: crashWant{next: crashRecords, removedFiles: []string{name(crashRecords, indexSuffix)}},
		},
		{
			name: "stray indexes before, between and far after",
			damage: func(t testing.TB, segs []crashSegment) {
				dir := filepath.Dir(segs[0].store)
				for _, b := range []uint64{5, 15, 1 << 40} {
					if err := os.WriteFile(filepath.Join(dir, name(b, indexSuffix)), bytes.Repeat([]byte{1}, 24), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: crashWant{next: crashRecords, removedFiles: []string{
				name(5, indexSuffix), name(15, indexSuffix), name(1<<40, indexSuffix),
			}},
		},
		{
			name: "tail renamed to a later base",
			damage: func(t testing.TB, segs []crashSegment) {
				dir := filepath.Dir(segs[2].store)
				crashRename(t, segs[2].store, filepath.Join(dir, name(21, storeSuffix)))
				crashRename(t, segs[2].index, filepath.Join(dir, name(21, indexSuffix)))
			},
			want: crashWant{next: 20, cut: 20, reason: "segment 21 does not follow segment 10",
				removedSegments: []uint64{21}},
		},
		{
			name: "middle segment renamed to a later base",
			damage: func(t testing.TB, segs []crashSegment) {
				dir := filepath.Dir(segs[1].store)
				crashRename(t, segs[1].store, filepath.Join(dir, name(11, storeSuffix)))
				crashRename(t, segs[1].index, filepath.Join(dir, name(11, indexSuffix)))
			},
			want: crashWant{next: 10, cut: 10, reason: "segment 11 does not follow segment 0",
				removedSegments: []uint64{11, 20}},
		},
		{
			// Its frames hold offsets 0..9, not 1..10: none is good.
			name: "first segment renamed to base 1",
			damage: func(t testing.TB, segs []crashSegment) {
				dir := filepath.Dir(segs[0].store)
				crashRename(t, segs[0].store, filepath.Join(dir, name(1, storeSuffix)))
				crashRename(t, segs[0].index, filepath.Join(dir, name(1, indexSuffix)))
			},
			want: crashWant{lowest: 1, next: 1, truncated: segs[0].size, cut: 1,
				reason: "segment 1: frame at position 0 holds offset 0, want 1", removedSegments: []uint64{10, 20}},
		},
		{
			// The segment that becomes the tail passed only the cheap check
			// at Open; it must be rescanned like any tail, or the appends
			// after it would be cut off by the next Open.
			name: "bad middle frame in the segment that becomes the tail",
			damage: func(t testing.TB, segs []crashSegment) {
				crashFlip(t, segs[0].store, segs[0].pos[5]+headerSize+1)
				crashRemove(t, segs[1].store, segs[1].index)
			},
			want: crashWant{next: 5, truncated: segs[0].size - segs[0].pos[5], cut: 5,
				reason:          "segment 0: checksum mismatch at position " + strconv.FormatInt(segs[0].pos[5], 10) + " (offset 5); segment 20 does not follow segment 0",
				removedSegments: []uint64{20}},
		},
		{
			name: "bad middle index entry in the segment that becomes the tail",
			damage: func(t testing.TB, segs []crashSegment) {
				crashWriteAt(t, segs[1].index, 4*entryWidth+4, binary.BigEndian.AppendUint64(nil, 1<<40))
				crashRemove(t, segs[2].store)
			},
			want: crashWant{next: 20, removedFiles: []string{name(20, indexSuffix)}},
		},
		{
			name: "foreign files",
			damage: func(t testing.TB, segs []crashSegment) {
				dir := filepath.Dir(segs[0].store)
				for _, n := range []string{"notes.txt", "0000.store", "00000000000000000abc.store",
					"99999999999999999999.store", "00000000000000000030.store.tmp", "00000000000000000030.index~"} {
					if err := os.WriteFile(filepath.Join(dir, n), []byte("junk"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Mkdir(filepath.Join(dir, name(40, storeSuffix)), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want: crashWant{next: crashRecords},
		},
	}
	crashRun(t, golden, vals, segs, cases)
}

// The kill test: a child process (this test binary, re-executed) appends
// from several goroutines and prints every acknowledged record; the parent
// SIGKILLs it mid-append and checks that every acknowledged record
// survived. A killed process loses nothing it handed to the kernel, so
// this holds under every sync policy.

const crashChildEnv = "LOGD_CRASH_CHILD" // "<sync policy>:<dir>"

func crashChildConfig(dir string, p SyncPolicy) Config {
	return Config{
		Dir:            dir,
		MaxStoreBytes:  8 << 10,
		MaxIndexBytes:  100 * entryWidth,
		MaxRecordBytes: 1 << 10,
		Sync:           p,
	}
}

// TestCrashChild is the child process of TestCrashKillDuringAppend; run
// on its own it skips.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("the child process of TestCrashKillDuringAppend")
	}
	pol, dir, ok := strings.Cut(spec, ":")
	if !ok {
		t.Fatalf("bad %s=%q", crashChildEnv, spec)
	}
	p, err := ParseSyncPolicy(pol)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(crashChildConfig(dir, p))
	if err != nil {
		fmt.Printf("fail open: %v\n", err)
		os.Exit(3)
	}
	// The parent kills this process; should it die, stop on our own.
	time.AfterFunc(30*time.Second, func() { os.Exit(4) })
	var mu sync.Mutex
	pid := os.Getpid()
	for g := range 4 {
		go func() {
			for i := 0; ; i++ {
				v := fmt.Sprintf("p%d-g%d-%d-%s", pid, g, i, strings.Repeat("x", (i*7+g)%60))
				off, err := l.Append([]byte(v))
				mu.Lock()
				if err != nil {
					fmt.Printf("fail append: %v\n", err)
					os.Exit(3)
				}
				// One write per line: a line is whole or absent.
				os.Stdout.WriteString(fmt.Sprintf("ack %d %s\n", off, v))
				mu.Unlock()
			}
		}()
	}
	select {}
}

// crashKillChild runs one child on dir, kills it after it acknowledged a
// random number of records (or after a deadline) and returns the
// acknowledged records.
func crashKillChild(t *testing.T, dir string, p SyncPolicy, rng *rand.Rand) map[uint64]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+p.String()+":"+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killAfter := 100 + rng.IntN(500)
	var once sync.Once
	kill := func() { once.Do(func() { cmd.Process.Signal(syscall.SIGKILL) }) }
	// A slow start (a loaded machine, the race detector) is not a failure;
	// once acks flow, the kill comes within a second whatever the count.
	deadline := time.AfterFunc(10*time.Second, kill)
	defer deadline.Stop()

	acks := map[uint64]string{}
	var fails []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "ack "); ok {
			offs, v, _ := strings.Cut(rest, " ")
			off, err := strconv.ParseUint(offs, 10, 64)
			if err != nil {
				t.Errorf("child printed a bad line %q", line)
				continue
			}
			if prev, dup := acks[off]; dup {
				t.Errorf("offset %d acknowledged twice: %q and %q", off, prev, v)
			}
			acks[off] = v
			if len(acks) == 1 {
				deadline.Reset(time.Second)
			}
			if len(acks) == killAfter {
				// Let it run on for up to a millisecond so the kill
				// lands anywhere in an append, fsync or roll-over.
				time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
				kill()
			}
		} else if strings.HasPrefix(line, "fail") {
			fails = append(fails, line)
		}
	}
	kill()
	werr := cmd.Wait()
	if len(fails) > 0 {
		t.Fatalf("child failed: %v; stderr:\n%s", fails, stderr.String())
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child: got exit %v, want killed by SIGKILL; stderr:\n%s", werr, stderr.String())
	}
	if len(acks) == 0 {
		t.Fatalf("child acknowledged nothing before it was killed; stderr:\n%s", stderr.String())
	}
	return acks
}

// TestCrashKillDuringAppend SIGKILLs a process appending from several
// goroutines, five times over on one log, and checks after each kill that
// every acknowledged record reads back and that appends continue.
func TestCrashKillDuringAppend(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, p := range []SyncPolicy{SyncAlways, SyncNone} {
		t.Run(p.String(), func(t *testing.T) {
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			dir := t.TempDir()
			acked := map[uint64]string{} // over all rounds
			for round := range 5 {
				acks := crashKillChild(t, dir, p, rng)
				maxAck := uint64(0)
				for off, v := range acks {
					if prev, ok := acked[off]; ok {
						t.Fatalf("round %d: offset %d acknowledged again (%q), was %q", round, off, v, prev)
					}
					acked[off] = v
					maxAck = max(maxAck, off)
				}
				crashCheckAcked(t, dir, p, round, acked, maxAck)
			}
		})
	}
}

// crashCheckAcked reopens the log after a kill and checks every record
// acknowledged so far, then appends one more.
func crashCheckAcked(t *testing.T, dir string, p SyncPolicy, round int, acked map[uint64]string, maxAck uint64) {
	t.Helper()
	l, err := Open(crashChildConfig(dir, p))
	if err != nil {
		t.Fatalf("round %d: Open after kill: %v", round, err)
	}
	defer l.Close()
	rec := l.Recovery()
	if rec.Damaged() && rec.CutOffset <= maxAck {
		t.Fatalf("round %d: recovery cut at %d, but %d was acknowledged: %+v", round, rec.CutOffset, maxAck, rec)
	}
	next := l.NextOffset()
	if next <= maxAck {
		t.Fatalf("round %d: NextOffset: got %d, want > %d (the last acknowledged offset)", round, next, maxAck)
	}
	if lo := l.LowestOffset(); lo != 0 {
		t.Fatalf("round %d: LowestOffset: got %d, want 0", round, lo)
	}
	for off, v := range acked {
		r, err := l.Read(off)
		if err != nil || string(r.Value) != v {
			t.Fatalf("round %d: Read(%d) of an acknowledged record: got (%q, %v), want %q", round, off, r.Value, err, v)
		}
	}
	// Every record, acknowledged or not, reads back whole through a
	// Reader; the acknowledged ones with their values.
	r := l.NewReader(0)
	for off := uint64(0); off < next; off++ {
		got, err := r.Next()
		if err != nil || got.Offset != off {
			t.Fatalf("round %d: Reader.Next at %d: got (%d, %v), want the record", round, off, got.Offset, err)
		}
		if v, ok := acked[off]; ok && string(got.Value) != v {
			t.Fatalf("round %d: Reader.Next at %d: got %q, want %q", round, off, got.Value, v)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("round %d: Reader.Next at the end: got %v, want io.EOF", round, err)
	}
	v := fmt.Sprintf("parent-after-round-%d", round)
	off, err := l.Append([]byte(v))
	if err != nil || off != next {
		t.Fatalf("round %d: Append after kill: got (%d, %v), want (%d, nil)", round, off, err, next)
	}
	if got, err := l.Read(off); err != nil || string(got.Value) != v {
		t.Fatalf("round %d: Read(%d): got (%q, %v), want %q", round, off, got.Value, err, v)
	}
	acked[off] = v
	if err := l.Close(); err != nil {
		t.Fatalf("round %d: Close: %v", round, err)
	}
	t.Logf("round %d: %d acknowledged in all, next offset %d, recovery %+v", round, len(acked), off+1, rec)
}
