package telemetry

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opencensus.io/trace"
	"go.opencensus.io/zpages"
)

// readJSONLines parses a file of one JSON object per line (a trace file,
// an audit log).
func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var spans []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s map[string]any
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("line %d %q: %v", len(spans)+1, sc.Text(), err)
		}
		spans = append(spans, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return spans
}

func TestTraceFile(t *testing.T) {
	alwaysSample(t)
	path := filepath.Join(t.TempDir(), "traces.jsonl")
	tf, err := NewTraceFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()

	ctx, parent := trace.StartSpan(context.Background(), "parent", trace.WithSpanKind(trace.SpanKindServer))
	parent.AddAttributes(trace.StringAttribute("topic", "orders"), trace.Int64Attribute("records", 3),
		trace.BoolAttribute("ok", true), trace.Float64Attribute("nan", math.NaN()))
	_, child := trace.StartSpan(ctx, "child")
	child.Annotate([]trace.Attribute{trace.Int64Attribute("offset", 42)}, "appended")
	child.SetStatus(trace.Status{Code: 5, Message: "topic not found"})
	time.Sleep(time.Millisecond)
	child.End()
	parent.End()
	if err := tf.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Spans ending after Close are not written (nor do they fail).
	_, late := trace.StartSpan(context.Background(), "late")
	late.End()

	spans := readJSONLines(t, path)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2: %v", len(spans), spans)
	}
	c, p := spans[0], spans[1] // a child ends first
	if c["name"] != "child" || p["name"] != "parent" {
		t.Fatalf("span names %v, %v; want child, parent", c["name"], p["name"])
	}
	pc := parent.SpanContext()
	if p["trace_id"] != pc.TraceID.String() || p["span_id"] != pc.SpanID.String() {
		t.Errorf("parent ids %v/%v, want %v/%v", p["trace_id"], p["span_id"], pc.TraceID, pc.SpanID)
	}
	if _, ok := p["parent_span_id"]; ok {
		t.Errorf("root span has parent_span_id %v", p["parent_span_id"])
	}
	if c["trace_id"] != p["trace_id"] || c["parent_span_id"] != p["span_id"] {
		t.Errorf("child trace %v parent %v; want trace %v parent %v", c["trace_id"], c["parent_span_id"], p["trace_id"], p["span_id"])
	}
	if p["kind"] != "server" {
		t.Errorf("parent kind %v, want server", p["kind"])
	}
	attrs, _ := p["attributes"].(map[string]any)
	if attrs["topic"] != "orders" || attrs["records"] != 3.0 || attrs["ok"] != true || attrs["nan"] != "NaN" {
		t.Errorf("parent attributes %v", p["attributes"])
	}
	if st, _ := c["status"].(map[string]any); st["code"] != 5.0 || st["message"] != "topic not found" {
		t.Errorf("child status %v, want code 5 and its message", c["status"])
	}
	if st, _ := p["status"].(map[string]any); st["code"] != 0.0 {
		t.Errorf("parent status %v, want code 0", p["status"])
	}
	anns, _ := c["annotations"].([]any)
	if len(anns) != 1 {
		t.Fatalf("child annotations %v, want 1", c["annotations"])
	}
	if a := anns[0].(map[string]any); a["message"] != "appended" || a["attributes"].(map[string]any)["offset"] != 42.0 {
		t.Errorf("child annotation %v", a)
	}
	for _, s := range spans {
		start, err1 := time.Parse(time.RFC3339Nano, s["start"].(string))
		end, err2 := time.Parse(time.RFC3339Nano, s["end"].(string))
		if err1 != nil || err2 != nil {
			t.Fatalf("times %v %v: %v %v", s["start"], s["end"], err1, err2)
		}
		d := s["duration_ms"].(float64)
		if d < 1 || math.Abs(d-float64(end.Sub(start))/1e6) > 1e-3 {
			t.Errorf("%v: duration_ms %v, start %v, end %v", s["name"], d, start, end)
		}
	}
}

