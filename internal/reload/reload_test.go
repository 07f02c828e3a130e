package reload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// value is a reloadable setting: the file's text, swapped in whole, and
// refused when it holds "bad".
type value struct {
	path string
	cur  atomic.Pointer[string]
	n    atomic.Int32 // load attempts
}

func (v *value) load() error {
	v.n.Add(1)
	b, err := os.ReadFile(v.path)
	if err != nil {
		return err
	}
	s := string(b)
	if strings.Contains(s, "bad") {
		return errors.New("bad contents")
	}
	v.cur.Store(&s)
	return nil
}

func newValue(t *testing.T, text string) *value {
	t.Helper()
	v := &value{path: filepath.Join(t.TempDir(), "f")}
	write(t, v.path, text)
	if err := v.load(); err != nil {
		t.Fatal(err)
	}
	v.n.Store(0)
	return v
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckLoadsAChangeOnceItIsStable(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	v := newValue(t, "one")
	w := New(zap.New(core), time.Hour)
	w.Add(Source{Name: "thing", Paths: []string{v.path, ""}, Load: v.load})

	w.Check()
	if v.n.Load() != 0 {
		t.Fatalf("unchanged file loaded %d times", v.n.Load())
	}
	write(t, v.path, "two")
	w.Check() // seen changed: wait one poll for it to settle
	if got := *v.cur.Load(); got != "one" {
		t.Fatalf("loaded %q on the first poll after the change", got)
	}
	write(t, v.path, "three") // still being written
	w.Check()
	if got := *v.cur.Load(); got != "one" {
		t.Fatalf("loaded %q while the file kept changing", got)
	}
	w.Check()
	if got := *v.cur.Load(); got != "three" {
		t.Fatalf("after a stable poll: %q, want three", got)
	}
	w.Check()
	if n := v.n.Load(); n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	ok := logs.FilterMessage("reloaded").All()
	if len(ok) != 1 || ok[0].ContextMap()["source"] != "thing" || ok[0].ContextMap()["trigger"] != string(FileChange) {
		t.Fatalf("reload log lines: %v", ok)
	}
}

func TestFailedReloadKeepsTheOldValue(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	v := newValue(t, "good")
	w := New(zap.New(core), time.Hour)
	var reports []error
	w.OnReload = func(name string, tr Trigger, err error) { reports = append(reports, err) }
	w.Add(Source{Name: "thing", Paths: []string{v.path}, Load: v.load})

	write(t, v.path, "bad")
	w.Check()
	w.Check()
	if got := *v.cur.Load(); got != "good" {
		t.Fatalf("value %q after a failed reload", got)
	}
	w.Check() // the same broken file is not retried every poll
	if n := v.n.Load(); n != 1 {
		t.Fatalf("%d loads of one broken file, want 1", n)
	}
	if len(reports) != 1 || reports[0] == nil {
		t.Fatalf("reports %v", reports)
	}
	if l := logs.FilterMessage("reload failed, keeping the previous one").All(); len(l) != 1 || l[0].ContextMap()["error"] != "bad contents" {
		t.Fatalf("failure log lines: %v", l)
	}

	write(t, v.path, "fixed")
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := *v.cur.Load(); got != "fixed" {
		t.Fatalf("after Reload: %q", got)
	}
	// Reload made the fixed file the baseline: no second load by poll.
	w.Check()
	w.Check()
	if n := v.n.Load(); n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
}

func TestMissingFileCountsAsChangedWhenItReturns(t *testing.T) {
	v := newValue(t, "one")
	w := New(nil, time.Hour)
	w.Add(Source{Name: "thing", Paths: []string{v.path}, Load: v.load})
	os.Remove(v.path)
	w.Check()
	w.Check() // load fails: file missing
	if got := *v.cur.Load(); got != "one" {
		t.Fatalf("value %q", got)
	}
	write(t, v.path, "two")
	w.Check()
	w.Check()
	if got := *v.cur.Load(); got != "two" {
		t.Fatalf("value %q after the file came back", got)
	}
}

func TestRunReloadsOnSignalAndOnChange(t *testing.T) {
	v := newValue(t, "one")
	w := New(nil, 10*time.Millisecond)
	done := make(chan Trigger, 4)
	w.OnReload = func(_ string, tr Trigger, err error) { done <- tr }
	w.Add(Source{Name: "thing", Paths: []string{v.path}, Load: v.load})
	sig := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Run(ctx, sig); close(stopped) }()

	sig <- syscall.SIGHUP
	if tr := wait(t, done); tr != Signal {
		t.Fatalf("trigger %q", tr)
	}
	write(t, v.path, "two")
	if tr := wait(t, done); tr != FileChange {
		t.Fatalf("trigger %q", tr)
	}
	if got := *v.cur.Load(); got != "two" {
		t.Fatalf("value %q", got)
	}
	cancel()
	<-stopped
}

func wait(t *testing.T, c <-chan Trigger) Trigger {
	t.Helper()
	select {
	case tr := <-c:
		return tr
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
		return ""
	}
}
