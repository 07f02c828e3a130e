// Package faultfs is a log.FS for tests that injects storage faults by
// rule, over a real file system: a full disk (ENOSPC, including short
// writes that leave part of the data in the file), I/O errors (EIO) on
// write and fsync, failures to create, truncate or map a file, and
// healing ("space returns"). It also remembers how much of each file the
// last successful fsync covered, so that a test can drop the rest as a
// power loss would (DropUnsynced).
//
// A Rule names the calls it fails (an Op, optionally only files whose path
// ends with a suffix) and how: after letting Skip matching calls through,
// it fails Count of them (or all, while it is in force) with Err. Rules are
// tried in the order they were added; the first that matches fails the
// call. Fill models a disk that holds only so many more bytes: the write
// that passes the limit writes what fits and fails with ENOSPC, and so do
// the writes and file creations after it. Heal removes every rule and the
// limit.
//
// Injected errors look like the operating system's: an *os.PathError
// with the operation ("write", "fdatasync", "open", "truncate", "mmap",
// "sync") and the path, wrapping Err, so errors.Is(err, syscall.ENOSPC)
// holds for a full disk.
//
// It is for tests only (of internal/log and of what serves it):
//
//	ffs := faultfs.New(nil)
//	cfg.FS = ffs // a log.Config
//	ffs.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".store", Err: syscall.ENOSPC, Short: -1})
//	// ... appends fail with ENOSPC, half a frame written ...
//	ffs.Heal()
//
// An FS and its files are safe for concurrent use, as log.FS requires;
// rules may be added and removed while a log uses the FS.
package faultfs

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/logd/logd/internal/log"
)

// Op is a kind of file-system call a Rule can fail; Ops may be ORed.
type Op uint

const (
	// Write is File.WriteAt.
	Write Op = 1 << iota
	// Sync is File.Sync (fdatasync).
	Sync
	// Create is FS.OpenFile with os.O_CREATE (a new segment's store, an
	// index written at a roll-over or close).
	Create
	// Truncate is File.Truncate (the log cuts a failed write back).
	Truncate
	// Map is FS.MapFile (a sealed segment's index).
	Map
	// SyncDir is FS.SyncDir.
	SyncDir
)

// pathOps are the operation names of the errors the FS returns, as the
// operating system's would read.
var pathOps = map[Op]string{
	Write: "write", Sync: "fdatasync", Create: "open", Truncate: "truncate", Map: "mmap", SyncDir: "sync",
}

// String returns the Op's operation name ("write", "fdatasync", ...).
func (o Op) String() string {
	if s, ok := pathOps[o]; ok {
		return s
	}
	return "ops(" + strings.Join(o.names(), "|") + ")"
}

func (o Op) names() []string {
	var names []string
	for op := Write; op <= SyncDir; op <<= 1 {
		if o&op != 0 {
			names = append(names, pathOps[op])
		}
	}
	return names
}

// Rule is a fault to inject.
type Rule struct {
	// Op is the calls the rule fails: one Op or several ORed.
	Op Op
	// Suffix, if set, limits the rule to files whose path ends with it
	// (".store", ".index").
	Suffix string
	// Err is the error the calls fail with (wrapped in an *os.PathError);
	// nil means syscall.EIO.
	Err error
	// Skip is how many matching calls the rule lets through before it
	// fails any.
	Skip int
	// Count is how many calls the rule fails before it is spent; zero
	// means every matching call, until the rule is removed.
	Count int
	// Short is, for Write, how many bytes of the failing write reach the
	// file before the error (at most all but one: it is a short write);
	// negative means half of them. Zero writes nothing.
	Short int
	// Before, if set, runs in each call the rule fails, before it fails
	// (without the FS's lock held): a test can hold the call there.
	Before func(op Op, path string)
}

// rule is a Rule in force, with its counts. Guarded by FS.mu.
type rule struct {
	Rule
	seen, failed int
}

// FS is a log.FS that injects faults into the calls it passes to a base
// FS. The zero value is not usable: call New.
type FS struct {
	base log.FS

	mu sync.Mutex
	// The fields below are guarded by mu.
	rules    []*rule
	space    int64             // bytes writes may still add; negative: no limit
	files    map[string]*state // what the FS knows of each file it opened
	calls    map[Op]int
	injected int
}

