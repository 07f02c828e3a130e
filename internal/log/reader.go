package log

import (
	"errors"
	"fmt"
	"io"
)

// readChunk is how much a Reader reads from a store at once.
const readChunk = 64 << 10

// Reader reads a log's records in offset order. It reads the store in
// chunks, so it costs far fewer system calls than Read per record. A
// Reader must not be used by two goroutines at once; any number of
// Readers may run alongside appends.
type Reader struct {
	l   *Log
	off uint64

	seg *segment // segment holding off, if known
	pos int64    // position of off's frame in seg

	buf    []byte // store bytes [bufPos, bufPos+len(buf)) of bufSeg
	bufSeg *segment
	bufPos int64
}

// NewReader returns a Reader positioned at offset from.
func (l *Log) NewReader(from uint64) *Reader {
	return &Reader{l: l, off: from}
}

// Offset returns the offset the next call to Next reads.
func (r *Reader) Offset() uint64 { return r.off }

// Next returns the next record. At the end of the readable log it returns
// io.EOF (use Log.Wait to wait for more); below the lowest offset,
// ErrOffsetCompacted. The record's Value is the caller's to keep.
func (r *Reader) Next() (Record, error) {
	s, pos, limit, err := r.position()
	if err != nil {
		return Record{}, err
	}
	frame, err := r.frame(s, pos, limit)
	if err != nil {
		return Record{}, err
	}
	rec, n, err := decodeFrame(frame, r.off)
	if err != nil {
		return Record{}, fmt.Errorf("%w: offset %d in %s at position %d", ErrCorrupt, r.off, s.storePath, pos)
	}
	rec.Value = append([]byte(nil), rec.Value...)
	r.off++
	r.seg, r.pos = s, pos+n
	return rec, nil
}

// position finds r.off's segment and position, and how far into that
// segment's store records are readable.
func (r *Reader) position() (*segment, int64, int64, error) {
	l := r.l
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, 0, 0, l.closedErr()
	}
	if err := l.checkRangeLocked(r.off); err != nil {
		if errors.Is(err, ErrOffsetOutOfRange) {
			// A reader at the tail may wait there a long time: give its
			// buffer back (the next fill is only as large as what is new).
			if cap(r.buf) > 4<<10 {
				r.buf, r.bufSeg = nil, nil
			}
			return nil, 0, 0, io.EOF
		}
		return nil, 0, 0, err
	}
	s, pos := r.seg, r.pos
	if s == nil || r.off < s.base || r.off >= s.next() {
		s = l.findLocked(r.off)
		pos = s.position(int(r.off - s.base))
	}
	limit := s.size
	if vis := l.visible.Load(); vis-s.base < uint64(s.n) {
		limit = s.position(int(vis - s.base))
	}
	if pos < 0 || pos > limit {
		// A bad entry in the middle of a sealed index (see Log.locate).
		return nil, 0, 0, fmt.Errorf("%w: offset %d in %s: bad index entry (position %d)", ErrCorrupt, r.off, s.storePath, pos)
	}
	return s, pos, limit, nil
}

// frame returns at least the frame at pos of s (fewer bytes only if the
// store ends first), from the buffer or read into it, reading no further
// than limit.
func (r *Reader) frame(s *segment, pos, limit int64) ([]byte, error) {
	if r.bufSeg == s && pos >= r.bufPos {
		if b := r.buf[pos-r.bufPos:]; len(b) >= headerSize {
			h := decodeHeader(b)
			if int64(len(b)) >= frameSize(int(min(h.length, maxValueLen))) {
				return b, nil
			}
		}
	}
	n := min(int64(readChunk), limit-pos)
	if err := r.fill(s, pos, n); err != nil {
		return nil, err
	}
	if len(r.buf) >= headerSize {
		h := decodeHeader(r.buf)
		if fs := frameSize(int(min(h.length, maxValueLen))); fs > int64(len(r.buf)) && fs <= limit-pos {
			if err := r.fill(s, pos, fs); err != nil {
				return nil, err
			}
		}
	}
	return r.buf, nil
}

// fill reads n bytes of s's store at pos into the buffer.
func (r *Reader) fill(s *segment, pos, n int64) error {
	if int64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	r.bufSeg = nil
	if _, err := s.store.ReadAt(r.buf, pos); err != nil {
		r.buf = r.buf[:0]
		return r.l.readError(r.off, err)
	}
	r.bufSeg, r.bufPos = s, pos
	return nil
}
