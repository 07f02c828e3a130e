package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"testing"
)

// crashMemFile is a read-only File over a byte slice, for scanStore.
type crashMemFile struct{ r *bytes.Reader }

func (f crashMemFile) ReadAt(p []byte, off int64) (int, error) { return f.r.ReadAt(p, off) }
func (crashMemFile) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("crashMemFile: read-only")
}
func (crashMemFile) Close() error           { return nil }
func (crashMemFile) Sync() error            { return nil }
func (crashMemFile) Truncate(int64) error   { return errors.New("crashMemFile: read-only") }
func (f crashMemFile) Size() (int64, error) { return f.r.Size(), nil }
func crashMemOpen(b []byte) crashMemFile    { return crashMemFile{bytes.NewReader(b)} }
func crashFrame(off uint64, nanos int64, v string) []byte {
	return appendFrame(nil, off, nanos, []byte(v))
}

// FuzzDecodeFrame feeds arbitrary bytes to decodeFrame: it must never
// panic, must fail with errTorn or errBadFrame, and a frame it accepts must
// re-encode to the same bytes and be what the recovery scan accepts too.
func FuzzDecodeFrame(f *testing.F) {
	good := crashFrame(42, 1_700_000_000_123_456_789, "hello, world")
	flip := func(b []byte, i int) []byte {
		c := slices.Clone(b)
		c[i] ^= 0x40
		return c
	}
	huge := slices.Clone(good)
	copy(huge, []byte{0x10, 0, 0, 1}) // length maxValueLen+1
	f.Add(crashFrame(0, 0, ""), uint64(0))
	f.Add(good, uint64(42))
	f.Add(good, uint64(41))
	f.Add(append(slices.Clone(good), "trailing"...), uint64(42))
	f.Add(append(slices.Clone(good), crashFrame(43, 1, "next")...), uint64(42))
	f.Add(good[:len(good)-1], uint64(42))
	f.Add(good[:headerSize], uint64(42))
	f.Add(good[:headerSize-1], uint64(42))
	f.Add(flip(good, 2), uint64(42))
	f.Add(flip(good, 5), uint64(42))
	f.Add(flip(good, 12), uint64(42))
	f.Add(flip(good, 20), uint64(42))
	f.Add(flip(good, headerSize+3), uint64(42))
	f.Add(huge, uint64(42))
	f.Add([]byte{}, uint64(0))
	f.Add(make([]byte, 64), uint64(0))
	f.Add(crashFrame(math.MaxUint64, math.MinInt64, "extremes"), uint64(math.MaxUint64))
	f.Add(crashFrame(7, -1, string(bytes.Repeat([]byte{0xff}, 300))), uint64(7))

	f.Fuzz(func(t *testing.T, data []byte, want uint64) {
		orig := slices.Clone(data)
		rec, n, err := decodeFrame(data, want)
		if !bytes.Equal(data, orig) {
			t.Fatalf("decodeFrame modified its input")
		}
		sc, serr := scanStore(crashMemOpen(data), int64(len(data)), want)
		if serr != nil {
			t.Fatalf("scanStore of an in-memory store: %v", serr)
		}
		if err != nil {
			if !errors.Is(err, errTorn) && !errors.Is(err, errBadFrame) {
				t.Fatalf("decodeFrame: got error %v, want errTorn or errBadFrame", err)
			}
			if len(data) < headerSize && !errors.Is(err, errTorn) {
				t.Fatalf("decodeFrame of %d bytes: got %v, want errTorn", len(data), err)
			}
			if n != 0 || rec.Value != nil {
				t.Fatalf("decodeFrame failed with %v but returned (%d bytes, %q)", err, n, rec.Value)
			}
			if len(sc.positions) != 0 {
				t.Fatalf("decodeFrame rejects the frame (%v) but scanStore accepts it", err)
			}
			return
		}
		if n < headerSize || n > int64(len(data)) || n != frameSize(len(rec.Value)) {
			t.Fatalf("decodeFrame: got frame size %d for a %d-byte value in %d bytes", n, len(rec.Value), len(data))
		}
		if rec.Offset != want {
			t.Fatalf("decodeFrame: got offset %d, want %d", rec.Offset, want)
		}
		if len(rec.Value) > 0 && &rec.Value[0] != &data[headerSize] {
			t.Fatalf("decodeFrame: the value does not alias the input")
		}
		re := appendFrame(nil, rec.Offset, rec.Time.UnixNano(), rec.Value)
		if !bytes.Equal(re, data[:n]) {
			t.Fatalf("re-encoded frame: got %x, want %x", re, data[:n])
		}
		// The same through a non-empty dst, in place and with growth.
		prefix := []byte("prefix")
		for _, dst := range [][]byte{prefix, append(make([]byte, 0, len(prefix)+int(n)), prefix...)} {
			got := appendFrame(dst, rec.Offset, rec.Time.UnixNano(), rec.Value)
			if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], data[:n]) {
				t.Fatalf("appendFrame after a prefix: got %x, want %x%x", got, prefix, data[:n])
			}
		}
		if len(sc.positions) == 0 || sc.positions[0] != 0 {
			t.Fatalf("decodeFrame accepts the frame but scanStore does not (%s)", sc.reason)
		}
		if len(sc.positions) == 1 && sc.end != n || len(sc.positions) > 1 && sc.positions[1] != n {
			t.Fatalf("scanStore: first frame ends at %v (end %d), decodeFrame says %d", sc.positions, sc.end, n)
		}
		if sc.lastNanos != rec.Time.UnixNano() && len(sc.positions) == 1 {
			t.Fatalf("scanStore: got time %d, want %d", sc.lastNanos, rec.Time.UnixNano())
		}
	})
}

