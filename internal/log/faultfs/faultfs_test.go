package faultfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/logd/logd/internal/log"
)

// open creates name in a fresh directory through f.
func open(t *testing.T, f *FS, name string) (log.File, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	file, err := f.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("OpenFile(%s): %v", p, err)
	}
	t.Cleanup(func() { file.Close() })
	return file, p
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestRuleShortWrite(t *testing.T) {
	for _, tt := range []struct {
		name  string
		short int
		want  int
	}{
		{"nothing", 0, 0},
		{"some", 5, 5},
		{"half", -1, 10},
		{"at most all but one", 100, 19},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := New(nil)
			f.Add(Rule{Op: Write, Err: syscall.ENOSPC, Short: tt.short})
			file, p := open(t, f, "x.store")
			n, err := file.WriteAt(make([]byte, 20), 0)
			var pe *os.PathError
			if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &pe) || pe.Op != "write" || pe.Path != p {
				t.Fatalf("WriteAt error = %v, want *os.PathError write %s: ENOSPC", err, p)
			}
			if n != tt.want {
				t.Errorf("WriteAt wrote %d bytes, want %d", n, tt.want)
			}
			if got := fileSize(t, p); got != int64(tt.want) {
				t.Errorf("file holds %d bytes, want %d", got, tt.want)
			}
			if got := f.Injected(); got != 1 {
				t.Errorf("Injected = %d, want 1", got)
			}
		})
	}
}

func TestRuleSkipCountSuffixRemove(t *testing.T) {
	f := New(nil)
	f.Add(Rule{Op: Sync | Truncate, Suffix: ".index", Skip: 1, Count: 2})
	store, _ := open(t, f, "a.store")
	index, _ := open(t, f, "a.index")
	if err := store.Sync(); err != nil {
		t.Fatalf("store Sync (other suffix) = %v, want nil", err)
	}
	var got []bool
	for range 4 {
		got = append(got, index.Sync() != nil)
	}
	if want := []bool{false, true, true, false}; !slices.Equal(got, want) {
		t.Fatalf("index Sync failures = %v, want %v (skip 1, fail 2)", got, want)
	}
	remove := f.Add(Rule{Op: Truncate})
	if err := index.Truncate(0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Truncate = %v, want EIO (the default error)", err)
	}
	remove()
	if err := index.Truncate(0); err != nil {
		t.Fatalf("Truncate after the rule was removed = %v", err)
	}
}

func TestRuleBefore(t *testing.T) {
	f := New(nil)
	var calls []string
	f.Add(Rule{Op: Map | SyncDir | Create, Before: func(op Op, path string) {
		calls = append(calls, op.String()+" "+filepath.Base(path))
	}})
	dir := t.TempDir()
	if _, _, err := f.MapFile(filepath.Join(dir, "m")); err == nil {
		t.Fatal("MapFile passed")
	}
	if err := f.SyncDir(dir); err == nil {
		t.Fatal("SyncDir passed")
	}
	if _, err := f.OpenFile(filepath.Join(dir, "c"), os.O_RDWR|os.O_CREATE, 0o644); err == nil {
		t.Fatal("OpenFile with O_CREATE passed")
	}
	want := []string{"mmap m", "sync " + filepath.Base(dir), "open c"}
	if !slices.Equal(calls, want) {
		t.Fatalf("Before saw %q, want %q", calls, want)
	}
}

func TestFillAndHeal(t *testing.T) {
	f := New(nil)
	file, p := open(t, f, "x.store")
	f.Fill(30)
	if _, err := file.WriteAt(make([]byte, 20), 0); err != nil {
		t.Fatalf("first write within the space: %v", err)
	}
	n, err := file.WriteAt(make([]byte, 20), 20)
	if !errors.Is(err, syscall.ENOSPC) || n != 10 {
		t.Fatalf("write past the space = (%d, %v), want (10, ENOSPC)", n, err)
	}
	if got := fileSize(t, p); got != 30 {
		t.Fatalf("file holds %d bytes, want 30", got)
	}
	if n, err := file.WriteAt([]byte{1}, 30); !errors.Is(err, syscall.ENOSPC) || n != 0 {
		t.Fatalf("write on a full disk = (%d, %v), want (0, ENOSPC)", n, err)
	}
	if _, err := f.OpenFile(filepath.Join(filepath.Dir(p), "y"), os.O_RDWR|os.O_CREATE, 0o644); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("create on a full disk = %v, want ENOSPC", err)
	}
	f.Heal()
	if _, err := file.WriteAt(make([]byte, 100), 30); err != nil {
		t.Fatalf("write after Heal: %v", err)
	}
	if got := f.Injected(); got != 3 {
		t.Errorf("Injected = %d, want 3", got)
	}
}

func TestDropUnsynced(t *testing.T) {
	f := New(nil)
	file, p := open(t, f, "x.store")
	file.WriteAt(make([]byte, 100), 0)
	if err := file.Sync(); err != nil {
		t.Fatal(err)
	}
	file.WriteAt(make([]byte, 50), 100)
	f.Add(Rule{Op: Sync, Count: 1})
	if err := file.Sync(); err == nil {
		t.Fatal("Sync passed the rule")
	}
	if err := file.Truncate(120); err != nil {
		t.Fatal(err)
	}
	file.WriteAt(make([]byte, 30), 120)
	file.Close()

	// A file the FS found on disk counts as durable.
	old := filepath.Join(filepath.Dir(p), "old.store")
	if err := os.WriteFile(old, make([]byte, 70), 0o644); err != nil {
		t.Fatal(err)
	}
	of, err := f.OpenFile(old, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	of.WriteAt(make([]byte, 10), 70)
	of.Close()

	if err := f.DropUnsynced(); err != nil {
		t.Fatalf("DropUnsynced: %v", err)
	}
	if got := fileSize(t, p); got != 100 {
		t.Errorf("written file: %d bytes after DropUnsynced, want 100 (its last fsync)", got)
	}
	if got := fileSize(t, old); got != 70 {
		t.Errorf("found file: %d bytes after DropUnsynced, want 70 (as found)", got)
	}
}
