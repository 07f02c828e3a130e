package log

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
)

// Recovery reports what Open found damaged and repaired.
type Recovery struct {
	// TruncatedBytes is how many bytes were cut from the end of a store
	// (a torn or corrupt frame and everything after it in that store).
	TruncatedBytes int64
	// CutOffset is the first offset lost, if anything was cut or removed.
	CutOffset uint64
	// Reason says what was wrong where the cut was made.
	Reason string
	// RemovedSegments are the base offsets of segments removed because
	// they followed damage or a gap in offsets.
	RemovedSegments []uint64
	// RebuiltIndexes are the base offsets of sealed segments whose index
	// was missing or wrong and was rebuilt from the store (nothing lost).
	RebuiltIndexes []uint64
	// RemovedFiles are index files found without a store.
	RemovedFiles []string
}

// Damaged reports whether recovery lost any data (a torn tail after a
// crash is the usual case).
func (r Recovery) Damaged() bool { return r.TruncatedBytes > 0 || len(r.RemovedSegments) > 0 }

// recover opens the segments in the log's directory, repairing them as
// the package documentation describes.
func (l *Log) recover() error {
	dir := l.cfg.Dir
	entries, err := l.fs.ReadDir(dir)
	if err != nil {
		return err
	}
	stores := map[uint64]bool{}
	indexes := map[uint64]bool{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		base, sfx, ok := parseSegmentName(e.Name())
		switch {
		case !ok:
		case sfx == storeSuffix:
			stores[base] = true
		default:
			indexes[base] = true
		}
	}
	rep := &l.recovery
	for base := range indexes {
		if !stores[base] {
			p := segmentName(dir, base, indexSuffix)
			if err := l.fs.Remove(p); err != nil {
				return err
			}
			rep.RemovedFiles = append(rep.RemovedFiles, p)
		}
	}
	bases := make([]uint64, 0, len(stores))
	for b := range stores {
		bases = append(bases, b)
	}
	slices.Sort(bases)

	dirty := len(rep.RemovedFiles) > 0
	removeFrom := func(i int) error {
		for _, b := range bases[i:] {
			if err := newSegment(dir, b).remove(l.fs); err != nil {
				return err
			}
			rep.RemovedSegments = append(rep.RemovedSegments, b)
		}
		dirty = true
		return nil
	}
	closeAll := func() {
		for _, s := range l.segments {
			s.close()
		}
		l.segments = nil
	}
	for i, base := range bases {
		if n := len(l.segments); n > 0 && base != l.segments[n-1].next() {
			prev := l.segments[n-1]
			if rep.Reason == "" {
				rep.CutOffset = prev.next()
				rep.Reason = fmt.Sprintf("segment %d does not follow segment %d, which ends before offset %d", base, prev.base, prev.next())
			}
			if err := removeFrom(i); err != nil {
				closeAll()
				return err
			}
			break
		}
		tail := i == len(bases)-1
		s, cut, err := l.openSegment(base, tail, indexes[base])
		if err != nil {
			closeAll()
			return fmt.Errorf("segment %d: %w", base, err)
		}
		l.segments = append(l.segments, s)
		if cut && !tail {
			if err := removeFrom(i + 1); err != nil {
				closeAll()
				return err
			}
			break
		}
	}
	if len(l.segments) == 0 {
		s, err := createSegment(l.fs, dir, l.cfg.InitialOffset)
		if err != nil {
			return err
		}
		l.segments = append(l.segments, s)
		dirty = true
	}
	tail := l.active()
	if tail.mapped != nil {
		// A sealed segment became the tail because later ones were removed.
		// It passed only the cheap check, so rescan it like any tail:
		// appends will follow its last frame, and a bad frame left in its
		// middle would make the next Open cut them off. A cut here is the
		// first offset lost, so it takes over CutOffset and the Reason.
		gap := rep.Reason
		rep.Reason = ""
		tail.close()
		l.segments = l.segments[:len(l.segments)-1]
		s, _, err := l.openSegment(tail.base, true, false)
		if err != nil {
			closeAll()
			return fmt.Errorf("segment %d: %w", tail.base, err)
		}
		l.segments = append(l.segments, s)
		tail = s
		switch {
		case rep.Reason == "":
			rep.Reason = gap
		case gap != "":
			rep.Reason += "; " + gap
		}
	}
	// What a killed process left in the page cache is made durable now, so
	// that everything readable after Open is on disk.
	if err := tail.store.Sync(); err != nil {
		closeAll()
		return err
	}
	if dirty {
		if err := l.fs.SyncDir(dir); err != nil {
			closeAll()
			return err
		}
	}
	return nil
}

