package log

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// Record is one entry of a log.
type Record struct {
	Offset uint64
	// Time is when the log appended the record.
	Time  time.Time
	Value []byte
}

const (
	headerSize = 24
	// maxValueLen bounds the length field, whatever the configuration, so
	// that a corrupt length can never make a reader allocate gigabytes.
	maxValueLen = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn and errBadFrame are what decodeHeader and checkFrame report to
// the recovery scan; readers turn both into ErrCorrupt.
var (
	errTorn     = errors.New("log: torn frame")
	errBadFrame = errors.New("log: bad frame")
)

// frameSize returns the size on disk of a record with an n-byte value.
func frameSize(n int) int64 { return headerSize + int64(n) }

// appendFrame appends the frame of a record to dst.
func appendFrame(dst []byte, off uint64, nanos int64, value []byte) []byte {
	start := len(dst)
	n := headerSize + len(value)
	if cap(dst)-start < n {
		grown := make([]byte, start, 2*cap(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	f := dst[start:]
	binary.BigEndian.PutUint32(f[0:4], uint32(len(value)))
	binary.BigEndian.PutUint64(f[8:16], off)
	binary.BigEndian.PutUint64(f[16:24], uint64(nanos))
	copy(f[headerSize:], value)
	binary.BigEndian.PutUint32(f[4:8], frameCRC(f))
	return dst
}

func frameCRC(f []byte) uint32 {
	c := crc32.Update(0, castagnoli, f[0:4])
	return crc32.Update(c, castagnoli, f[8:])
}

// header is a decoded frame header.
type header struct {
	length uint32
	crc    uint32
	offset uint64
	nanos  int64
}

func decodeHeader(b []byte) header {
	return header{
		length: binary.BigEndian.Uint32(b[0:4]),
		crc:    binary.BigEndian.Uint32(b[4:8]),
		offset: binary.BigEndian.Uint64(b[8:16]),
		nanos:  int64(binary.BigEndian.Uint64(b[16:24])),
	}
}

// decodeFrame decodes the frame at the start of b, which must be the record
// at offset want. It returns the record, whose Value aliases b, and the
// frame's size. It fails with errTorn if b is too short to hold the frame
// and errBadFrame if the frame is not a good record at want.
func decodeFrame(b []byte, want uint64) (Record, int64, error) {
	if len(b) < headerSize {
		return Record{}, 0, errTorn
	}
	h := decodeHeader(b)
	if h.length > maxValueLen {
		return Record{}, 0, errBadFrame
	}
	n := frameSize(int(h.length))
	if int64(len(b)) < n {
		return Record{}, 0, errTorn
	}
	f := b[:n]
	if frameCRC(f) != h.crc || h.offset != want {
		return Record{}, 0, errBadFrame
	}
	return Record{Offset: h.offset, Time: time.Unix(0, h.nanos), Value: f[headerSize:]}, n, nil
}
