package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the storage engine. BenchmarkRawAppend is the floor the
// append benchmarks are measured against: the same bytes written to a plain
// file with the same write pattern (one pwrite per record at the growing
// end), with no framing work, no index and no lock.
//
// Targets, for 256-byte records on a 2-core machine: Append with SyncNone
// at 50% or more of RawAppend's records/s; SyncAlways with 16 appenders at
// 10x or more the records/s of one appender (group commit: see the
// records/fsync metric, at most 16); random reads at 300,000 records/s or
// more.

var benchSizes = []int{256, 4096}

// benchValue returns a value of n bytes that is not all zeros.
func benchValue(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(i*7 + 1)
	}
	return v
}

// benchRate reports records/s for records done in the timed part of b.
func benchRate(b *testing.B, records int) {
	b.Helper()
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(records)/s, "records/s")
	}
}

// benchOpen opens a log in a fresh directory of b with the default
// configuration changed by edit, and closes it when b ends.
func benchOpen(b *testing.B, edit func(*Config)) *Log {
	b.Helper()
	cfg := DefaultConfig(b.TempDir())
	if edit != nil {
		edit(&cfg)
	}
	l, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Close(); err != nil {
			b.Error(err)
		}
	})
	return l
}

func BenchmarkRawAppend(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			value := benchValue(size)
			// A prefix as long as the log's frame header, so that both
			// write the same number of bytes per record.
			buf := make([]byte, 0, headerSize+size)
			var at int64
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				buf = buf[:headerSize]
				binary.BigEndian.PutUint32(buf, uint32(len(value)))
				buf = append(buf, value...)
				if _, err := f.WriteAt(buf, at); err != nil {
					b.Fatal(err)
				}
				at += int64(len(buf))
			}
			b.StopTimer()
			benchRate(b, b.N)
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	b.Run("sync=none", func(b *testing.B) {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
				l := benchOpen(b, func(c *Config) { c.Sync = SyncNone })
				value := benchValue(size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := l.Append(value); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				benchRate(b, b.N)
			})
		}
	})
	b.Run("sync=always", func(b *testing.B) {
		for _, size := range benchSizes {
			for _, appenders := range []int{1, 16} {
				b.Run(fmt.Sprintf("size=%d/appenders=%d", size, appenders), func(b *testing.B) {
					benchAppendConcurrent(b, size, appenders)
				})
			}
		}
	})
}

// benchSyncFS is the operating system's file system, counting the fsyncs
// of the files it opens and the time they take.
type benchSyncFS struct {
	OSFS
	*benchSyncs
}

type benchSyncs struct {
	n, nanos atomic.Int64
}

func (fsys benchSyncFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fsys.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return benchSyncFile{f, fsys.benchSyncs}, nil
}

type benchSyncFile struct {
	File
	syncs *benchSyncs
}

func (f benchSyncFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	f.syncs.nanos.Add(int64(time.Since(start)))
	f.syncs.n.Add(1)
	return err
}

// benchAppendConcurrent runs b.N appends with SyncAlways, split between
// the given number of goroutines, and reports how many records an fsync
// covers on average.
func benchAppendConcurrent(b *testing.B, size, appenders int) {
	syncs := new(benchSyncs)
	l := benchOpen(b, func(c *Config) {
		c.Sync = SyncAlways
		c.FS = benchSyncFS{benchSyncs: syncs}
	})
	value := benchValue(size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	errs := make(chan error, appenders)
	var wg sync.WaitGroup
	b.ResetTimer()
	syncs.n.Store(0)
	syncs.nanos.Store(0)
	for g := range appenders {
		n := b.N / appenders
		if g < b.N%appenders {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if _, err := l.Append(value); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	benchRate(b, b.N)
	if n := syncs.n.Load(); n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "records/fsync")
		b.ReportMetric(float64(syncs.nanos.Load())/float64(n)/1e3, "µs/fsync")
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	const batch = 64
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("sync=none/size=%d/batch=%d", size, batch), func(b *testing.B) {
			l := benchOpen(b, func(c *Config) { c.Sync = SyncNone })
			values := make([][]byte, batch)
			for i := range values {
				values[i] = benchValue(size)
			}
			b.SetBytes(int64(size * batch))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := l.AppendBatch(values); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			benchRate(b, b.N*batch)
		})
	}
}