// crashNoSyncFS is the operating system's file system without fsync, so
// that the fuzzer runs many Opens a second. Durability is not what
// FuzzOpen checks; the files, their contents and the mappings are real.
type crashNoSyncFS struct{ OSFS }

type crashNoSyncFile struct{ File }

func (crashNoSyncFile) Sync() error        { return nil }
func (crashNoSyncFS) SyncDir(string) error { return nil }
func (fs crashNoSyncFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return crashNoSyncFile{f}, nil
}

const crashFuzzPerSegment = 8

func crashFuzzConfig(dir string) Config {
	return Config{
		Dir:            dir,
		MaxStoreBytes:  64 << 10,
		MaxIndexBytes:  crashFuzzPerSegment * entryWidth,
		MaxRecordBytes: 1 << 10,
		Sync:           SyncNone,
		FS:             crashNoSyncFS{},
	}
}

// Bits of FuzzOpen's flags argument.
const (
	crashFuzzIndex0 = 1 << iota // write index0 for segment 0
	crashFuzzSeg1               // write store1 as the segment at base1
	crashFuzzIndex1             // and index1 as its index
	crashFuzzFixCRC             // checksum the stores' frames anew
)

// crashFixCRC rewrites in place the checksum of every whole frame it can
// walk to in b by the length fields, so that the fuzzer's mutations of
// lengths, offsets, times and values make good frames, not just bad ones.
func crashFixCRC(b []byte) {
	for pos := 0; len(b)-pos >= headerSize; {
		n := frameSize(int(decodeHeader(b[pos:]).length))
		if n > int64(len(b)-pos) {
			return
		}
		f := b[pos : pos+int(n)]
		binary.BigEndian.PutUint32(f[4:8], frameCRC(f))
		pos += int(n)
	}
}

