package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	logv1 "github.com/logd/logd/api/v1"
)

// Prometheus scrapes every second; rate() needs two samples in its window.
const (
	promScrapeInterval = "1s"
	promTimeout        = 20 * time.Second
)

// TestPrometheusScrapesLogd points a real Prometheus server (the Debian
// package's /usr/bin/prometheus) at logd's /metrics and queries what it
// stored while alice produces. Without the binary it skips, unless
// LOGD_REQUIRE_PROMETHEUS=1 (as in CI).
func TestPrometheusScrapesLogd(t *testing.T) {
	bin := prometheusBinary(t)
	p := startLogd(t, t.TempDir(), t.TempDir())
	prom := startPrometheus(t, bin, p.HTTPAddr)

	// Produce steadily as alice until the checks pass (or time runs out).
	const topic = "alice/p"
	alice := p.Client(t, "alice")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var produced int
	var produceErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ctx, cancel := rpcCtx()
			_, err := alice.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(fmt.Sprintf("p-%d", produced))}})
			cancel()
			if err != nil {
				produceErr = err
				return
			}
			produced++
		}
	}()
	stopProducing := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(stopProducing)

	queries := []struct {
		query string
		check func(v float64) bool
		want  string
		// labels the single series of the result must have.
		labels map[string]string
	}{
		{`up{job="logd"}`, func(v float64) bool { return v == 1 }, "1", map[string]string{"instance": p.HTTPAddr}},
		{`sum by (principal, topic) (rate(logd_records_appended_total{job="logd",topic="alice/p"}[5s]))`,
			func(v float64) bool { return v > 0 }, "> 0", map[string]string{"principal": "alice", "topic": topic}},
		{`histogram_quantile(0.99, sum by (le) (rate(logd_append_latency_milliseconds_bucket{job="logd",topic="alice/p"}[5s])))`,
			func(v float64) bool { return v > 0 }, "> 0", nil},
		{`logd_topic_next_offset{job="logd",topic="alice/p"}`, func(v float64) bool { return v > 0 }, "> 0", nil},
		{`sum(rate(grpc_io_server_completed_rpcs{job="logd",grpc_server_method="log.v1.Log/Produce",grpc_server_status="OK"}[5s]))`,
			func(v float64) bool { return v > 0 }, "> 0", nil},
	}
	deadline := time.Now().Add(promTimeout)
	for {
		var failures []string
		for _, q := range queries {
			res, err := prom.query(t, q.query)
			switch {
			case err != nil:
				failures = append(failures, fmt.Sprintf("%s: %v", q.query, err))
			case len(res) != 1:
				failures = append(failures, fmt.Sprintf("%s: got %d series (%v), want 1", q.query, len(res), res))
			case !q.check(res[0].value):
				failures = append(failures, fmt.Sprintf("%s: got %g, want %s", q.query, res[0].value, q.want))
			default:
				for k, v := range q.labels {
					if res[0].labels[k] != v {
						failures = append(failures, fmt.Sprintf("%s: got %s=%q, want %q", q.query, k, res[0].labels[k], v))
					}
				}
			}
		}
		if len(failures) == 0 {
			break
		}
		if time.Now().After(deadline) {
			stopProducing()
			t.Fatalf("Prometheus, after %v with %d records produced (producer error: %v):\n%s\ntargets: %s",
				promTimeout, produced, produceErr, strings.Join(failures, "\n"), prom.targets(t))
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopProducing()
	if produceErr != nil {
		t.Fatalf("produce to %s after %d records: %v", topic, produced, produceErr)
	}
}

// prometheusBinary returns the prometheus binary, or skips the test if
// there is none (fails it if LOGD_REQUIRE_PROMETHEUS=1).
func prometheusBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/prometheus"); serr == nil {
			return "/usr/bin/prometheus"
		}
		if os.Getenv("LOGD_REQUIRE_PROMETHEUS") == "1" {
			t.Fatalf("LOGD_REQUIRE_PROMETHEUS=1 but no prometheus binary: %v", err)
		}
		t.Skipf("no prometheus binary (%v); install the prometheus package or set LOGD_REQUIRE_PROMETHEUS=1 to fail instead", err)
	}
	return bin
}

