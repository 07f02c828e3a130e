package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Timeouts for the processes the harness runs.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	buildTimeout = 10 * time.Minute
)

// build compiles the main packages pkgs (import paths) into dir and
// returns the binaries' paths, in the same order.
func build(ctx context.Context, dir string, race bool, pkgs ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, pkgs...)
	out, err := exec.CommandContext(ctx, goCommand(), args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	var bins []string
	for _, p := range pkgs {
		bins = append(bins, filepath.Join(dir, path.Base(p)))
	}
	return bins, nil
}

// goCommand is the go command on PATH, else the one of this binary's
// GOROOT.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// server is a running logd or ceiling process; its stderr goes to a file.
type server struct {
	name     string // "logd" or "ceiling"
	logPath  string
	addr     string // gRPC
	httpAddr string // logd's operator HTTP (pprof); "" for the ceiling
	cmd      *exec.Cmd
	exited   chan struct{} // closed once Wait returned
	waitErr  error         // set before exited is closed
}

// addrs picks listen addresses out of a server's log; it reports whether
// the server serves.
type addrs func(log []byte, s *server) bool

// logdAddrs reads logd's JSON log lines "operator HTTP listening" and
// "serving".
func logdAddrs(log []byte, s *server) bool {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
			HTTPAddr string `json:"http_addr"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Msg {
		case "operator HTTP listening":
			s.httpAddr = l.HTTPAddr
		case "serving":
			s.addr = l.GRPCAddr
			return true
		}
	}
	return false
}

// ceilingAddrs reads the ceiling's line "serving ADDR".
func ceilingAddrs(log []byte, s *server) bool {
	for line := range strings.Lines(string(log)) {
		if addr, ok := strings.CutPrefix(strings.TrimSpace(line), "serving "); ok {
			s.addr = addr
			return true
		}
	}
	return false
}

// start runs bin with args, its stdout and stderr going to logPath, and
// waits until found sees in that file that it serves.
func start(ctx context.Context, name, bin string, args []string, logPath string, found addrs) (*server, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own descriptor
	s := &server{name: name, logPath: logPath, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	// If the harness dies, so do the servers.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(startTimeout)
	for {
		if b, err := os.ReadFile(logPath); err == nil && found(b, s) {
			return s, nil
		}
		select {
		case <-tick.C:
		case <-s.exited:
			return nil, fmt.Errorf("%s exited before serving: %v (log: %s)", name, s.waitErr, logPath)
		case <-deadline:
			s.kill()
			return nil, fmt.Errorf("%s did not serve within %v (log: %s)", name, startTimeout, logPath)
		case <-ctx.Done():
			s.kill()
			return nil, ctx.Err()
		}
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func (s *server) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s VmHWM %q: %w", s.name, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no VmHWM in /proc/%d/status", s.name, s.cmd.Process.Pid)
}

// cpuUsage is the CPU time a process has used, all threads together.
type cpuUsage struct{ user, sys time.Duration }

func (u cpuUsage) sub(v cpuUsage) cpuUsage { return cpuUsage{u.user - v.user, u.sys - v.sys} }
func (u cpuUsage) total() time.Duration    { return u.user + u.sys }

// cpuTime returns the process's CPU time from /proc/PID/stat (in USER_HZ
// ticks of 10 ms).
func (s *server) cpuTime() (cpuUsage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return cpuUsage{}, err
	}
	// The fields after the command name, which is in parentheses:
	// state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return cpuUsage{}, fmt.Errorf("%s: /proc/%d/stat: unexpected format", s.name, s.cmd.Process.Pid)
	}
	var ticks [2]time.Duration
	for j, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cpuUsage{}, fmt.Errorf("%s: /proc/%d/stat: %w", s.name, s.cmd.Process.Pid, err)
		}
		const userHZ = 100
		ticks[j] = time.Duration(n) * (time.Second / userHZ)
	}
	return cpuUsage{user: ticks[0], sys: ticks[1]}, nil
}

// stop sends SIGTERM and waits for a clean exit; past stopTimeout it
// kills the process and fails.
func (s *server) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.kill()
		return fmt.Errorf("%s did not stop within %v after SIGTERM; killed (log: %s)", s.name, stopTimeout, s.logPath)
	}
	if s.waitErr != nil {
		return fmt.Errorf("%s: %w (log: %s)", s.name, s.waitErr, s.logPath)
	}
	return nil
}

// kill ends the process at once, if it runs, and waits for it.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}
