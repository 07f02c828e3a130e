package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	entryWidth  = 12
	storeSuffix = ".store"
	indexSuffix = ".index"
)

// segment is a store file and its index. All fields but base, the paths
// and store are guarded by Log.mu; store's ReadAt may be called without it.
type segment struct {
	base      uint64
	storePath string
	indexPath string
	store     File

	size      int64 // bytes of good frames in store
	n         int   // records in the segment
	lastNanos int64 // append time of the newest record, 0 if none
	writeback int64 // store bytes handed to write-back; see startWriteback

	// The active segment's index lives in positions; a sealed segment's in
	// mapped, a read-only mapping of its index file.
	positions []int64
	mapped    []byte
	unmap     func() error
}

func segmentName(dir string, base uint64, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, suffix))
}

// parseSegmentName returns the base offset and suffix of a segment file
// name, or ok == false for any other name.
func parseSegmentName(name string) (base uint64, suffix string, ok bool) {
	for _, sfx := range []string{storeSuffix, indexSuffix} {
		stem, found := strings.CutSuffix(name, sfx)
		if !found || len(stem) != 20 {
			continue
		}
		b, err := strconv.ParseUint(stem, 10, 64)
		if err != nil {
			return 0, "", false
		}
		return b, sfx, true
	}
	return 0, "", false
}

func newSegment(dir string, base uint64) *segment {
	return &segment{
		base:      base,
		storePath: segmentName(dir, base, storeSuffix),
		indexPath: segmentName(dir, base, indexSuffix),
	}
}

// createSegment creates an empty active segment at base.
func createSegment(fsys FS, dir string, base uint64) (*segment, error) {
	s := newSegment(dir, base)
	if err := fsys.Remove(s.indexPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	f, err := fsys.OpenFile(s.storePath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	s.store = f
	return s, nil
}

func (s *segment) next() uint64 { return s.base + uint64(s.n) }

// position returns where record i (relative) starts in the store.
func (s *segment) position(i int) int64 {
	if s.mapped != nil {
		return int64(binary.BigEndian.Uint64(s.mapped[i*entryWidth+4:]))
	}
	return s.positions[i]
}

// end returns where record i (relative) ends in the store.
func (s *segment) end(i int) int64 {
	if i+1 < s.n {
		return s.position(i + 1)
	}
	return s.size
}

// encodeIndex returns the index file contents for the active positions.
func (s *segment) encodeIndex() []byte {
	b := make([]byte, len(s.positions)*entryWidth)
	for i, p := range s.positions {
		e := b[i*entryWidth:]
		binary.BigEndian.PutUint32(e[0:4], uint32(i))
		binary.BigEndian.PutUint64(e[4:12], uint64(p))
	}
	return b
}

// writeIndex writes the in-memory index to the index file and fsyncs it.
// If the fsync fails, the error is an fsyncError.
func (s *segment) writeIndex(fsys FS) error {
	f, err := fsys.OpenFile(s.indexPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(s.encodeIndex(), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fsyncError{err}
	}
	return f.Close()
}

// fsyncError is a failed fsync, which must fail the log (see ErrFailed),
// where other errors of the same call need not.
type fsyncError struct{ err error }

func (e fsyncError) Error() string { return "fsync: " + e.err.Error() }
func (e fsyncError) Unwrap() error { return e.err }

// mapIndex replaces the in-memory index by a mapping of the index file.
func (s *segment) mapIndex(fsys FS) error {
	data, unmap, err := fsys.MapFile(s.indexPath)
	if err != nil {
		return err
	}
	if len(data) != s.n*entryWidth {
		unmap()
		return fmt.Errorf("log: index %s: %d bytes, want %d", s.indexPath, len(data), s.n*entryWidth)
	}
	s.mapped, s.unmap, s.positions = data, unmap, nil
	return nil
}

// seal makes the segment durable and read-only: fsync the store, write
// and fsync the index, map it.
func (s *segment) seal(fsys FS) error {
	if err := s.store.Sync(); err != nil {
		return err
	}
	if err := s.writeIndex(fsys); err != nil {
		return err
	}
	return s.mapIndex(fsys)
}

// close releases the mapping and the store file.
func (s *segment) close() error {
	var err error
	if s.unmap != nil {
		err = s.unmap()
		s.unmap, s.mapped = nil, nil
	}
	if s.store != nil {
		if cerr := s.store.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// remove closes the segment and deletes its files.
func (s *segment) remove(fsys FS) error {
	err := s.close()
	for _, p := range []string{s.storePath, s.indexPath} {
		if rerr := fsys.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return err
}