// crashFuzzSeeds builds real logs and returns their files as FuzzOpen
// arguments: one segment, and two (the first sealed), and damaged copies.
func crashFuzzSeeds(f *testing.F) {
	build := func(n int) (store0, index0, store1, index1 []byte) {
		dir := f.TempDir()
		l, err := Open(crashFuzzConfig(dir))
		if err != nil {
			f.Fatal(err)
		}
		for i := range n {
			if _, err := l.Append([]byte(fmt.Sprintf("seed-%d-%s", i, bytes.Repeat([]byte{'s'}, i%5)))); err != nil {
				f.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			f.Fatal(err)
		}
		read := func(base uint64, sfx string) []byte {
			b, err := os.ReadFile(segmentName(dir, base, sfx))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				f.Fatal(err)
			}
			return b
		}
		return read(0, storeSuffix), read(0, indexSuffix), read(crashFuzzPerSegment, storeSuffix), read(crashFuzzPerSegment, indexSuffix)
	}
	const all = crashFuzzIndex0 | crashFuzzSeg1 | crashFuzzIndex1
	base1 := uint64(crashFuzzPerSegment)
	s0, i0, _, _ := build(5)
	f.Add(s0, i0, []byte(nil), []byte(nil), uint64(0), uint8(crashFuzzIndex0))
	f.Add(s0[:len(s0)-7], i0, []byte(nil), []byte(nil), uint64(0), uint8(crashFuzzIndex0))
	f.Add(append(slices.Clone(s0), make([]byte, 100)...), []byte(nil), []byte(nil), []byte(nil), uint64(0), uint8(0))
	f.Add([]byte(nil), []byte(nil), []byte(nil), []byte(nil), uint64(0), uint8(0))

	s0, i0, s1, i1 := build(12)
	mod := func(b []byte, at int, v byte) []byte {
		c := slices.Clone(b)
		c[at] ^= v
		return c
	}
	f.Add(s0, i0, s1, i1, base1, uint8(all))
	f.Add(s0, i0, s1[:len(s1)-5], i1, base1, uint8(all))
	f.Add(s0, i0, []byte(nil), []byte(nil), base1, uint8(crashFuzzIndex0|crashFuzzSeg1))
	f.Add(s0, []byte(nil), s1, i1, base1, uint8(crashFuzzSeg1|crashFuzzIndex1))
	f.Add(s0, i0[:len(i0)-3], s1, i1, base1, uint8(all))
	f.Add(s0, append(slices.Clone(i0), make([]byte, 48)...), s1, i1, base1, uint8(all))
	f.Add(s0, i0, s1, i1, base1+1, uint8(all))
	f.Add(s0[:len(s0)-1], i0, s1, i1, base1, uint8(all))
	// A bad frame in the middle of the sealed segment, which the cheap
	// check at Open does not see.
	f.Add(mod(s0, len(s0)/2, 1), i0, s1, i1, base1, uint8(all))
	// The same, and the sealed segment becomes the tail.
	f.Add(mod(s0, len(s0)/2, 1), i0, s1, i1, base1+1, uint8(all))
	// Middle index entries of the sealed segment pointing anywhere.
	f.Add(s0, mod(i0, 3*entryWidth+5, 0x80), s1, i1, base1, uint8(all))
	f.Add(s0, mod(i0, 3*entryWidth+11, 0x07), s1, i1, base1, uint8(all))
	f.Add(s0, mod(i0, 3*entryWidth+5, 0x80), s1, i1, base1+1, uint8(all))
	// Good frames with the wrong offset, time or length, in the sealed
	// segment and in the tail.
	const fix = all | crashFuzzFixCRC
	f.Add(mod(s0, 2*26+15, 1), i0, s1, i1, base1, uint8(fix))
	f.Add(s0, i0, mod(s1, 15, 2), i1, base1, uint8(fix))
	f.Add(s0, i0, mod(s1, 20, 0x80), i1, base1, uint8(fix))
	f.Add(s0, i0, mod(s1, 3, 1), i1, base1, uint8(fix))
	f.Add(mod(s0, len(s0)-30, 1), i0, s1, i1, base1, uint8(fix))
}

// crashFuzzRead is what reading one offset gave.
type crashFuzzRead struct {
	rec Record
	err error
}