func TestTraceFileConcurrent(t *testing.T) {
	alwaysSample(t)
	path := filepath.Join(t.TempDir(), "traces.jsonl")
	tf, err := NewTraceFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, spans = 8, 100
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < spans; i++ {
				_, s := trace.StartSpan(context.Background(), "concurrent")
				s.AddAttributes(trace.Int64Attribute("i", int64(i)))
				s.End()
			}
		}()
	}
	wg.Wait()
	if err := tf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tf.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := readJSONLines(t, path); len(got) != goroutines*spans {
		t.Errorf("%d lines, want %d", len(got), goroutines*spans)
	}
}

func TestNewTraceFileError(t *testing.T) {
	if _, err := NewTraceFile(filepath.Join(t.TempDir(), "no", "such", "dir", "t.jsonl")); err == nil {
		t.Error("NewTraceFile in a missing directory: no error")
	}
}

func TestConfigureTracing(t *testing.T) {
	t.Cleanup(func() { ConfigureTracing(1e-4) })
	sampled := func(n int) int {
		k := 0
		for i := 0; i < n; i++ {
			_, s := trace.StartSpan(context.Background(), "x")
			if s.SpanContext().IsSampled() {
				k++
			}
			s.End()
		}
		return k
	}
	for _, c := range []struct {
		p        float64
		min, max int
	}{
		{1, 1000, 1000},
		{2, 1000, 1000},
		{0, 0, 0},
		{-1, 0, 0},
		{math.NaN(), 0, 0},
		{0.5, 350, 650}, // binomial(1000, 0.5): sd 16
	} {
		ConfigureTracing(c.p)
		if k := sampled(1000); k < c.min || k > c.max {
			t.Errorf("ConfigureTracing(%v): %d of 1000 sampled, want %d..%d", c.p, k, c.min, c.max)
		}
	}
	// Children of a sampled span are sampled whatever the probability.
	ConfigureTracing(1)
	ctx, root := trace.StartSpan(context.Background(), "root")
	ConfigureTracing(0)
	_, child := trace.StartSpan(ctx, "child")
	if !child.SpanContext().IsSampled() {
		t.Error("child of a sampled span not sampled")
	}
	child.End()
	root.End()
}

// tracezSpans returns what /debug/tracez lists for spans named name that
// ended (in every latency bucket) or still run.
func tracezSpans(name string) string {
	var b strings.Builder
	zpages.WriteTextTracezSpans(&b, name, 0, 0)
	for bucket := 0; bucket <= 8; bucket++ {
		zpages.WriteTextTracezSpans(&b, name, 1, bucket)
	}
	return b.String()
}

