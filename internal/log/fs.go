package log

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// FS is the small file-system surface the log uses. OSFS is the real one;
// tests wrap it to inject faults (a full disk, failing writes or fsyncs).
// Implementations must be safe for concurrent use.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	ReadDir(name string) ([]os.DirEntry, error)
	MkdirAll(name string, perm os.FileMode) error
	Remove(name string) error
	RemoveAll(name string) error
	// Rename renames a file or directory, replacing newname if it is a
	// file or an empty directory.
	Rename(oldname, newname string) error
	// SyncDir fsyncs a directory, making file creations and removals in it
	// durable.
	SyncDir(name string) error
	// MapFile maps a whole file read-only. unmap releases the mapping; the
	// data must not be used after it.
	MapFile(name string) (data []byte, unmap func() error, err error)
}

// File is an open file. ReadAt must be safe to call concurrently with
// everything, including Close (it then fails).
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync flushes written data to stable storage (fdatasync).
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
}

// OSFS is the operating system's file system.
type OSFS struct{}

var _ FS = OSFS{}

// OpenFile opens name with os.OpenFile.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &osFile{File: f, rc: rc}, nil
}

// ReadDir reads a directory with os.ReadDir.
func (OSFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

// MkdirAll creates a directory with os.MkdirAll.
func (OSFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(name, perm) }

// Remove removes a file with os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// RemoveAll removes a tree with os.RemoveAll.
func (OSFS) RemoveAll(name string) error { return os.RemoveAll(name) }

// Rename renames a file or directory with os.Rename.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// SyncDir opens the directory and fsyncs it.
func (OSFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MapFile maps name read-only with mmap(2). An empty file maps to nil.
func (OSFS) MapFile(name string) ([]byte, func() error, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() == 0 {
		return nil, func() error { return nil }, nil
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: name, Err: err}
	}
	return data, func() error { return unix.Munmap(data) }, nil
}

// osFile is an *os.File whose Sync is fdatasync: the log never depends on
// file metadata other than the size, which fdatasync covers.
// The descriptor is used through syscall.RawConn, which keeps it from being
// closed (and its number reused) while fdatasync runs.
type osFile struct {
	*os.File
	rc syscall.RawConn
}

func (f *osFile) Sync() error {
	var err error
	cerr := f.rc.Control(func(fd uintptr) {
		for {
			err = unix.Fdatasync(int(fd))
			if err != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: cerr}
	}
	if err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	return nil
}

// writebacker is a File that can start writing its dirty pages to the
// device without waiting for them (osFile). It is optional: the log only
// uses it to spread out the work of later fsyncs.
type writebacker interface {
	StartWriteback(off, n int64) error
}

// StartWriteback starts write-back of bytes [off, off+n) with
// sync_file_range(2) SYNC_FILE_RANGE_WRITE, which neither waits for the
// device nor consumes a write-back error that a later fsync must report.
func (f *osFile) StartWriteback(off, n int64) error {
	var err error
	cerr := f.rc.Control(func(fd uintptr) {
		err = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

func (f *osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
