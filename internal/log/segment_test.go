package log

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSegmentName(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		base   uint64
		suffix string
		want   string
	}{
		{name: "zero store", base: 0, suffix: storeSuffix, want: "00000000000000000000.store"},
		{name: "zero index", base: 0, suffix: indexSuffix, want: "00000000000000000000.index"},
		{name: "small", base: 42, suffix: storeSuffix, want: "00000000000000000042.store"},
		{name: "large", base: 1234567890123, suffix: indexSuffix, want: "00000001234567890123.index"},
		{name: "max uint64", base: math.MaxUint64, suffix: storeSuffix, want: "18446744073709551615.store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := segmentName(dir, tt.base, tt.suffix)
			if want := filepath.Join(dir, tt.want); got != want {
				t.Fatalf("segmentName = %q, want %q", got, want)
			}
			base, suffix, ok := parseSegmentName(filepath.Base(got))
			if !ok || base != tt.base || suffix != tt.suffix {
				t.Fatalf("parseSegmentName(%q) = (%d, %q, %v), want (%d, %q, true)",
					filepath.Base(got), base, suffix, ok, tt.base, tt.suffix)
			}
		})
	}

	t.Run("names sort in offset order", func(t *testing.T) {
		bases := []uint64{0, 1, 9, 10, 99, 100, 1 << 20, 1<<32 - 1, 1 << 32, 1 << 63, math.MaxUint64}
		var names []string
		for _, b := range bases {
			names = append(names, filepath.Base(segmentName(dir, b, storeSuffix)))
		}
		if !slices.IsSorted(names) {
			t.Fatalf("segment names are not sorted in offset order: %v", names)
		}
	})
}

func TestParseSegmentName(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		wantOK     bool
		wantBase   uint64
		wantSuffix string
	}{
		{name: "store", file: "00000000000000000000.store", wantOK: true, wantBase: 0, wantSuffix: storeSuffix},
		{name: "index", file: "00000000000000000042.index", wantOK: true, wantBase: 42, wantSuffix: indexSuffix},
		{name: "max uint64", file: "18446744073709551615.index", wantOK: true, wantBase: math.MaxUint64, wantSuffix: indexSuffix},
		{name: "19 digits", file: "0000000000000000042.store"},
		{name: "21 digits", file: "000000000000000000042.store"},
		{name: "overflows uint64", file: "18446744073709551616.store"},
		{name: "all nines", file: "99999999999999999999.index"},
		{name: "hex digit", file: "0000000000000000004a.store"},
		{name: "plus sign", file: "+0000000000000000042.store"},
		{name: "minus sign", file: "-0000000000000000042.index"},
		{name: "leading space", file: " 0000000000000000042.store"},
		{name: "underscore", file: "0000000000_000000042.store"},
		{name: "other suffix", file: "00000000000000000042.log"},
		{name: "no suffix", file: "00000000000000000042"},
		{name: "temporary file", file: "00000000000000000042.store.tmp"},
		{name: "suffix only", file: ".store"},
		{name: "upper-case suffix", file: "00000000000000000042.STORE"},
		{name: "empty", file: ""},
		{name: "unrelated", file: "LOCK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, suffix, ok := parseSegmentName(tt.file)
			if ok != tt.wantOK || base != tt.wantBase || suffix != tt.wantSuffix {
				t.Fatalf("parseSegmentName(%q) = (%d, %q, %v), want (%d, %q, %v)",
					tt.file, base, suffix, ok, tt.wantBase, tt.wantSuffix, tt.wantOK)
			}
		})
	}
}

// ftWriteSegment creates an active segment at base in dir and writes
// frames with the given value sizes to it, as the log does.
func ftWriteSegment(t testing.TB, dir string, base uint64, sizes []int) *segment {
	t.Helper()
	s, err := createSegment(OSFS{}, dir, base)
	if err != nil {
		t.Fatalf("createSegment: %v", err)
	}
	var buf []byte
	for i, n := range sizes {
		s.positions = append(s.positions, int64(len(buf)))
		buf = appendFrame(buf, base+uint64(i), int64(i), ftPattern(base+uint64(i), n))
	}
	if _, err := s.store.WriteAt(buf, 0); err != nil {
		t.Fatalf("write store: %v", err)
	}
	s.n, s.size = len(sizes), int64(len(buf))
	return s
}