// FuzzOpen writes arbitrary bytes as a log's files (a store at base 0 and
// optionally its index and a second segment) and opens the log. Open must
// not fail or panic; every offset it says is readable must read back, the
// same through Read and a Reader, as a frame that is in the input; appends
// must continue at NextOffset; and a second Open must find nothing to
// repair and the same records. It runs many more inputs a second with the
// temporary directory on tmpfs (TMPDIR=/dev/shm).
func FuzzOpen(f *testing.F) {
	crashFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, store0, index0, store1, index1 []byte, base1 uint64, flags uint8) {
		dir := t.TempDir()
		write := func(base uint64, sfx string, b []byte) {
			if err := os.WriteFile(segmentName(dir, base, sfx), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if flags&crashFuzzFixCRC != 0 {
			// Copies: the fuzzing engine owns its arguments.
			store0, store1 = slices.Clone(store0), slices.Clone(store1)
			crashFixCRC(store0)
			crashFixCRC(store1)
		}
		inputs := map[uint64][]byte{0: store0}
		write(0, storeSuffix, store0)
		if flags&crashFuzzIndex0 != 0 {
			write(0, indexSuffix, index0)
		}
		if flags&crashFuzzSeg1 != 0 && base1 != 0 {
			inputs[base1] = store1
			write(base1, storeSuffix, store1)
			if flags&crashFuzzIndex1 != 0 {
				write(base1, indexSuffix, index1)
			}
		}

		cfg := crashFuzzConfig(dir)
		l, err := Open(cfg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer l.Close()
		rec := l.Recovery()
		next := l.NextOffset()
		if lo := l.LowestOffset(); lo != 0 {
			t.Fatalf("LowestOffset: got %d, want 0", lo)
		}
		if rec.Damaged() {
			if rec.CutOffset != next || rec.Reason == "" {
				t.Fatalf("Recovery %+v: got CutOffset %d, want NextOffset %d and a reason", rec, rec.CutOffset, next)
			}
		} else if rec.CutOffset != 0 || rec.Reason != "" || rec.TruncatedBytes != 0 {
			t.Fatalf("Recovery %+v reports a cut but is not Damaged", rec)
		}
		if max := int64(len(store0) + len(store1)); rec.TruncatedBytes > max {
			t.Fatalf("Recovery.TruncatedBytes: got %d, more than the %d bytes written", rec.TruncatedBytes, max)
		}

		// Which segments were rescanned (the tail, rebuilt ones): all their
		// records read back. Other sealed segments passed the cheap check;
		// a bad frame or index entry in their middle reads as ErrCorrupt.
		segs := crashFuzzSegments(l)
		if last := segs[len(segs)-1]; last.base+uint64(last.n) != next {
			t.Fatalf("NextOffset %d, but the last segment holds [%d, %d)", next, last.base, last.base+uint64(last.n))
		}

		first := crashFuzzReadAll(t, l, next, crashFuzzMayFail(segs))

		// Every record served is a frame of the input it came from, and a
		// rescanned segment serves a prefix of its store.
		for _, s := range segs {
			input, ok := inputs[s.base]
			if !ok {
				t.Fatalf("segment %d was not in the input", s.base)
			}
			var served []byte
			for off := s.base; off < s.base+uint64(s.n); off++ {
				r := first[off]
				if r.err != nil {
					continue
				}
				fr := appendFrame(nil, off, r.rec.Time.UnixNano(), r.rec.Value)
				if !bytes.Contains(input, fr) {
					t.Fatalf("offset %d: served a frame that is not in the input: %x", off, fr)
				}
				served = append(served, fr...)
			}
			// (All of a verified segment's records were read.)
			if s.verified && !bytes.HasPrefix(input, served) {
				t.Fatalf("segment %d: the records served are not a prefix of its store", s.base)
			}
		}

		// Appends continue at NextOffset, through a roll-over if the tail
		// is full.
		var added [][]byte
		for i := range 3 {
			v := []byte(fmt.Sprintf("fuzz-append-%d", i))
			off, err := l.Append(v)
			if err != nil || off != next+uint64(i) {
				t.Fatalf("Append: got (%d, %v), want (%d, nil)", off, err, next+uint64(i))
			}
			if r, err := l.Read(off); err != nil || !bytes.Equal(r.Value, v) {
				t.Fatalf("Read(%d) after Append: got (%q, %v), want %q", off, r.Value, err, v)
			}
			added = append(added, v)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		l2, err := Open(cfg)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer l2.Close()
		if r := l2.Recovery(); !reflect.DeepEqual(r, Recovery{}) {
			t.Fatalf("second Open after a clean Close: got Recovery %+v, want nothing repaired", r)
		}
		if got, want := l2.NextOffset(), next+uint64(len(added)); got != want {
			t.Fatalf("second Open: NextOffset: got %d, want %d", got, want)
		}
		second := crashFuzzReadAll(t, l2, next+uint64(len(added)), crashFuzzMayFail(crashFuzzSegments(l2)))
		for off := range next {
			a, b := first[off], second[off]
			if (a.err == nil) != (b.err == nil) || a.err == nil && !crashSameRecord(a.rec, b.rec) {
				t.Fatalf("offset %d: first Open read (%q, %v), second (%q, %v)", off, a.rec.Value, a.err, b.rec.Value, b.err)
			}
		}
		for i, v := range added {
			if r := second[next+uint64(i)]; r.err != nil || !bytes.Equal(r.rec.Value, v) {
				t.Fatalf("second Open: Read(%d): got (%q, %v), want %q", next+uint64(i), r.rec.Value, r.err, v)
			}
		}
		if err := l2.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// crashFuzzSeg is a segment of an open log as FuzzOpen sees it.
type crashFuzzSeg struct {
	base     uint64
	n        int
	verified bool
}

// crashFuzzSegments returns l's segments. Those that Open rescanned (the
// tail, and the sealed ones whose index it rebuilt) are verified: all
// their records read back. The other sealed segments passed only the
// cheap check (see the package documentation): a bad frame or index entry
// in their middle reads as ErrCorrupt.
func crashFuzzSegments(l *Log) []crashFuzzSeg {
	rebuilt := l.Recovery().RebuiltIndexes
	l.mu.RLock()
	defer l.mu.RUnlock()
	var segs []crashFuzzSeg
	for i, s := range l.segments {
		segs = append(segs, crashFuzzSeg{s.base, s.n, i == len(l.segments)-1 || slices.Contains(rebuilt, s.base)})
	}
	return segs
}

// crashFuzzMayFail says which offsets may read as ErrCorrupt: those of
// unverified segments.
func crashFuzzMayFail(segs []crashFuzzSeg) func(uint64) bool {
	return func(off uint64) bool {
		for _, s := range segs {
			if s.base <= off && off < s.base+uint64(s.n) {
				return !s.verified
			}
		}
		return false
	}
}

func crashSameRecord(a, b Record) bool {
	return a.Offset == b.Offset && a.Time.Equal(b.Time) && bytes.Equal(a.Value, b.Value)
}

// crashFuzzReadAll reads offsets [0, next) with Read and with Readers and
// checks that they agree. An offset may fail, with ErrCorrupt only, if
// mayFail says so.
func crashFuzzReadAll(t *testing.T, l *Log, next uint64, mayFail func(uint64) bool) []crashFuzzRead {
	t.Helper()
	reads := make([]crashFuzzRead, next)
	for off := range next {
		rec, err := l.Read(off)
		if err != nil && (!mayFail(off) || !errors.Is(err, ErrCorrupt)) {
			t.Fatalf("Read(%d) below NextOffset %d: %v", off, next, err)
		}
		if err == nil && rec.Offset != off {
			t.Fatalf("Read(%d): got offset %d", off, rec.Offset)
		}
		reads[off] = crashFuzzRead{rec, err}
	}
	if _, err := l.Read(next); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read(%d) at NextOffset: got %v, want ErrOffsetOutOfRange", next, err)
	}
	r := l.NewReader(0)
	for off := range next {
		rec, err := r.Next()
		if err != nil {
			if !mayFail(off) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Reader.Next at %d below NextOffset %d: %v", off, next, err)
			}
			r = l.NewReader(off + 1)
			continue
		}
		if rec.Offset != off {
			t.Fatalf("Reader.Next at %d: got offset %d", off, rec.Offset)
		}
		// A Reader reading on from the previous frame does not use the
		// index, so it may read a record whose index entry is bad.
		if reads[off].err == nil && !crashSameRecord(rec, reads[off].rec) {
			t.Fatalf("offset %d: Read gave (%q, %v), Reader (%q, %v)",
				off, reads[off].rec.Value, reads[off].rec.Time, rec.Value, rec.Time)
		}
		if reads[off].err != nil && !mayFail(off) {
			t.Fatalf("offset %d: Read failed (%v) but the Reader read it", off, reads[off].err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Reader.Next at NextOffset %d: got %v, want io.EOF", next, err)
	}
	return reads
}
