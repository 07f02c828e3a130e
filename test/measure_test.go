package e2e

// Measuring a running logd for the load and fault tests: its resident
// memory (VmRSS from /proc), its goroutines (from /debug/pprof on the
// operator port), and a logd built without -race, whose memory is the
// one operators see.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const mib = 1 << 20

// plainLogd builds logd without -race (once per test binary) and returns
// its path: the race detector multiplies memory and CPU, so memory bounds
// are measured on the binary that operators run. Without -race, logdBin
// is that binary already.
func plainLogd(t testing.TB) string {
	t.Helper()
	if !raceEnabled() {
		return logdBin
	}
	plain.once.Do(func() {
		bin := filepath.Join(filepath.Dir(logdBin), "plain", "logd")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "github.com/logd/logd/cmd/logd").CombinedOutput()
		if err != nil {
			plain.err = fmt.Errorf("go build logd without -race: %v\n%s", err, out)
			return
		}
		plain.bin = bin
	})
	if plain.err != nil {
		t.Fatal(plain.err)
	}
	return plain.bin
}

// plain is plainLogd's build, made once.
var plain struct {
	once sync.Once
	bin  string
	err  error
}

// rss returns the resident set size of the process pid: VmRSS of
// /proc/<pid>/status.
func rss(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		kb, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: VmRSS %q: %w", pid, kb, err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS line", pid)
}

// rssSampler samples a process's RSS at a fixed interval, so that a peak
// between two looks is not missed.
type rssSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []uint64
	err     error
}

// sampleRSS samples p's RSS every interval until the test ends or p
// exits.
func (p *process) sampleRSS(t testing.TB, interval time.Duration) *rssSampler {
	t.Helper()
	s := &rssSampler{pid: p.cmd.Process.Pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.take()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				s.take()
			case <-p.exited:
				return
			case <-s.stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(s.stop)
		<-s.done
	})
	return s
}

// take adds a sample. The first error is kept; a process that has
// exited is not sampled.
func (s *rssSampler) take() {
	n, err := rss(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.samples = append(s.samples, n)
}

// mark takes a sample and returns its index: pass it to since for the
// samples from now on.
func (s *rssSampler) mark() int {
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.samples) - 1
}

// since takes a sample and returns the samples from index i on. It fails
// the test if a sample could not be taken.
func (s *rssSampler) since(t testing.TB, i int) []uint64 {
	t.Helper()
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		t.Fatalf("sample RSS: %v", s.err)
	}
	return slices.Clone(s.samples[min(i, len(s.samples)):])
}

// peak is the largest of samples.
func peak(samples []uint64) uint64 {
	if len(samples) == 0 {
		return 0
	}
	return slices.Max(samples)
}

// inMiB formats bytes as MiB, for messages.
func inMiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/mib) }

// goroutines returns the number of goroutines in p, and the profile that
// lists them, from /debug/pprof/goroutine?debug=1 on its operator port.
func (p *process) goroutines(t testing.TB) (int, string) {
	t.Helper()
	code, body := httpGet(t, "http://"+p.HTTPAddr+"/debug/pprof/goroutine?debug=1")
	if code != 200 {
		t.Fatalf("goroutine profile: got HTTP %d, want 200", code)
	}
	first, _, _ := strings.Cut(body, "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if err != nil {
		t.Fatalf("goroutine profile: first line %q: %v", first, err)
	}
	return n, body
}

// waitGoroutines waits until p runs at most n goroutines and returns the
// count. It fails the test, with the profile, if that takes longer than
// timeout.
func (p *process) waitGoroutines(t testing.TB, n int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, profile := p.goroutines(t)
		if got <= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s runs %d goroutines %v on, want at most %d:\n%s", p.name, got, timeout, n, profile)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
