package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	logv1 "github.com/logd/logd/api/v1"
)

// metricsTimeout bounds the wait for calls to show in /metrics: OpenCensus
// records in a background goroutine, so a scrape right after a call may
// not include it yet.
const metricsTimeout = 10 * time.Second

// TestObservabilityEndpoints drives logd as two tenants and checks what an
// operator sees of it: the operator HTTP endpoints (health, Prometheus
// metrics, zPages, pprof), the log line of each call and the spans in the
// trace file.
func TestObservabilityEndpoints(t *testing.T) {
	spansFile := filepath.Join(t.TempDir(), "spans.jsonl")
	p := startLogd(t, t.TempDir(), t.TempDir(), "--trace-sample", "1", "--trace-file", spansFile)
	alice, bob, nobody := p.Client(t, "alice"), p.Client(t, "bob"), p.Client(t, "nobody")

	// What each tenant produces: topic -> values.
	produced := map[string][]string{
		"alice/a": {"a0", "a1-longer", "a2", "a3", "a4"},
		"alice/b": {"b0", "b1"},
		"bob/x":   {"x0", "x1", "x2"},
	}
	clients := map[string]logv1.LogClient{"alice": alice, "bob": bob}
	valueBytes := map[string]int{}
	for _, topic := range slices.Sorted(maps.Keys(produced)) {
		c := clients[strings.Split(topic, "/")[0]]
		for i, v := range produced[topic] {
			if off := produce(t, c, topic, v); off != uint64(i) {
				t.Fatalf("produce %q to %q: got offset %d, want %d", v, topic, off, i)
			}
			valueBytes[topic] += len(v)
		}
	}
	consume(t, alice, "alice/a", 0)
	consume(t, alice, "alice/a", 1)
	consume(t, bob, "bob/x", 2)

	// Refused by the ACL: bob producing to alice's topic, nobody reading.
	ctx, cancel := rpcCtx()
	_, err := bob.Produce(ctx, &logv1.ProduceRequest{Topic: "alice/a", Record: &logv1.Record{Value: []byte("intruder")}})
	cancel()
	wantCode(t, err, codes.PermissionDenied)
	ctx, cancel = rpcCtx()
	_, err = nobody.Consume(ctx, &logv1.ConsumeRequest{Topic: "nobody/n"})
	cancel()
	wantCode(t, err, codes.PermissionDenied)

	// A follower waiting at the tail of alice/b while we scrape.
	sctx, scancel := context.WithTimeout(context.Background(), streamTimeout)
	defer scancel()
	stream, err := alice.ConsumeStream(sctx, &logv1.ConsumeRequest{Topic: "alice/b", Offset: 2})
	if err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, "http://"+p.HTTPAddr+path); code != http.StatusOK {
			t.Errorf("GET %s: got %d (%q), want 200", path, code, body)
		}
	}

	aliceA := `topic="alice/a"`
	pollMetrics(t, p.HTTPAddr, []expectation{
		// Per tenant and topic, exactly what each one did.
		{`logd_records_appended_total{principal="alice",topic="alice/a"}`, eq(5)},
		{`logd_records_appended_total{principal="alice",topic="alice/b"}`, eq(2)},
		{`logd_records_appended_total{principal="bob",topic="bob/x"}`, eq(3)},
		{`logd_records_appended_total{principal="bob",topic="alice/a"}`, absent()},
		{`logd_bytes_appended_total{principal="alice",topic="alice/a"}`, eq(float64(valueBytes["alice/a"]))},
		{`logd_bytes_appended_total{principal="bob",topic="bob/x"}`, eq(float64(valueBytes["bob/x"]))},
		{`logd_records_read_total{principal="alice",topic="alice/a"}`, eq(2)},
		{`logd_records_read_total{principal="bob",topic="bob/x"}`, eq(1)},
		{`logd_bytes_read_total{principal="alice",topic="alice/a"}`, eq(float64(len("a0") + len("a1-longer")))},
		{`logd_authz_denials_total{action="produce",principal="bob"}`, eq(1)},
		{`logd_authz_denials_total{action="consume",principal="nobody"}`, eq(1)},
		{`logd_authz_denials_total{action="produce",principal="alice"}`, absent()},

		// Histograms: one append latency per record.
		{`logd_append_latency_milliseconds_count{` + aliceA + `}`, eq(5)},
		{`logd_append_latency_milliseconds_bucket{le="+Inf",` + aliceA + `}`, eq(5)},
		{`logd_append_latency_milliseconds_sum{` + aliceA + `}`, gt(0)},
		{`logd_append_latency_milliseconds_count{topic="bob/x"}`, eq(3)},
		// --sync always: every record was made durable by some fsync.
		{`logd_fsync_latency_milliseconds_count{` + aliceA + `}`, ge(1)},
		{`logd_fsync_batch_records_sum{` + aliceA + `}`, eq(5)},

		// Storage gauges.
		{`logd_topic_next_offset{topic="alice/a"}`, eq(5)},
		{`logd_topic_next_offset{topic="alice/b"}`, eq(2)},
		{`logd_topic_next_offset{topic="bob/x"}`, eq(3)},
		{`logd_topic_highest_offset{topic="alice/a"}`, eq(4)},
		{`logd_topic_lowest_offset{topic="alice/a"}`, eq(0)},
		{`logd_topic_segments{topic="alice/a"}`, eq(1)},
		{`logd_topic_size_bytes{topic="alice/a"}`, gt(float64(valueBytes["alice/a"]))},
		{`logd_topic_tail_consumers{topic="alice/b"}`, eq(1)},
		{`logd_topic_tail_consumers{topic="alice/a"}`, eq(0)},

		// ocgrpc's server views.
		{`grpc_io_server_completed_rpcs{grpc_server_method="log.v1.Log/Produce",grpc_server_status="OK"}`, eq(10)},
		{`grpc_io_server_completed_rpcs{grpc_server_method="log.v1.Log/Produce",grpc_server_status="PERMISSION_DENIED"}`, eq(1)},
		{`grpc_io_server_completed_rpcs{grpc_server_method="log.v1.Log/Consume",grpc_server_status="OK"}`, eq(3)},
		{`grpc_io_server_completed_rpcs{grpc_server_method="log.v1.Log/Consume",grpc_server_status="PERMISSION_DENIED"}`, eq(1)},

		// The runtime and process collectors.
		{`process_resident_memory_bytes`, gt(1 << 20)},
		{`go_goroutines`, gt(0)},
	}, metricsTimeout)

	// zPages and pprof.
	code, body := httpGet(t, "http://"+p.HTTPAddr+"/debug/tracez")
	if code != http.StatusOK {
		t.Errorf("GET /debug/tracez: got %d, want 200", code)
	}
	for _, name := range []string{"log.v1.Log.Produce", "log.v1.Log.Consume", "log.append", "log.sync_wait", "log.read"} {
		// The summary table has a row per span name: <td>name</td>.
		if !strings.Contains(body, "<td>"+name+"</td>") {
			t.Errorf("GET /debug/tracez: got no summary row for span %q, want one; page:\n%s", name, body)
		}
	}
	// rpcz shows method statistics only after OpenCensus's next view
	// report (every 10 s by default): check the page only.
	code, body = httpGet(t, "http://"+p.HTTPAddr+"/debug/rpcz")
	if code != http.StatusOK || !strings.Contains(body, "RPC Stats") {
		t.Errorf("GET /debug/rpcz: got %d, \"RPC Stats\" page: %v; want 200 and the page", code, strings.Contains(body, "RPC Stats"))
	}
	code, body = httpGet(t, "http://"+p.HTTPAddr+"/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/: got %d, goroutine profile listed: %v; want 200 and listed", code, strings.Contains(body, "goroutine"))
	}

	// The follower gets the next record; once canceled it no longer
	// counts.
	produce(t, alice, "alice/b", "b2")
	if res, err := stream.Recv(); err != nil || res.GetRecord().GetOffset() != 2 {
		t.Fatalf("follower: got %v, %v; want record 2", res, err)
	}
	scancel()
	if _, err := stream.Recv(); err == nil {
		t.Fatal("follower: got a record after cancel, want Canceled")
	}
	pollMetrics(t, p.HTTPAddr, []expectation{
		{`logd_topic_tail_consumers{topic="alice/b"}`, eq(0)},
		{`logd_topic_next_offset{topic="alice/b"}`, eq(3)},
		{`logd_records_read_total{principal="alice",topic="alice/b"}`, eq(1)},
	}, metricsTimeout)

	p.Stop(t)

	// The log: one line per call.
	lines := p.stderr.find("")
	for _, l := range lines {
		if !l.json {
			t.Errorf("stderr line %q is not JSON", l.raw)
		}
	}
	for _, msg := range []string{"shutting down", "logs closed"} {
		if got := len(p.stderr.find(msg)); got != 1 {
			t.Errorf("after SIGTERM: got %d %q lines, want 1", got, msg)
		}
	}
	calls := callLines(t, p)
	traceIDRE := regexp.MustCompile(`^[0-9a-f]{32}$`)

	prod := findCall(t, calls, "alice's first produce", map[string]any{
		"grpc.service": "log.v1.Log", "grpc.method": "Produce", "principal": "alice", "topic": "alice/a", "offset": 0.0,
	})
	wantFields(t, "alice's first produce", prod, map[string]any{"level": "info", "grpc.code": "OK"})
	produceTrace, _ := prod["trace_id"].(string)
	if !traceIDRE.MatchString(produceTrace) || strings.Trim(produceTrace, "0") == "" {
		t.Errorf("alice's first produce: got trace_id %q, want 32 hex digits, not all zero", produceTrace)
	}
	if d, ok := prod["grpc.duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("alice's first produce: got grpc.duration_ms %v, want a duration", prod["grpc.duration_ms"])
	}
	if a, _ := prod["peer.address"].(string); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("alice's first produce: got peer.address %q, want 127.0.0.1:port", a)
	}

	cons := findCall(t, calls, "alice's second consume", map[string]any{
		"grpc.method": "Consume", "principal": "alice", "topic": "alice/a", "offset": 1.0,
	})
	wantFields(t, "alice's second consume", cons, map[string]any{"level": "info", "grpc.code": "OK"})

	denied := findCall(t, calls, "bob's denied produce", map[string]any{
		"grpc.method": "Produce", "principal": "bob", "topic": "alice/a",
	})
	wantFields(t, "bob's denied produce", denied, map[string]any{"level": "warn", "grpc.code": "PermissionDenied"})
	if _, ok := denied["offset"]; ok {
		t.Errorf("bob's denied produce: got offset %v, want none", denied["offset"])
	}
	deniedTrace, _ := denied["trace_id"].(string)
	if !traceIDRE.MatchString(deniedTrace) || deniedTrace == produceTrace {
		t.Errorf("bob's denied produce: got trace_id %q, want its own (produce's: %q)", deniedTrace, produceTrace)
	}
	follow := findCall(t, calls, "alice's follower", map[string]any{
		"grpc.method": "ConsumeStream", "principal": "alice", "topic": "alice/b",
	})
	wantFields(t, "alice's follower", follow, map[string]any{"level": "info", "grpc.code": "Canceled", "offset": 2.0})

	// The trace file: the produce's server span and its children share the
	// trace id of its log line.
	spans := readJSONLines[span](t, spansFile)
	server := findSpan(t, spans, produceTrace, "log.v1.Log.Produce")
	if server.Kind != "server" || server.Status.Code != 0 {
		t.Errorf("span log.v1.Log.Produce: got kind %q, status %d; want server, 0", server.Kind, server.Status.Code)
	}
	for _, child := range []string{"log.append", "log.sync_wait"} {
		s := findSpan(t, spans, produceTrace, child)
		if s.ParentSpanID != server.SpanID {
			t.Errorf("span %s: got parent %q, want %q (log.v1.Log.Produce)", child, s.ParentSpanID, server.SpanID)
		}
		if s.Attributes["topic"] != "alice/a" || s.Attributes["offset"] != 0.0 {
			t.Errorf("span %s: got attributes %v, want topic alice/a, offset 0", child, s.Attributes)
		}
		if s.End.Before(s.Start) || s.Start.Before(server.Start) || s.End.After(server.End) {
			t.Errorf("span %s: got [%v, %v], want within its parent's [%v, %v]", child, s.Start, s.End, server.Start, server.End)
		}
	}
	// The denied call's span says who was refused what, on which topic.
	ds := findSpan(t, spans, deniedTrace, "log.v1.Log.Produce")
	if ds.Status.Code != int32(codes.PermissionDenied) {
		t.Errorf("denied span: got status %d, want %d", ds.Status.Code, codes.PermissionDenied)
	}
	annotated := false
	for _, a := range ds.Annotations {
		if a.Message == "permission denied" && a.Attributes["principal"] == "bob" && a.Attributes["topic"] == "alice/a" && a.Attributes["action"] == "produce" {
			annotated = true
		}
	}
	if !annotated {
		t.Errorf("denied span: got annotations %+v, want \"permission denied\" with principal bob, topic alice/a, action produce", ds.Annotations)
	}
	for _, s := range spans {
		if s.Name == "log.append" && s.TraceID == deniedTrace {
			t.Errorf("denied call: got a log.append span, want none")
		}
	}
}

