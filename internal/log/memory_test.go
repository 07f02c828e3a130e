package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// The package documentation claims that sealed indexes are memory-mapped,
// "so resident memory does not grow with the amount of data on disk". This
// test checks the heap half of that claim: opening a log of ~384 MiB in 96
// sealed segments and reading from it costs about as much Go heap as doing
// the same with a ~10 MiB log. Mapped index files are not heap.

const (
	ftMemSmallBytes = 10 << 20
	ftMemBigBytes   = 384 << 20
	ftMemStoreBytes = 4 << 20
	ftMemMinValue   = 256
	ftMemMaxValue   = 4 << 10
)

// ftMemPool is the bytes values are cut from; each value starts with its
// offset, so that a record read from the wrong place does not compare
// equal.
var ftMemPool = ftPattern(99, ftMemMaxValue)

func ftMemValue(dst []byte, off uint64, n int) []byte {
	dst = append(dst, ftMemPool[:n]...)
	binary.BigEndian.PutUint64(dst[len(dst)-n:], off)
	return dst
}

func ftMemCheck(t testing.TB, rec Record, off uint64) {
	t.Helper()
	v := rec.Value
	if rec.Offset != off || len(v) < ftMemMinValue || len(v) > ftMemMaxValue ||
		binary.BigEndian.Uint64(v) != off || !bytes.Equal(v[8:], ftMemPool[8:len(v)]) {
		t.Fatalf("record at %d: offset %d, %d bytes: not the value appended", off, rec.Offset, len(v))
	}
}

// ftMemBuild writes a log of about size bytes of 256 B..4 KiB records in
// 4 MiB segments, closes it, and returns its configuration and number of
// records.
func ftMemBuild(t testing.TB, size int64) (Config, uint64) {
	t.Helper()
	cfg := ftConfig(t, func(c *Config) {
		c.MaxStoreBytes = ftMemStoreBytes
		c.MaxRecordBytes = ftMemMaxValue
	})
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(size), 1))
	var (
		buf     []byte
		lens    []int
		values  [][]byte
		written int64
		off     uint64
	)
	for written < size {
		buf, lens, values = buf[:0], lens[:0], values[:0]
		for len(buf) < 1<<20 {
			n := ftMemMinValue + rng.IntN(ftMemMaxValue-ftMemMinValue+1)
			buf = ftMemValue(buf, off+uint64(len(lens)), n)
			lens = append(lens, n)
		}
		at := 0
		for _, n := range lens {
			values = append(values, buf[at:at+n])
			at += n
			written += frameSize(n) + entryWidth
		}
		first, err := l.AppendBatch(values)
		if err != nil || first != off {
			l.Close()
			t.Fatalf("AppendBatch = (%d, %v), want (%d, nil)", first, err, off)
		}
		off += uint64(len(values))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg, off
}

// ftMemOpenCost returns the growth of the heap in use from before Open to
// after opening the log, reading random records and reading its tail,
// with the log still open.
func ftMemOpenCost(t testing.TB, cfg Config, n uint64) (cost int64, segments int) {
	t.Helper()
	before := ftMemHeapInuse()
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if lo, next := l.Offsets(); lo != 0 || next != n {
		t.Fatalf("Offsets = (%d, %d), want (0, %d)", lo, next, n)
	}
	rng := rand.New(rand.NewPCG(n, 2))
	for range 64 {
		off := rng.Uint64N(n)
		rec, err := l.Read(off)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		ftMemCheck(t, rec, off)
	}
	r := l.NewReader(n - min(n, 1000))
	for {
		want := r.Offset()
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Reader.Next at %d: %v", want, err)
		}
		ftMemCheck(t, rec, want)
	}
	if r.Offset() != n {
		t.Fatalf("tail read ended at %d, want %d", r.Offset(), n)
	}
	after := ftMemHeapInuse()
	runtime.KeepAlive(l)
	runtime.KeepAlive(r)
	return int64(after) - int64(before), l.Stats().Segments
}

func ftMemHeapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func TestMemoryIndependentOfDataOnDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~400 MiB; skipped with -short")
	}
	start := time.Now()
	smallCfg, smallN := ftMemBuild(t, ftMemSmallBytes)
	bigCfg, bigN := ftMemBuild(t, ftMemBigBytes)
	built := time.Since(start)

	// Measure each twice and keep the lower figure, to shed noise from
	// whatever else the runtime allocated meanwhile.
	smallCost, smallSegs := ftMemOpenCost(t, smallCfg, smallN)
	bigCost, bigSegs := ftMemOpenCost(t, bigCfg, bigN)
	if c, _ := ftMemOpenCost(t, smallCfg, smallN); c < smallCost {
		smallCost = c
	}
	if c, _ := ftMemOpenCost(t, bigCfg, bigN); c < bigCost {
		bigCost = c
	}

	// What the big log's indexes would take on the heap if they were read
	// into memory rather than mapped: 8 bytes per record as []int64.
	heapIndex := int64(bigN-smallN) * 8
	t.Logf("built in %v; small: %d records, %d segments, heap +%d KiB; big: %d records, %d segments, heap +%d KiB; "+
		"its indexes would take %d KiB of heap",
		built.Round(time.Millisecond), smallN, smallSegs, smallCost>>10, bigN, bigSegs, bigCost>>10, heapIndex>>10)

	if bigSegs < 90 {
		t.Fatalf("big log has %d segments, want 90 or more (a test of many sealed segments)", bigSegs)
	}
	// The bound: the big log may cost twice the small one plus 1 MiB
	// (segment structs, file handles, a fuller tail index: tens of bytes
	// per segment), and in any case less than half of what holding its
	// indexes on the heap would take.
	if limit := 2*max(smallCost, 0) + 1<<20; bigCost > limit {
		t.Errorf("opening and reading a %d MiB log grew the heap by %d KiB, a %d MiB log by %d KiB: want at most 2x+1 MiB = %d KiB",
			ftMemBigBytes>>20, bigCost>>10, ftMemSmallBytes>>20, smallCost>>10, limit>>10)
	}
	if growth := bigCost - smallCost; growth > heapIndex/2 {
		t.Errorf("the big log cost %d KiB more heap than the small one, over half of the %d KiB its indexes would take on the heap",
			growth>>10, heapIndex>>10)
	}
}