// benchReadRecords is how many 256-byte records BenchmarkRead prefills,
// in segments of benchReadSegment bytes.
const (
	benchReadRecords = 200_000
	benchReadSize    = 256
	benchReadSegment = 8 << 20
)

// benchPrefill opens a log in b's directory filled with records of size
// bytes across several segments.
func benchPrefill(b *testing.B, records, size int) *Log {
	b.Helper()
	l := benchOpen(b, func(c *Config) {
		c.Sync = SyncNone
		c.MaxStoreBytes = benchReadSegment
	})
	value := benchValue(size)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = value
	}
	for n := 0; n < records; n += len(batch) {
		if _, err := l.AppendBatch(batch[:min(len(batch), records-n)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	if st := l.Stats(); st.Segments < 4 || st.Next != uint64(records) {
		b.Fatalf("prefill: %+v, want %d records in 4 or more segments", st, records)
	}
	return l
}

func BenchmarkRead(b *testing.B) {
	l := benchPrefill(b, benchReadRecords, benchReadSize)
	b.Run("sequential", func(b *testing.B) {
		b.SetBytes(benchReadSize)
		b.ReportAllocs()
		b.ResetTimer()
		r := l.NewReader(0)
		for range b.N {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				r = l.NewReader(0)
				rec, err = r.Next()
			}
			if err != nil {
				b.Fatal(err)
			}
			if len(rec.Value) != benchReadSize {
				b.Fatalf("offset %d: %d bytes", rec.Offset, len(rec.Value))
			}
		}
		b.StopTimer()
		benchRate(b, b.N)
	})
	b.Run("random", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		b.SetBytes(benchReadSize)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			off := rng.Uint64N(benchReadRecords)
			rec, err := l.Read(off)
			if err != nil {
				b.Fatal(err)
			}
			if rec.Offset != off || len(rec.Value) != benchReadSize {
				b.Fatalf("offset %d: got offset %d, %d bytes", off, rec.Offset, len(rec.Value))
			}
		}
		b.StopTimer()
		benchRate(b, b.N)
	})
}

// BenchmarkPipelinedAppend appends one record at a time as a ProduceStream
// does: start an append, and wait for the one started window appends
// before. window=1 waits for each at once, one write call per record (the
// baseline: how every append was written before writes were shared);
// larger windows let one wait write every append pending.
func BenchmarkPipelinedAppend(b *testing.B) {
	const size = 256
	for _, policy := range []SyncPolicy{SyncNone, SyncAlways} {
		for _, window := range []int{1, 64} {
			b.Run(fmt.Sprintf("sync=%s/window=%d", policy, window), func(b *testing.B) {
				l := benchOpen(b, func(c *Config) { c.Sync = policy })
				value := [][]byte{benchValue(size)}
				inflight := make([]Pending, 0, window)
				b.SetBytes(size)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if len(inflight) == window {
						if err := inflight[0].Wait(); err != nil {
							b.Fatal(err)
						}
						inflight = append(inflight[:0], inflight[1:]...)
					}
					p, err := l.StartAppend(value)
					if err != nil {
						b.Fatal(err)
					}
					inflight = append(inflight, p)
				}
				for _, p := range inflight {
					if err := p.Wait(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				benchRate(b, b.N)
			})
		}
	}
}

// BenchmarkRawSync is the floor of an append under --sync always with one
// appender: a frame's bytes written to a plain file and an fdatasync, as
// the log does them, with nothing else. Compare BenchmarkPipelinedAppend
// sync=always/window=1, the log's own.
func BenchmarkRawSync(b *testing.B) {
	const size = 256
	f, err := OSFS{}.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, headerSize+size)
	var at int64
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if _, err := f.WriteAt(buf, at); err != nil {
			b.Fatal(err)
		}
		at += int64(len(buf))
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	benchRate(b, b.N)
}