// expectation is a series of /metrics and what its value must be.
type expectation struct {
	series string // name{label="value",...}: the exact label set
	want   check
}

type check struct {
	desc string // for messages: "5", "> 0", "absent"
	ok   func(v float64, found bool) bool
}

func eq(want float64) check {
	return check{strconv.FormatFloat(want, 'g', -1, 64), func(v float64, found bool) bool { return found && v == want }}
}

func gt(min float64) check {
	return check{"> " + strconv.FormatFloat(min, 'g', -1, 64), func(v float64, found bool) bool { return found && v > min }}
}

func ge(min float64) check {
	return check{">= " + strconv.FormatFloat(min, 'g', -1, 64), func(v float64, found bool) bool { return found && v >= min }}
}

func absent() check {
	return check{"no such series", func(_ float64, found bool) bool { return !found }}
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func (s sample) String() string {
	keys := slices.Sorted(maps.Keys(s.labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, s.labels[k])
	}
	return fmt.Sprintf("%s{%s} %g", s.name, strings.Join(parts, ","), s.value)
}

// pollMetrics scrapes /metrics at addr until every expectation holds, and
// fails the test if they do not all hold within timeout.
func pollMetrics(t testing.TB, addr string, wants []expectation, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, "http://"+addr+"/metrics")
		var failures []string
		if code != http.StatusOK {
			failures = append(failures, fmt.Sprintf("GET /metrics: got %d, want 200", code))
		} else {
			failures = checkMetrics(t, parseMetrics(t, body), wants)
		}
		if len(failures) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics after %v:\n%s\nlast scrape:\n%s", timeout, strings.Join(failures, "\n"), body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkMetrics returns what is wrong with samples, one message per
// expectation not met.
func checkMetrics(t testing.TB, samples []sample, wants []expectation) []string {
	t.Helper()
	var failures []string
	for _, w := range wants {
		sel, ok := parseSample(w.series + " 0")
		if !ok {
			t.Fatalf("bad series %q", w.series)
		}
		var got *sample
		var others []string
		for i, s := range samples {
			if s.name != sel.name {
				continue
			}
			if maps.Equal(s.labels, sel.labels) {
				got = &samples[i]
			} else {
				others = append(others, s.String())
			}
		}
		var v float64
		if got != nil {
			v = got.value
		}
		if w.want.ok(v, got != nil) {
			continue
		}
		if got == nil {
			failures = append(failures, fmt.Sprintf("%s: got no such series (%d others of that name: %s), want %s",
				w.series, len(others), strings.Join(others, "; "), w.want.desc))
		} else {
			failures = append(failures, fmt.Sprintf("%s: got %g, want %s", w.series, v, w.want.desc))
		}
	}
	return failures
}

// parseMetrics parses the Prometheus text exposition format.
func parseMetrics(t testing.TB, body string) []sample {
	t.Helper()
	var out []sample
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, ok := parseSample(line)
		if !ok {
			t.Fatalf("/metrics: cannot parse line %q", line)
		}
		out = append(out, s)
	}
	return out
}

