package main

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// rssTarget is issue 7's bound on logd's peak RSS under this load.
const rssTarget = 150 << 20

// targetRatio is issue 7's target for logd/ceiling on a workload, 0 if
// there is none (--sync interval).
func targetRatio(sync string, w *workload) float64 {
	switch {
	case sync == "none":
		return 0.8
	case sync != "always":
		return 0
	case w.name == "unary-1":
		return 0.45 // one fsync per call is the floor
	case w.name == "stream":
		return 0.6
	default:
		return 0.8
	}
}

// row is one workload under one sync policy: the trials of each server.
type row struct {
	sync          string
	w             *workload
	logd, ceiling []trial
	profile       string // logd's CPU profile, if taken
	profiled      int    // records handled while it was taken
}

// report is what a run measured, and where.
type report struct {
	o                  *options
	machine            string
	logdVersion        string // the revision logd was built from
	loadStart, loadEnd string
	rows               []*row
	rss                map[string]int64 // logd's VmHWM per sync policy
}

// summary is the median rate and pooled latency percentiles of trials.
type summary struct {
	rate     float64
	p50, p99 time.Duration
	rates    []float64
	cpu      time.Duration // the server's CPU time per record
	sys      float64       // the share of it in the kernel
}

func summarize(trials []trial) summary {
	var s summary
	var lat []time.Duration
	var cpu cpuUsage
	records := 0
	for _, t := range trials {
		s.rates = append(s.rates, t.rate())
		lat = append(lat, t.latency...)
		cpu.user += t.cpu.user
		cpu.sys += t.cpu.sys
		records += t.records
	}
	if records > 0 {
		s.cpu = cpu.total() / time.Duration(records)
	}
	if cpu.total() > 0 {
		s.sys = float64(cpu.sys) / float64(cpu.total())
	}
	s.rate = median(s.rates)
	slices.Sort(lat)
	s.p50, s.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return s
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// percentile returns the q-quantile of sorted (nearest rank), 0 if empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// write prints the report as Markdown.
func (r *report) write(w io.Writer) error {
	var b bytes.Buffer
	o := r.o
	fmt.Fprintf(&b, "## logd against the ceiling, end to end\n\n")
	fmt.Fprintf(&b, "- machine: %s\n", r.machine)
	fmt.Fprintf(&b, "- load average (1, 5, 15 min): %s at the start, %s at the end\n", r.loadStart, r.loadEnd)
	fmt.Fprintf(&b, "- logd: %s\n", r.logdVersion)
	fmt.Fprintf(&b, "- command: `%s`\n\n", o.command())
	fmt.Fprintf(&b, "logd is run as an operator would run it: its default flags but --sync, --config-dir\n")
	fmt.Fprintf(&b, "(temporary cfssl certificates), --data-dir (temporary) and listen addresses on 127.0.0.1\n")
	fmt.Fprintf(&b, "port 0, logging (JSON, level info) to a file. The ceiling (test/ceiling) is an in-memory\n")
	fmt.Fprintf(&b, "log.v1 server behind the same mutual TLS and nothing else; it has no sync policy.\n")
	fmt.Fprintf(&b, "Records of %d bytes; per workload a %v warm-up on each server, then %d trials each,\n", o.size, o.warmup, o.trials)
	fmt.Fprintf(&b, "taking turns (logd, ceiling, logd, ...); a produce trial lasts %v, a consume trial\n", o.trial)
	fmt.Fprintf(&b, "reads %d pre-filled records. records/s is the median trial; p50 and p99 are over\n", o.consumeRecords)
	fmt.Fprintf(&b, "every call or record of the trials.\n\n")

	fmt.Fprintf(&b, "| sync | workload | logd rec/s | ceiling rec/s | logd/ceiling | target | met? | logd p50 | logd p99 | ceiling p50 | ceiling p99 | logd CPU/rec | ceiling CPU/rec |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|\n")
	var missed []string
	met, targets := 0, 0
	sums := make([][2]summary, len(r.rows))
	for i, row := range r.rows {
		sums[i] = [2]summary{summarize(row.logd), summarize(row.ceiling)}
		l, c := sums[i][0], sums[i][1]
		ratio := 0.0
		if c.rate > 0 {
			ratio = l.rate / c.rate
		}
		tgt, verdict := "", ""
		if t := targetRatio(row.sync, row.w); t > 0 {
			targets++
			tgt = fmt.Sprintf("≥ %.2f", t)
			if ratio >= t {
				met++
				verdict = "met"
			} else {
				verdict = "NOT met"
				missed = append(missed, fmt.Sprintf("--sync %s %s (%.2f < %.2f)", row.sync, row.w.name, ratio, t))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %.2f | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			row.sync, row.w.title, l.rate, c.rate, ratio, tgt, verdict,
			latency(l.p50), latency(l.p99), latency(c.p50), latency(c.p99), latency(l.cpu), latency(c.cpu))
	}
	fmt.Fprintf(&b, "\nLatency: %s\n", strings.ReplaceAll(latencyNote, "\n", " "))
	fmt.Fprintf(&b, "CPU/rec: the server process's user and system CPU time over its trials (from\n")
	fmt.Fprintf(&b, "/proc/PID/stat, 10 ms ticks) divided by the records; the client runs on the same cores.\n\n")

	fmt.Fprintf(&b, "logd peak RSS (VmHWM, over the whole run of each logd process): ")
	var rss []string
	rssMet := true
	for _, sync := range o.syncs {
		v, ok := r.rss[sync]
		if !ok {
			continue
		}
		rss = append(rss, fmt.Sprintf("%.1f MiB with --sync %s", float64(v)/(1<<20), sync))
		rssMet = rssMet && v <= rssTarget
	}
	verdict := "met"
	targets++
	if rssMet {
		met++
	} else {
		verdict = "NOT met"
		missed = append(missed, "peak RSS")
	}
	fmt.Fprintf(&b, "%s; target ≤ %d MiB: %s\n\n", strings.Join(rss, ", "), rssTarget>>20, verdict)
	fmt.Fprintf(&b, "targets met: %d of %d", met, targets)
	if len(missed) > 0 {
		fmt.Fprintf(&b, "; NOT met: %s", strings.Join(missed, ", "))
	}
	fmt.Fprintf(&b, "\n\nTrials, records/s in the order run, and the share of each server's CPU time\nspent in the kernel:\n\n")
	for i, row := range r.rows {
		l, c := sums[i][0], sums[i][1]
		fmt.Fprintf(&b, "    --sync %-6s %-8s  logd %s (sys %.0f%%)  ceiling %s (sys %.0f%%)\n",
			row.sync, row.w.name, rates(row.logd), 100*l.sys, rates(row.ceiling), 100*c.sys)
	}
	if o.cpuprofile != "" {
		fmt.Fprintf(&b, "\nCPU profiles of logd, one per workload (go tool pprof FILE):\n\n")
		for _, row := range r.rows {
			fmt.Fprintf(&b, "    --sync %-6s %-8s  %s  (%d records)\n", row.sync, row.w.name, row.profile, row.profiled)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func rates(trials []trial) string {
	var s []string
	for _, t := range trials {
		s = append(s, fmt.Sprintf("%.0f", t.rate()))
	}
	return strings.Join(s, " ")
}

// latency formats d with about three significant digits, in µs below a
// millisecond and in ms above.
func latency(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 10:
		return fmt.Sprintf("%.1f µs", us)
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 10000:
		return fmt.Sprintf("%.2f ms", us/1000)
	case us < 100000:
		return fmt.Sprintf("%.1f ms", us/1000)
	default:
		return fmt.Sprintf("%.0f ms", us/1000)
	}
}

// readMachine describes the CPU, cores, memory, kernel and Go version.
func readMachine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores%s, Linux %s, %s %s/%s", cpu, runtime.NumCPU(), mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// logdVersion says which logd binary ran and what it was built from: the
// revision stamped in it, else (when the harness built it from the tree
// it runs in, and GOFLAGS has -buildvcs=false) that tree's git commit.
func logdVersion(path string, built bool) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("%s (%v)", path, err)
	}
	rev, modified := "", false
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			modified = st.Value == "true"
		}
	}
	if rev == "" && built {
		if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			rev = strings.TrimSpace(string(out))
		}
		// The packages logd is built from (":/" is the top of the tree).
		status := []string{"status", "--porcelain", "--untracked-files=no", "--", ":/cmd", ":/internal", ":/api", ":/configs", ":/go.mod", ":/go.sum"}
		if out, err := exec.Command("git", status...).Output(); err == nil {
			modified = len(bytes.TrimSpace(out)) > 0
		}
	}
	from := "an unknown revision"
	if rev != "" {
		from = "commit " + rev
	}
	if modified {
		from += " with uncommitted changes to logd's sources"
	}
	if built {
		return fmt.Sprintf("built from this tree, %s, by %s", from, bi.GoVersion)
	}
	return fmt.Sprintf("%s, %s, built by %s", path, from, bi.GoVersion)
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