// state is what the FS knows of a file. Guarded by FS.mu.
type state struct {
	synced int64 // size covered by the last successful fsync
}

var _ log.FS = (*FS)(nil)

// New returns an FS that passes calls to base (nil means log.OSFS), with
// no rule and no space limit.
func New(base log.FS) *FS {
	if base == nil {
		base = log.OSFS{}
	}
	return &FS{base: base, space: -1, files: map[string]*state{}, calls: map[Op]int{}}
}

// Add puts r in force and returns a function that removes it.
func (f *FS) Add(r Rule) (remove func()) {
	if r.Err == nil {
		r.Err = syscall.EIO
	}
	nr := &rule{Rule: r}
	f.mu.Lock()
	f.rules = append(f.rules, nr)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, x := range f.rules {
			if x == nr {
				f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
				return
			}
		}
	}
}

// Fill makes the disk full once writes have added n more bytes: the
// write that passes the limit writes what fits and fails with ENOSPC, and
// every write and file creation after it fails with ENOSPC, until Heal.
// Bytes count as written whether they extend a file or overwrite it, and
// truncating a file gives none back.
func (f *FS) Fill(n int64) {
	f.mu.Lock()
	f.space = max(n, 0)
	f.mu.Unlock()
}

// Heal removes every rule and the space limit: calls pass from now on.
func (f *FS) Heal() {
	f.mu.Lock()
	f.rules = nil
	f.space = -1
	f.mu.Unlock()
}

// Injected returns how many calls the FS has failed.
func (f *FS) Injected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected
}

// Calls returns how many calls of op (one Op) the FS has seen, failed or
// not; OpenFile counts as Create only with os.O_CREATE.
func (f *FS) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// fault is how a call is to fail.
type fault struct {
	err    error // an *os.PathError
	short  int   // Rule.Short
	before func(Op, string)
}

// check returns the fault for a call of op on path, or nil if the call is
// to pass, counting it in the rules it matches.
func (f *FS) check(op Op, path string) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for _, r := range f.rules {
		if r.Op&op == 0 || !strings.HasSuffix(path, r.Suffix) {
			continue
		}
		if r.Count > 0 && r.failed >= r.Count {
			continue
		}
		r.seen++
		if r.seen <= r.Skip {
			continue
		}
		r.failed++
		f.injected++
		return &fault{err: &os.PathError{Op: op.String(), Path: path, Err: r.Err}, short: r.Short, before: r.Before}
	}
	if op == Create && f.space == 0 {
		f.injected++
		return &fault{err: &os.PathError{Op: op.String(), Path: path, Err: syscall.ENOSPC}}
	}
	return nil
}

// fail runs the fault's Before hook and returns its error.
func (flt *fault) fail(op Op, path string) error {
	if flt.before != nil {
		flt.before(op, path)
	}
	return flt.err
}

// OpenFile opens name through the base FS; with os.O_CREATE it is a
// Create call.
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (log.File, error) {
	if flag&os.O_CREATE != 0 {
		if flt := f.check(Create, name); flt != nil {
			return nil, flt.fail(Create, name)
		}
	}
	file, err := f.base.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	size := int64(0)
	if flag&os.O_TRUNC == 0 {
		if size, err = file.Size(); err != nil {
			file.Close()
			return nil, err
		}
	}
	f.mu.Lock()
	st, ok := f.files[name]
	if !ok || flag&os.O_TRUNC != 0 {
		// A file the FS did not write is taken as durable as it is.
		st = &state{synced: size}
		f.files[name] = st
	}
	f.mu.Unlock()
	return &faultFile{File: file, fs: f, name: name, st: st}, nil
}

// ReadDir passes to the base FS.
func (f *FS) ReadDir(name string) ([]os.DirEntry, error) { return f.base.ReadDir(name) }

// MkdirAll passes to the base FS.
func (f *FS) MkdirAll(name string, perm os.FileMode) error { return f.base.MkdirAll(name, perm) }

// Remove passes to the base FS and forgets the file.
func (f *FS) Remove(name string) error {
	err := f.base.Remove(name)
	if err == nil {
		f.mu.Lock()
		delete(f.files, name)
		f.mu.Unlock()
	}
	return err
}