// parseSample parses `name{k="v",...} value [timestamp]`.
func parseSample(line string) (sample, bool) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, false
	}
	s.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return s, false
			}
			key := line[:eq]
			line = line[eq+2:]
			var v strings.Builder
			closed := false
			for j := 0; j < len(line); j++ {
				c := line[j]
				if c == '\\' && j+1 < len(line) {
					j++
					switch line[j] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(line[j])
					}
					continue
				}
				if c == '"' {
					line, closed = line[j+1:], true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return s, false
			}
			s.labels[key] = v.String()
		}
	}
	f := strings.Fields(line)
	if len(f) < 1 || len(f) > 2 {
		return s, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, false
	}
	s.value = v
	return s, true
}

// callLines returns the fields of logd's "finished call" lines.
func callLines(t testing.TB, p *process) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range p.stderr.find("finished call") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l.raw), &m); err != nil {
			t.Fatalf("log line %q: %v", l.raw, err)
		}
		out = append(out, m)
	}
	return out
}

// findCall returns the one call line having every field of match.
func findCall(t testing.TB, calls []map[string]any, what string, match map[string]any) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, c := range calls {
		if hasFields(c, match) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: got %d \"finished call\" lines with %v, want 1; call lines:\n%v", what, len(found), match, calls)
	}
	return found[0]
}

