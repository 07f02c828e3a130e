package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/logd/logd/api/client"
	"github.com/logd/logd/internal/pki"
)

// principal is the client certificate the harness uses; the default
// policy lets root do everything, so logd's authorization allows every
// call (it still runs).
const principal = "root"

// harness runs the servers and workloads of one benchmark.
type harness struct {
	o        *options
	progress io.Writer
	dir      string // temporary: binaries, certificates, data, logs
	certs    string
	logd     string // binaries
	ceiling  string
}

func newHarness(ctx context.Context, o *options, progress io.Writer) (*harness, error) {
	dir, err := os.MkdirTemp("", "logd-bench-")
	if err != nil {
		return nil, err
	}
	h := &harness{o: o, progress: progress, dir: dir, certs: filepath.Join(dir, "certs"), logd: o.logdBin, ceiling: o.ceilingBin}
	// Build what was not given.
	var pkgs []string
	var bins []*string
	if h.logd == "" {
		pkgs, bins = append(pkgs, "github.com/logd/logd/cmd/logd"), append(bins, &h.logd)
	}
	if h.ceiling == "" {
		pkgs, bins = append(pkgs, "github.com/logd/logd/test/ceiling"), append(bins, &h.ceiling)
	}
	if len(pkgs) > 0 {
		h.logf("building %s", strings.Join(pkgs, " "))
		built, err := build(ctx, filepath.Join(dir, "bin"), o.race, pkgs...)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		for i, b := range bins {
			*b = built[i]
		}
	}
	if err := pki.Generate(h.certs, principal); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if o.cpuprofile != "" {
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return h, nil
}

// close removes the temporary directory, unless the run failed: then it
// keeps it for its logs and says where it is.
func (h *harness) close(failed error) {
	if failed != nil {
		h.logf("kept %s (server logs, data)", h.dir)
		return
	}
	os.RemoveAll(h.dir)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.progress, "bench: "+format+"\n", args...)
}

// run runs every workload under every sync policy: one logd process per
// policy, a new ceiling per workload (it keeps every record in memory).
func (h *harness) run(ctx context.Context) (*report, error) {
	rep := &report{o: h.o, machine: readMachine(), logdVersion: logdVersion(h.logd, h.o.logdBin == ""), loadStart: loadAverage(), rss: map[string]int64{}}
	for _, sync := range h.o.syncs {
		data := filepath.Join(h.dir, "data-"+sync)
		args := []string{
			"--sync", sync,
			"--config-dir", h.certs,
			"--data-dir", data,
			"--listen", "127.0.0.1:0",
			"--http-listen", "127.0.0.1:0",
			"--http-api-listen", "127.0.0.1:0",
		}
		logd, err := start(ctx, "logd", h.logd, args, filepath.Join(h.dir, "logd-"+sync+".log"), logdAddrs)
		if err != nil {
			return nil, err
		}
		h.logf("logd --sync %s serves on %s (log: %s)", sync, logd.addr, logd.logPath)
		for _, w := range h.o.workloads {
			r, err := h.pair(ctx, logd, sync, w)
			if err != nil {
				logd.kill()
				return nil, fmt.Errorf("--sync %s, %s: %w", sync, w.name, err)
			}
			rep.rows = append(rep.rows, r)
		}
		rss, err := logd.peakRSS()
		if err != nil {
			logd.kill()
			return nil, err
		}
		rep.rss[sync] = rss
		if err := logd.stop(); err != nil {
			return nil, err
		}
		os.RemoveAll(data)
	}
	rep.loadEnd = loadAverage()
	return rep, nil
}

// target is one server under test, with a connection to it.
type target struct {
	srv    *server
	c      *client.Client
	trials []trial
}