// promServer is a running Prometheus.
type promServer struct {
	addr   string
	stderr *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startPrometheus starts Prometheus scraping target's /metrics every
// second, with its data in a temporary directory, and waits until it is
// ready. It is killed when the test ends; if the test failed, its stderr
// is logged.
func startPrometheus(t testing.TB, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: logd
    metrics_path: /metrics
    static_configs:
      - targets: [%[2]q]
`, promScrapeInterval, target)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}

	// The port is picked before Prometheus binds it: another process may
	// take it in between, so try a few.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s := &promServer{addr: freeAddr(t), stderr: &syncBuffer{}}
		cmd := exec.Command(bin,
			"--config.file="+configFile,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address="+s.addr,
		)
		cmd.Dir = dir
		cmd.Stderr = s.stderr
		cmd.Stdout = s.stderr
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() {
			waitErr = cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			select {
			case <-exited:
			default:
				cmd.Process.Signal(syscall.SIGKILL)
				<-exited
			}
			if t.Failed() {
				t.Logf("prometheus --web.listen-address=%s stderr:\n%s", s.addr, s.stderr)
			}
		})
		lastErr = s.waitReady(exited, &waitErr)
		if lastErr == nil {
			return s
		}
		select {
		case <-exited:
			if strings.Contains(s.stderr.String(), "address already in use") {
				continue
			}
		default:
		}
		break
	}
	t.Fatalf("prometheus: %v", lastErr)
	return nil
}

// waitReady polls /-/ready until Prometheus answers 200, exits or
// startTimeout passes.
func (s *promServer) waitReady(exited <-chan struct{}, waitErr *error) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited before ready: %v\nstderr:\n%s", *waitErr, s.stderr)
		default:
		}
		res, err := hc.Get("http://" + s.addr + "/-/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v (last: %v)", startTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promSample is one series of an instant query's result.
type promSample struct {
	labels map[string]string
	value  float64
}

func (s promSample) String() string { return fmt.Sprintf("%v %g", s.labels, s.value) }

// query runs an instant query. Errors of the query itself (not of the
// test's plumbing) are returned, for the caller to retry.
func (s *promServer) query(t testing.TB, q string) ([]promSample, error) {
	t.Helper()
	code, body := httpGet(t, "http://"+s.addr+"/api/v1/query?query="+url.QueryEscape(q))
	var res struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		return nil, fmt.Errorf("got %d %q: %v", code, body, err)
	}
	if code != http.StatusOK || res.Status != "success" {
		return nil, fmt.Errorf("got %d, status %q, error %q; want 200, success", code, res.Status, res.Error)
	}
	if res.Data.ResultType != "vector" {
		return nil, fmt.Errorf("got result type %q, want vector", res.Data.ResultType)
	}
	var out []promSample
	for _, r := range res.Data.Result {
		str, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %v", r.Value, err)
		}
		out = append(out, promSample{labels: r.Metric, value: v})
	}
	return out, nil
}

// targets returns the scrape targets' health and last error, for
// messages.
func (s *promServer) targets(t testing.TB) string {
	t.Helper()
	_, body := httpGet(t, "http://"+s.addr+"/api/v1/targets")
	var res struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL  string `json:"scrapeUrl"`
				Health     string `json:"health"`
				LastError  string `json:"lastError"`
				LastScrape string `json:"lastScrape"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		return body
	}
	var parts []string
	for _, a := range res.Data.ActiveTargets {
		parts = append(parts, fmt.Sprintf("%s health %q last scrape %s error %q", a.ScrapeURL, a.Health, a.LastScrape, a.LastError))
	}
	return strings.Join(parts, "; ")
}