// RemoveAll passes to the base FS and forgets the files under name.
func (f *FS) RemoveAll(name string) error {
	err := f.base.RemoveAll(name)
	if err == nil {
		f.forget(name)
	}
	return err
}

// Rename passes to the base FS; the FS forgets the files it renamed.
func (f *FS) Rename(oldname, newname string) error {
	err := f.base.Rename(oldname, newname)
	if err == nil {
		f.forget(oldname)
		f.forget(newname)
	}
	return err
}

// forget drops what the FS knows of name and of the files under it.
func (f *FS) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.files {
		if p == name || strings.HasPrefix(p, name+string(os.PathSeparator)) {
			delete(f.files, p)
		}
	}
}

// SyncDir is a SyncDir call.
func (f *FS) SyncDir(name string) error {
	if flt := f.check(SyncDir, name); flt != nil {
		return flt.fail(SyncDir, name)
	}
	return f.base.SyncDir(name)
}

// MapFile is a Map call.
func (f *FS) MapFile(name string) ([]byte, func() error, error) {
	if flt := f.check(Map, name); flt != nil {
		return nil, nil, flt.fail(Map, name)
	}
	return f.base.MapFile(name)
}

// DropUnsynced cuts every file the FS has opened back to the size its
// last successful fsync covered, as a power loss may leave it (files the
// FS did not write count as fsynced as it found them). Call it while no
// log uses the files, then open the log again to see what it recovers.
// Directory entries are not modelled: a file created and never fsynced
// stays, empty.
func (f *FS) DropUnsynced() error {
	f.mu.Lock()
	sizes := make(map[string]int64, len(f.files))
	for p, st := range f.files {
		sizes[p] = st.synced
	}
	f.mu.Unlock()
	var errs []error
	for p, n := range sizes {
		file, err := f.base.OpenFile(p, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if size, err := file.Size(); err != nil {
			errs = append(errs, err)
		} else if size > n {
			errs = append(errs, file.Truncate(n))
		}
		errs = append(errs, file.Close())
	}
	return errors.Join(errs...)
}

// faultFile is a file opened through an FS.
type faultFile struct {
	log.File
	fs   *FS
	name string
	st   *state
}

// WriteAt is a Write call; it also takes its bytes from the space left
// (see FS.Fill).
func (w *faultFile) WriteAt(p []byte, off int64) (int, error) {
	f := w.fs
	if flt := f.check(Write, w.name); flt != nil {
		n := min(flt.short, len(p)-1)
		if flt.short < 0 {
			n = len(p) / 2
		}
		if n > 0 {
			n, _ = w.File.WriteAt(p[:n], off)
		}
		return max(n, 0), flt.fail(Write, w.name)
	}
	f.mu.Lock()
	fits := len(p)
	if f.space >= 0 {
		fits = int(min(int64(len(p)), f.space))
		f.space -= int64(fits)
		if fits < len(p) {
			f.injected++
		}
	}
	f.mu.Unlock()
	if fits == len(p) {
		return w.File.WriteAt(p, off)
	}
	n := 0
	if fits > 0 {
		n, _ = w.File.WriteAt(p[:fits], off)
	}
	return n, &os.PathError{Op: Write.String(), Path: w.name, Err: syscall.ENOSPC}
}

// Sync is a Sync call. On success the file's size counts as fsynced.
func (w *faultFile) Sync() error {
	if flt := w.fs.check(Sync, w.name); flt != nil {
		return flt.fail(Sync, w.name)
	}
	// Bytes written while the fsync runs may not be covered: take the size
	// before it.
	size, err := w.File.Size()
	if err != nil {
		return err
	}
	if err := w.File.Sync(); err != nil {
		return err
	}
	w.fs.mu.Lock()
	w.st.synced = max(w.st.synced, size)
	w.fs.mu.Unlock()
	return nil
}

// Truncate is a Truncate call.
func (w *faultFile) Truncate(size int64) error {
	if flt := w.fs.check(Truncate, w.name); flt != nil {
		return flt.fail(Truncate, w.name)
	}
	if err := w.File.Truncate(size); err != nil {
		return err
	}
	w.fs.mu.Lock()
	w.st.synced = min(w.st.synced, size)
	w.fs.mu.Unlock()
	return nil
}