// The sampling tracer records sampled spans as OpenCensus does (tracez,
// exporters, children sampled) and unsampled ones not at all, while they
// keep their trace IDs for log lines and children.
func TestSampledTracer(t *testing.T) {
	t.Cleanup(func() { ConfigureTracing(1e-4) })
	OperatorMux(OperatorOptions{}) // zPages: the local span store is on
	rec := recordSpans(t)

	ConfigureTracing(0)
	ctx, root := trace.StartSpan(context.Background(), "logd.test.unsampled")
	_, child := trace.StartSpan(ctx, "logd.test.unsampled")
	for _, s := range []*trace.Span{root, child} {
		if s.SpanContext().IsSampled() || s.IsRecordingEvents() {
			t.Errorf("span %v: sampled %v, recording %v with sampling off", s, s.SpanContext().IsSampled(), s.IsRecordingEvents())
		}
		if s.SpanContext().TraceID == (trace.TraceID{}) || s.SpanContext().SpanID == (trace.SpanID{}) {
			t.Errorf("span %v: zero IDs %v", s, s.SpanContext())
		}
	}
	if root.SpanContext().TraceID != child.SpanContext().TraceID || root.SpanContext().SpanID == child.SpanContext().SpanID {
		t.Errorf("child %v of %v: want the parent's trace and its own span ID", child.SpanContext(), root.SpanContext())
	}
	if trace.FromContext(ctx) != root {
		t.Error("FromContext does not return the unsampled span")
	}
	child.End()
	root.End()
	if got := tracezSpans("logd.test.unsampled"); strings.Contains(got, "trace_id") {
		t.Errorf("tracez lists unsampled spans:\n%s", got)
	}

	// zPages keeps a span a second per name and latency bucket: names of
	// this run's own.
	rootName, childName := uniqueTopic(t), uniqueTopic(t)
	ConfigureTracing(1)
	ctx, root = trace.StartSpan(context.Background(), rootName)
	ConfigureTracing(0)
	_, child = trace.StartSpan(ctx, childName)
	if !root.IsRecordingEvents() || !child.SpanContext().IsSampled() || child.SpanContext().TraceID != root.SpanContext().TraceID {
		t.Errorf("sampled root %v, child %v: want both sampled, recording, one trace", root.SpanContext(), child.SpanContext())
	}
	child.End()
	root.End()
	tid := root.SpanContext().TraceID.String()
	for _, name := range []string{rootName, childName} {
		if got := tracezSpans(name); strings.Count(got, tid) != 1 {
			t.Errorf("tracez lists %d spans %s of trace %s, want 1:\n%s", strings.Count(got, tid), name, tid, got)
		}
	}
	exported := 0
	for _, s := range rec.get() {
		if s.TraceID.String() == tid {
			exported++
		}
		if s.Name == "logd.test.unsampled" {
			t.Errorf("unsampled span exported: %v", s)
		}
	}
	if exported != 2 {
		t.Errorf("exported %d spans of the sampled trace, want 2", exported)
	}

	// A remote parent: sampled, it makes the span sampled (as OpenCensus's
	// probability sampler does); unsampled, the sampler decides.
	remote := trace.SpanContext{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceOptions: 1}
	_, s := trace.StartSpanWithRemoteParent(context.Background(), "logd.test.remote", remote, trace.WithSampler(trace.ProbabilitySampler(0)))
	if !s.SpanContext().IsSampled() || s.SpanContext().TraceID != remote.TraceID {
		t.Errorf("span of a sampled remote parent: got %v, want sampled in trace %v", s.SpanContext(), remote.TraceID)
	}
	s.End()
	remote.TraceOptions = 0
	_, s = trace.StartSpanWithRemoteParent(context.Background(), "logd.test.remote", remote)
	if s.SpanContext().IsSampled() || s.SpanContext().TraceID != remote.TraceID {
		t.Errorf("span of an unsampled remote parent, sampling off: got %v, want unsampled in trace %v", s.SpanContext(), remote.TraceID)
	}
	s.End()
}

// A call's spans when the call is not sampled (the common case: 1% are by
// default): a server span and two children with attributes, as a produce
// makes them, with zPages serving. "opencensus" is OpenCensus's own tracer,
// the baseline, which records all of it in the local span store; "sampled"
// is the tracer ConfigureTracing installs.
func BenchmarkUnsampledCallSpans(b *testing.B) {
	b.Cleanup(func() { ConfigureTracing(1e-4) })
	OperatorMux(OperatorOptions{})
	ConfigureTracing(0.01)
	for _, tc := range []struct {
		name string
		t    trace.Tracer
	}{{"tracer=opencensus", tracer.base}, {"tracer=sampled", tracer}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				ctx, call := tc.t.StartSpan(context.Background(), "logd.bench.call", trace.WithSpanKind(trace.SpanKindServer))
				if call.SpanContext().IsSampled() {
					n++
				}
				for _, name := range []string{"logd.bench.append", "logd.bench.sync_wait"} {
					_, s := tc.t.StartSpan(ctx, name)
					s.AddAttributes(trace.StringAttribute("topic", "bench"), trace.Int64Attribute("offset", 1))
					s.End()
				}
				call.AddMessageReceiveEvent(1, 300, 300)
				call.SetStatus(trace.Status{})
				call.End()
			}
			b.ReportMetric(float64(n)/float64(b.N), "sampled/op")
		})
	}
}
