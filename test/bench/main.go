// Command bench is logd's end-to-end benchmark (`make bench-e2e`). It
// builds logd and the ceiling (test/ceiling: the least a log.v1 server can
// do, an in-memory log behind the same mutual TLS), starts each as its own
// process on 127.0.0.1 with temporary cfssl certificates and data
// directories, and runs the workloads of issue 7 with 256-byte records
// against both, taking turns trial by trial: unary Produce with 1 and 16
// concurrent callers, a pipelined ProduceStream, and a ConsumeStream from
// offset 0 over a pre-filled topic, each under logd's --sync always and
// --sync none. logd runs as an operator would run it: its default flags
// but for the sync policy, the certificate and data directories and
// listen ports of its choosing, logging (JSON, level info) to a file.
//
// It prints, as Markdown, the machine, the exact command, and a table of
// records/s (median of the trials) for logd and the ceiling, their ratio
// against issue 7's target, p50 and p99 latencies, and logd's peak RSS.
// Progress goes to stderr. Every flag may also be set by an environment
// variable: -trial by LOGD_BENCH_TRIAL, -consume-records by
// LOGD_BENCH_CONSUME_RECORDS, and so on (a flag on the command line wins).
// -cpuprofile DIR also takes a CPU profile of logd under each workload
// (from its /debug/pprof/profile, in a run after the measured trials).
//
// The harness is Linux-only (it reads /proc) and runs one workload at a
// time; nothing in it is meant for concurrent use.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the harness's settings, from flags and LOGD_BENCH_*.
type options struct {
	trial          time.Duration
	trials         int
	warmup         time.Duration
	size           int
	window         int
	consumeRecords int
	syncs          []string
	workloads      []*workload
	logdBin        string
	ceilingBin     string
	race           bool
	cpuprofile     string
	// args is the command line as given, env the LOGD_BENCH_ variables
	// that were set: together, the exact command.
	args, env []string
}

const envPrefix = "LOGD_BENCH_"

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{args: args}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./test/bench [flags]\n\nRuns logd and the ceiling server side by side and prints a Markdown report\n(see the README's Performance section). Each flag may also be set as\n%s<FLAG> (capitals, _ for -).\n\nFlags:\n", envPrefix)
		fs.PrintDefaults()
	}
	fs.DurationVar(&o.trial, "trial", 2*time.Second, "length of each produce trial")
	fs.IntVar(&o.trials, "trials", 3, "trials per server and workload (the rate shown is their median)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured run of each workload on each server before its trials")
	fs.IntVar(&o.size, "size", 256, "record size in `bytes`")
	fs.IntVar(&o.window, "window", 1024, "records in flight on a ProduceStream (and the prefill)")
	fs.IntVar(&o.consumeRecords, "consume-records", 200000, "records pre-filled and read back by each ConsumeStream trial")
	syncs := fs.String("sync", "always,none", "logd --sync `policies` to run, comma-separated")
	names := fs.String("workloads", workloadNames(), "`workloads` to run, comma-separated")
	fs.StringVar(&o.logdBin, "logd", "", "logd `binary` to run (default: build ./cmd/logd)")
	fs.StringVar(&o.ceilingBin, "ceiling", "", "ceiling `binary` to run (default: build ./test/ceiling)")
	fs.BoolVar(&o.race, "race", false, "build logd and the ceiling with -race (for tests, not for figures)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of logd under each workload into `dir`")
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		key := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			o.env = append(o.env, key+"="+v)
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", key, v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.trial <= 0 || o.warmup < 0:
		return nil, fmt.Errorf("-trial must be positive and -warmup not negative")
	case o.trials < 1 || o.size < 0 || o.window < 1 || o.consumeRecords < 1:
		return nil, fmt.Errorf("-trials, -window and -consume-records must be at least 1, -size not negative")
	}
	for s := range strings.SplitSeq(*syncs, ",") {
		if s != "always" && s != "none" && s != "interval" {
			return nil, fmt.Errorf("-sync: %q is not always, interval or none", s)
		}
		o.syncs = append(o.syncs, s)
	}
	for n := range strings.SplitSeq(*names, ",") {
		w := findWorkload(n)
		if w == nil {
			return nil, fmt.Errorf("-workloads: no workload %q (have %s)", n, workloadNames())
		}
		o.workloads = append(o.workloads, w)
	}
	return o, nil
}

func workloadNames() string {
	var names []string
	for _, w := range workloads {
		names = append(names, w.name)
	}
	return strings.Join(names, ",")
}

func findWorkload(name string) *workload {
	for _, w := range workloads {
		if w.name == name {
			return w
		}
	}
	return nil
}

// command is the command line that reproduces this run.
func (o *options) command() string {
	parts := append([]string{}, o.env...)
	parts = append(parts, "go", "run", "./test/bench")
	for _, a := range o.args {
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	h, err := newHarness(ctx, o, stderr)
	if err != nil {
		return err
	}
	rep, err := h.run(ctx)
	h.close(err)
	if err != nil {
		return err
	}
	return rep.write(stdout)
}