// openSegment opens the segment at base. A sealed segment (not the tail,
// with an index) is checked cheaply and rescanned only if the check fails;
// the tail is always rescanned. cut reports that the store was cut.
func (l *Log) openSegment(base uint64, tail, hasIndex bool) (s *segment, cut bool, err error) {
	s = newSegment(l.cfg.Dir, base)
	f, err := l.fs.OpenFile(s.storePath, os.O_RDWR, 0)
	if err != nil {
		return nil, false, err
	}
	s.store = f
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	size, err := f.Size()
	if err != nil {
		return nil, false, err
	}
	if !tail && hasIndex && l.checkSealed(s, size) {
		return s, false, nil
	}
	sc, err := scanStore(f, size, base)
	if err != nil {
		return nil, false, err
	}
	s.positions, s.n, s.size, s.lastNanos = sc.positions, len(sc.positions), sc.end, sc.lastNanos
	if sc.end < size {
		if err := f.Truncate(sc.end); err != nil {
			return nil, false, err
		}
		rep := &l.recovery
		rep.TruncatedBytes += size - sc.end
		if rep.Reason == "" {
			rep.CutOffset = s.next()
			rep.Reason = fmt.Sprintf("segment %d: %s", base, sc.reason)
		}
		cut = true
	}
	if tail || cut {
		return s, cut, nil
	}
	// A sealed segment whose store is whole but whose index is missing or
	// wrong: rebuild the index.
	if err := s.seal(l.fs); err != nil {
		return nil, false, err
	}
	l.recovery.RebuiltIndexes = append(l.recovery.RebuiltIndexes, base)
	return s, false, nil
}

// checkSealed maps s's index and checks that it agrees with a store of
// size bytes: whole entries, the first at position 0, the last numbered
// n-1 and pointing at a good frame that ends the store. On success s is
// ready to serve.
func (l *Log) checkSealed(s *segment, size int64) bool {
	data, unmap, err := l.fs.MapFile(s.indexPath)
	if err != nil {
		return false
	}
	ok := false
	defer func() {
		if !ok {
			unmap()
		}
	}()
	if len(data) == 0 || len(data)%entryWidth != 0 {
		return false
	}
	n := len(data) / entryWidth
	entry := func(i int) (uint32, int64) {
		e := data[i*entryWidth:]
		return binary.BigEndian.Uint32(e), int64(binary.BigEndian.Uint64(e[4:]))
	}
	rel0, pos0 := entry(0)
	relN, posN := entry(n - 1)
	// posN > size-headerSize, not posN+headerSize > size: a corrupt posN
	// near 2^63 must not overflow past the check.
	if rel0 != 0 || pos0 != 0 || int(relN) != n-1 || posN < 0 || posN > size-headerSize || size-posN > frameSize(maxValueLen) {
		return false
	}
	frame := make([]byte, size-posN)
	if _, err := s.store.ReadAt(frame, posN); err != nil {
		return false
	}
	rec, fsz, err := decodeFrame(frame, s.base+uint64(n-1))
	if err != nil || fsz != int64(len(frame)) {
		return false
	}
	s.mapped, s.unmap, s.n, s.size, s.lastNanos = data, unmap, n, size, rec.Time.UnixNano()
	ok = true
	return true
}

// scan is what scanStore found.
type scan struct {
	positions []int64
	end       int64 // end of the last good frame
	lastNanos int64
	reason    string // why the scan stopped before the end of the store
}

// scanStore reads a store of size bytes from the start and returns the
// good frames up to the first torn or bad one. Only I/O errors are errors.
func scanStore(f File, size int64, base uint64) (scan, error) {
	var sc scan
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	var hdr [headerSize]byte
	var val []byte
	pos := int64(0)
	for pos < size {
		if size-pos < headerSize {
			sc.reason = fmt.Sprintf("torn frame header at position %d (%d bytes left)", pos, size-pos)
			break
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return scan{}, err
		}
		h := decodeHeader(hdr[:])
		if int64(h.length) > size-pos-headerSize || h.length > maxValueLen {
			sc.reason = fmt.Sprintf("torn frame at position %d: length %d runs past the end of the store", pos, h.length)
			break
		}
		if cap(val) < int(h.length) {
			val = make([]byte, h.length)
		}
		val = val[:h.length]
		if _, err := io.ReadFull(r, val); err != nil {
			return scan{}, err
		}
		c := crc32.Update(0, castagnoli, hdr[0:4])
		c = crc32.Update(c, castagnoli, hdr[8:])
		c = crc32.Update(c, castagnoli, val)
		want := base + uint64(len(sc.positions))
		if c != h.crc {
			sc.reason = fmt.Sprintf("checksum mismatch at position %d (offset %d)", pos, want)
			break
		}
		if h.offset != want {
			sc.reason = fmt.Sprintf("frame at position %d holds offset %d, want %d", pos, h.offset, want)
			break
		}
		sc.positions = append(sc.positions, pos)
		sc.lastNanos = h.nanos
		pos += frameSize(int(h.length))
	}
	sc.end = pos
	return sc, nil
}