func hasFields(m, want map[string]any) bool {
	for k, v := range want {
		if m[k] != v {
			return false
		}
	}
	return true
}

func wantFields(t testing.TB, what string, m, want map[string]any) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if m[k] != want[k] {
			t.Errorf("%s: got %s %v, want %v; line: %v", what, k, m[k], want[k], m)
		}
	}
}

// span is a line of the trace file (see telemetry.TraceFile).
type span struct {
	TraceID      string         `json:"trace_id"`
	SpanID       string         `json:"span_id"`
	ParentSpanID string         `json:"parent_span_id"`
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	Start        time.Time      `json:"start"`
	End          time.Time      `json:"end"`
	DurationMS   float64        `json:"duration_ms"`
	Attributes   map[string]any `json:"attributes"`
	Status       struct {
		Code    int32  `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	Annotations []struct {
		Message    string         `json:"message"`
		Attributes map[string]any `json:"attributes"`
	} `json:"annotations"`
}

// readJSONLines reads a file of one JSON object per line (a trace file,
// an audit log).
func readJSONLines[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// findSpan returns the one span of trace named name.
func findSpan(t testing.TB, spans []span, trace, name string) span {
	t.Helper()
	var found []span
	var names []string
	for _, s := range spans {
		if s.TraceID == trace {
			names = append(names, s.Name)
			if s.Name == name {
				found = append(found, s)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("trace %s: got %d %q spans (spans of the trace: %v; %d spans in the file), want 1", trace, len(found), name, names, len(spans))
	}
	return found[0]
}
