package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole harness with tiny trials, so that it cannot
// rot: it checks that the report is a well-formed table with a rate for
// every workload on both servers, not that logd meets the targets (tiny
// trials on a loaded machine say nothing about that).
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs logd and the ceiling")
	}
	args := []string{"-trial", "150ms", "-warmup", "50ms", "-trials", "3", "-consume-records", "2000"}
	if raceBuild {
		args = append(args, "-race")
	}
	// The harness's temporary directory (kept if it fails) goes away
	// with the test's; the server logs are shown first.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	if err := run(ctx, args, &out, &progress); err != nil {
		logs, _ := filepath.Glob(filepath.Join(tmp, "logd-bench-*", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b[max(0, len(b)-8<<10):])
		}
		t.Fatalf("run: %v\nprogress:\n%s", err, &progress)
	}
	report := out.String()
	t.Logf("report:\n%s", report)

	for _, want := range []string{
		"- machine: ",
		"- logd: ",
		"- command: `go run ./test/bench " + strings.Join(args, " ") + "`\n",
		"| sync | workload | logd rec/s | ceiling rec/s | logd/ceiling | target | met? |",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	rows := map[string]bool{}
	for line := range strings.Lines(report) {
		if !strings.HasPrefix(line, "| always |") && !strings.HasPrefix(line, "| none |") {
			continue
		}
		cells := strings.Split(strings.TrimSpace(line), "|")
		cells = cells[1 : len(cells)-1]
		if len(cells) != 13 {
			t.Errorf("row %q: got %d cells, want 13", line, len(cells))
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[cells[0]+" "+cells[1]] = true
		for _, i := range []int{2, 3, 4} {
			if v, err := strconv.ParseFloat(cells[i], 64); err != nil || v <= 0 {
				t.Errorf("row %q: cell %d %q is not a positive number", line, i+1, cells[i])
			}
		}
		if !strings.HasPrefix(cells[5], "≥ 0.") || (cells[6] != "met" && cells[6] != "NOT met") {
			t.Errorf("row %q: got target %q, verdict %q", line, cells[5], cells[6])
		}
		for _, c := range cells[7:] {
			if !regexp.MustCompile(`^[0-9.]+ (µs|ms)$`).MatchString(c) {
				t.Errorf("row %q: latency %q", line, c)
			}
		}
	}
	if len(rows) != 2*len(workloads) {
		t.Errorf("got rows %v, want %d (every workload under --sync always and none)", rows, 2*len(workloads))
	}
	m := regexp.MustCompile(`logd peak RSS .*: ([0-9.]+) MiB with --sync always, ([0-9.]+) MiB with --sync none; target ≤ 150 MiB: (met|NOT met)\n`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no peak RSS line for both sync policies")
	}
	for _, v := range m[1:3] {
		if f, _ := strconv.ParseFloat(v, 64); f <= 0 {
			t.Errorf("peak RSS %s MiB", v)
		}
	}
	if !regexp.MustCompile(`targets met: [0-9] of 9`).MatchString(report) {
		t.Errorf("no count of the 9 targets met")
	}
}

func TestOptions(t *testing.T) {
	t.Setenv("LOGD_BENCH_TRIAL", "7s")
	t.Setenv("LOGD_BENCH_TRIALS", "5")
	var stderr bytes.Buffer
	o, err := parseOptions([]string{"-trials", "4", "-sync", "none", "-workloads", "stream,unary-1"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if o.trial != 7*time.Second || o.trials != 4 {
		t.Errorf("got trial %v, trials %d; want 7s from the environment, 4 from the flag", o.trial, o.trials)
	}
	if len(o.syncs) != 1 || o.syncs[0] != "none" || len(o.workloads) != 2 || o.workloads[0].name != "stream" {
		t.Errorf("got syncs %v, %d workloads", o.syncs, len(o.workloads))
	}
	want := "LOGD_BENCH_TRIAL=7s LOGD_BENCH_TRIALS=5 go run ./test/bench -trials 4 -sync none -workloads stream,unary-1"
	if got := o.command(); got != want {
		t.Errorf("command: got %q, want %q", got, want)
	}

	for _, args := range [][]string{
		{"-sync", "sometimes"},
		{"-workloads", "nope"},
		{"-trial", "0s"},
		{"extra"},
	} {
		if _, err := parseOptions(args, &stderr); err == nil {
			t.Errorf("%v: got no error", args)
		}
	}
	t.Setenv("LOGD_BENCH_SIZE", "big")
	if _, err := parseOptions(nil, &stderr); err == nil || !strings.Contains(err.Error(), "LOGD_BENCH_SIZE") {
		t.Errorf("bad LOGD_BENCH_SIZE: got %v, want an error naming it", err)
	}
}
