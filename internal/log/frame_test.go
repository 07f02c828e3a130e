package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

// ftPattern returns n bytes that differ from one position to the next, so
// that a value read from the wrong place does not compare equal.
func ftPattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		offset uint64
		nanos  int64
	}{
		{name: "empty", size: 0, offset: 0, nanos: 0},
		{name: "one byte", size: 1, offset: 1, nanos: 1},
		{name: "256 bytes", size: 256, offset: 42, nanos: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()},
		{name: "4 KiB", size: 4096, offset: 1 << 40, nanos: -1},
		{name: "1 MiB", size: 1 << 20, offset: math.MaxUint64, nanos: math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := ftPattern(uint64(tt.size), tt.size)
			// A prefix, to check that appendFrame appends and leaves it alone.
			prefix := []byte("prefix")
			buf := appendFrame(append([]byte(nil), prefix...), tt.offset, tt.nanos, value)
			if got, want := len(buf), len(prefix)+int(frameSize(tt.size)); got != want {
				t.Fatalf("len(appendFrame) = %d, want %d", got, want)
			}
			if !bytes.Equal(buf[:len(prefix)], prefix) {
				t.Fatalf("appendFrame changed the prefix: got %q, want %q", buf[:len(prefix)], prefix)
			}
			f := buf[len(prefix):]
			if got := binary.BigEndian.Uint32(f[0:4]); got != uint32(tt.size) {
				t.Errorf("length field = %d, want %d", got, tt.size)
			}
			if got := binary.BigEndian.Uint64(f[8:16]); got != tt.offset {
				t.Errorf("offset field = %d, want %d", got, tt.offset)
			}

			rec, n, err := decodeFrame(f, tt.offset)
			if err != nil {
				t.Fatalf("decodeFrame: %v", err)
			}
			if n != frameSize(tt.size) {
				t.Errorf("decodeFrame size = %d, want %d", n, frameSize(tt.size))
			}
			if rec.Offset != tt.offset {
				t.Errorf("Offset = %d, want %d", rec.Offset, tt.offset)
			}
			if got := rec.Time.UnixNano(); got != tt.nanos {
				t.Errorf("Time = %d ns, want %d ns", got, tt.nanos)
			}
			if !bytes.Equal(rec.Value, value) {
				t.Errorf("Value differs (len %d, want len %d)", len(rec.Value), len(value))
			}

			// Trailing bytes (the next frame) do not disturb decoding.
			two := appendFrame(append([]byte(nil), f...), tt.offset+1, tt.nanos, []byte("next"))
			rec, n, err = decodeFrame(two, tt.offset)
			if err != nil || n != frameSize(tt.size) || !bytes.Equal(rec.Value, value) {
				t.Fatalf("decodeFrame of first of two frames: got (%d bytes, size %d, %v), want (%d bytes, size %d, nil)",
					len(rec.Value), n, err, len(value), frameSize(tt.size))
			}
			rec, _, err = decodeFrame(two[n:], tt.offset+1)
			if err != nil || string(rec.Value) != "next" {
				t.Fatalf("decodeFrame of second frame: got (%q, %v), want (\"next\", nil)", rec.Value, err)
			}
		})
	}
}

func TestAppendFrameGrowsAndReuses(t *testing.T) {
	// With room in dst, appendFrame writes in place.
	dst := make([]byte, 0, 1024)
	got := appendFrame(dst, 7, 8, []byte("abc"))
	if &got[0] != &dst[:1][0] {
		t.Errorf("appendFrame reallocated a buffer with room for the frame")
	}
	// Without room, it grows and keeps what was there.
	small := []byte{1, 2, 3}
	got = appendFrame(small[:3:3], 9, 10, ftPattern(1, 5000))
	if !bytes.Equal(got[:3], []byte{1, 2, 3}) {
		t.Errorf("grown buffer starts %v, want [1 2 3]", got[:3])
	}
	if _, _, err := decodeFrame(got[3:], 9); err != nil {
		t.Errorf("decodeFrame of a frame appended to a grown buffer: %v", err)
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	const off = 1000
	value := ftPattern(3, 100)
	good := appendFrame(nil, off, 12345, value)
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	tests := []struct {
		name  string
		frame []byte
		want  uint64 // the offset asked for
		err   error
	}{
		{name: "nil input", frame: nil, want: off, err: errTorn},
		{name: "one byte", frame: good[:1], want: off, err: errTorn},
		{name: "header minus one byte", frame: good[:headerSize-1], want: off, err: errTorn},
		{name: "header only", frame: good[:headerSize], want: off, err: errTorn},
		{name: "value minus one byte", frame: good[:len(good)-1], want: off, err: errTorn},
		{name: "flipped value bit", frame: mutate(func(b []byte) { b[headerSize+50] ^= 0x10 }), want: off, err: errBadFrame},
		{name: "flipped last value bit", frame: mutate(func(b []byte) { b[len(b)-1] ^= 0x01 }), want: off, err: errBadFrame},
		{name: "flipped crc bit", frame: mutate(func(b []byte) { b[5] ^= 0x80 }), want: off, err: errBadFrame},
		{name: "flipped time bit", frame: mutate(func(b []byte) { b[20] ^= 0x01 }), want: off, err: errBadFrame},
		{name: "flipped offset bit", frame: mutate(func(b []byte) { b[15] ^= 0x01 }), want: off, err: errBadFrame},
		{name: "shorter length field", frame: mutate(func(b []byte) { binary.BigEndian.PutUint32(b, 99) }), want: off, err: errBadFrame},
		{name: "wrong offset asked", frame: good, want: off + 1, err: errBadFrame},
		{name: "offset zero asked", frame: good, want: 0, err: errBadFrame},
		{name: "oversized length", frame: mutate(func(b []byte) { binary.BigEndian.PutUint32(b, maxValueLen+1) }), want: off, err: errBadFrame},
		{name: "max uint32 length", frame: mutate(func(b []byte) { binary.BigEndian.PutUint32(b, math.MaxUint32) }), want: off, err: errBadFrame},
		{name: "oversized length, header only", frame: mutate(func(b []byte) { binary.BigEndian.PutUint32(b, maxValueLen+1) })[:headerSize], want: off, err: errBadFrame},
		{name: "longer length field past the input", frame: mutate(func(b []byte) { binary.BigEndian.PutUint32(b, 101) }), want: off, err: errTorn},
		{name: "all zeros", frame: make([]byte, 64), want: off, err: errBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, n, err := decodeFrame(tt.frame, tt.want)
			if !errors.Is(err, tt.err) {
				t.Fatalf("decodeFrame error = %v, want %v", err, tt.err)
			}
			if n != 0 || rec.Value != nil {
				t.Errorf("decodeFrame returned size %d and %d value bytes with an error, want 0 and nil", n, len(rec.Value))
			}
		})
	}
	// The untouched frame decodes, so the failures above are the mutations'.
	if _, _, err := decodeFrame(good, off); err != nil {
		t.Fatalf("decodeFrame(good) = %v, want nil", err)
	}
}