// pair runs workload w on logd and on a new ceiling: prefill, a warm-up
// on each, then the trials taking turns, logd first.
func (h *harness) pair(ctx context.Context, logd *server, sync string, w *workload) (*row, error) {
	ceiling, err := start(ctx, "ceiling", h.ceiling, []string{"--listen", "127.0.0.1:0", "--config-dir", h.certs},
		filepath.Join(h.dir, fmt.Sprintf("ceiling-%s-%s.log", sync, w.name)), ceilingAddrs)
	if err != nil {
		return nil, err
	}
	defer ceiling.kill()
	ts := []*target{{srv: logd}, {srv: ceiling}}
	for _, t := range ts {
		cert, key := pki.ClientFiles(principal)
		t.c, err = client.Dial(client.Config{
			Addr:     t.srv.addr,
			CAFile:   filepath.Join(h.certs, pki.CAFile),
			CertFile: filepath.Join(h.certs, cert),
			KeyFile:  filepath.Join(h.certs, key),
		})
		if err != nil {
			return nil, err
		}
		defer t.c.Close()
	}
	topic := "bench/" + w.name
	// do runs one step against t; a step that takes far longer than a
	// trial is stuck, and a failure names the server and its log.
	do := func(t *target, what string, f func(context.Context) error) error {
		tctx, cancel := context.WithTimeout(ctx, 10*h.o.trial+2*time.Minute)
		defer cancel()
		if err := f(tctx); err != nil {
			return fmt.Errorf("%s: %s: %w (log: %s)", t.srv.name, what, err, t.srv.logPath)
		}
		return nil
	}
	d := h.o.trial
	if w.prefill {
		d = 0 // a consume trial reads the whole topic
		for _, t := range ts {
			h.logf("--sync %s %s: pre-filling %d records into %s", sync, w.name, h.o.consumeRecords, t.srv.name)
			if err := do(t, "prefill", func(ctx context.Context) error { return prefill(ctx, t.c, topic, h.o) }); err != nil {
				return nil, err
			}
		}
	}
	if h.o.warmup > 0 {
		for _, t := range ts {
			if err := do(t, "warm-up", func(ctx context.Context) error {
				_, err := w.run(ctx, t.c, topic, h.o.warmup, h.o)
				return err
			}); err != nil {
				return nil, err
			}
		}
	}
	for i := range h.o.trials {
		for _, t := range ts {
			var tr trial
			if err := do(t, fmt.Sprintf("trial %d", i+1), func(ctx context.Context) error {
				cpu, err := t.srv.cpuTime()
				if err != nil {
					return err
				}
				if tr, err = w.run(ctx, t.c, topic, d, h.o); err != nil {
					return err
				}
				end, err := t.srv.cpuTime()
				tr.cpu = end.sub(cpu)
				return err
			}); err != nil {
				return nil, err
			}
			t.trials = append(t.trials, tr)
			h.logf("--sync %s %s trial %d: %s %.0f records/s", sync, w.name, i+1, t.srv.name, tr.rate())
		}
	}
	r := &row{sync: sync, w: w, logd: ts[0].trials, ceiling: ts[1].trials}
	if h.o.cpuprofile != "" {
		r.profile = filepath.Join(h.o.cpuprofile, fmt.Sprintf("logd-%s-%s.pprof", sync, w.name))
		if err := do(ts[0], "CPU profile", func(ctx context.Context) (err error) {
			r.profiled, err = h.profile(ctx, logd, ts[0].c, topic, w, d, r.profile)
			return err
		}); err != nil {
			return nil, err
		}
		h.logf("--sync %s %s: CPU profile of logd in %s", sync, w.name, r.profile)
	}
	// The ceiling keeps every record: say what that costs.
	if rss, err := ceiling.peakRSS(); err == nil {
		h.logf("--sync %s %s: ceiling peak RSS %.0f MiB", sync, w.name, float64(rss)/(1<<20))
	}
	if err := ceiling.stop(); err != nil {
		return nil, err
	}
	return r, nil
}

// profile writes to path a CPU profile of logd taken over about a trial's
// length (whole seconds) while w runs against it, and returns the records
// handled meanwhile.
func (h *harness) profile(ctx context.Context, logd *server, c *client.Client, topic string, w *workload, d time.Duration, path string) (int, error) {
	if logd.httpAddr == "" {
		return 0, errors.New("logd logged no operator HTTP address")
	}
	secs := max(1, int(math.Ceil(h.o.trial.Seconds())))
	got := make(chan error, 1)
	go func() {
		got <- fetch(ctx, "http://"+logd.httpAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), path)
	}()
	records := 0
	for {
		tr, err := w.run(ctx, c, topic, d, h.o)
		records += tr.records
		if err != nil {
			<-got
			return records, err
		}
		select {
		case err := <-got:
			return records, err
		default:
		}
	}
}

// fetch GETs url into the file path.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