func TestSegmentIndex(t *testing.T) {
	tests := []struct {
		name  string
		base  uint64
		sizes []int
	}{
		{name: "one record", base: 0, sizes: []int{10}},
		{name: "empty values", base: 5, sizes: []int{0, 0, 0}},
		{name: "mixed sizes", base: 1 << 33, sizes: []int{1, 256, 0, 4096, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := ftWriteSegment(t, dir, tt.base, tt.sizes)
			defer s.close()

			// Positions and ends of the active (in-memory) index.
			var wantPos, wantEnd []int64
			pos := int64(0)
			for _, n := range tt.sizes {
				wantPos = append(wantPos, pos)
				pos += frameSize(n)
				wantEnd = append(wantEnd, pos)
			}
			check := func(state string) {
				t.Helper()
				for i := range tt.sizes {
					if got := s.position(i); got != wantPos[i] {
						t.Errorf("%s: position(%d) = %d, want %d", state, i, got, wantPos[i])
					}
					if got := s.end(i); got != wantEnd[i] {
						t.Errorf("%s: end(%d) = %d, want %d", state, i, got, wantEnd[i])
					}
				}
				if got, want := s.next(), tt.base+uint64(len(tt.sizes)); got != want {
					t.Errorf("%s: next() = %d, want %d", state, got, want)
				}
			}
			check("active")

			idx := s.encodeIndex()
			if got, want := len(idx), len(tt.sizes)*entryWidth; got != want {
				t.Fatalf("len(encodeIndex) = %d, want %d", got, want)
			}
			for i := range tt.sizes {
				e := idx[i*entryWidth:]
				if rel := binary.BigEndian.Uint32(e[0:4]); rel != uint32(i) {
					t.Errorf("entry %d: relative offset %d, want %d", i, rel, i)
				}
				if p := int64(binary.BigEndian.Uint64(e[4:12])); p != wantPos[i] {
					t.Errorf("entry %d: position %d, want %d", i, p, wantPos[i])
				}
			}

			if err := s.seal(OSFS{}); err != nil {
				t.Fatalf("seal: %v", err)
			}
			if s.mapped == nil || s.positions != nil {
				t.Fatalf("after seal: mapped %d bytes, %d positions; want a mapping and no positions", len(s.mapped), len(s.positions))
			}
			onDisk, err := os.ReadFile(s.indexPath)
			if err != nil {
				t.Fatalf("read index: %v", err)
			}
			if string(onDisk) != string(idx) {
				t.Errorf("index file differs from encodeIndex")
			}
			check("sealed")

			// A frame located through the mapped index decodes.
			last := len(tt.sizes) - 1
			frame := make([]byte, s.end(last)-s.position(last))
			if _, err := s.store.ReadAt(frame, s.position(last)); err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			if _, _, err := decodeFrame(frame, tt.base+uint64(last)); err != nil {
				t.Errorf("decode last frame through the mapped index: %v", err)
			}
		})
	}
}

func TestSegmentMapIndexWrongLength(t *testing.T) {
	dir := t.TempDir()
	s := ftWriteSegment(t, dir, 0, []int{1, 2, 3})
	defer s.close()
	if err := s.writeIndex(OSFS{}); err != nil {
		t.Fatalf("writeIndex: %v", err)
	}
	s.n = 4 // the index file holds 3 entries
	if err := s.mapIndex(OSFS{}); err == nil {
		t.Fatalf("mapIndex of a 3-entry index for 4 records: got nil error, want one")
	}
	if s.mapped != nil || s.unmap != nil {
		t.Errorf("failed mapIndex left a mapping")
	}
	if len(s.positions) != 3 {
		t.Errorf("failed mapIndex dropped the in-memory index: %d positions, want 3", len(s.positions))
	}
}

func TestSegmentCreateRemovesStaleIndex(t *testing.T) {
	dir := t.TempDir()
	stale := segmentName(dir, 7, indexSuffix)
	if err := os.WriteFile(stale, []byte("stale index"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segmentName(dir, 7, storeSuffix), []byte("stale store"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := createSegment(OSFS{}, dir, 7)
	if err != nil {
		t.Fatalf("createSegment: %v", err)
	}
	defer s.close()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale index after createSegment: Stat error %v, want ErrNotExist", err)
	}
	if fi, err := os.Stat(s.storePath); err != nil || fi.Size() != 0 {
		t.Errorf("store after createSegment: got (%v, %v), want an empty file", fi, err)
	}
}

func TestSegmentRemove(t *testing.T) {
	tests := []struct {
		name string
		seal bool
	}{
		{name: "sealed", seal: true},
		{name: "active without index file", seal: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := ftWriteSegment(t, dir, 100, []int{5, 6})
			if tt.seal {
				if err := s.seal(OSFS{}); err != nil {
					t.Fatalf("seal: %v", err)
				}
			}
			// A file of another segment must survive.
			other := segmentName(dir, 102, storeSuffix)
			if err := os.WriteFile(other, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.remove(OSFS{}); err != nil {
				t.Fatalf("remove: %v", err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if want := []string{filepath.Base(other)}; !slices.Equal(names, want) {
				t.Fatalf("directory after remove = %v, want %v", names, want)
			}
			// The store file is closed: reads fail.
			if _, err := s.store.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
				t.Errorf("ReadAt after remove: got %v, want a closed-file error", err)
			}
		})
	}
}
