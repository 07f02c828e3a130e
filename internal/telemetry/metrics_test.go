package telemetry

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opencensus.io/metric/metricdata"
	"go.opencensus.io/metric/metricproducer"
	"go.opencensus.io/stats"
	"go.opencensus.io/stats/view"
	"go.opencensus.io/tag"
	"go.opencensus.io/trace"
)

// inPlaceSeries returns the series of m's in-place metric name (see
// inPlace) whose labels are exactly labels, or nil.
func inPlaceSeries(t *testing.T, m *Metrics, name string, labels map[string]string) *metricdata.TimeSeries {
	t.Helper()
	for _, mt := range m.inPlace.metrics() {
		if mt.Descriptor.Name != name {
			continue
		}
	series:
		for _, ts := range mt.TimeSeries {
			if len(ts.LabelValues) != len(labels) {
				continue
			}
			for i, k := range mt.Descriptor.LabelKeys {
				if v, ok := labels[k.Key]; !ok || !ts.LabelValues[i].Present || ts.LabelValues[i].Value != v {
					continue series
				}
			}
			return ts
		}
	}
	return nil
}

func mustSeries(t *testing.T, m *Metrics, name string, labels map[string]string) *metricdata.TimeSeries {
	t.Helper()
	ts := inPlaceSeries(t, m, name, labels)
	if ts == nil {
		t.Fatalf("%s: no series with labels %v; have %v", name, labels, m.inPlace.metrics())
	}
	return ts
}

// counter returns a counter series' value.
func counter(t *testing.T, ts *metricdata.TimeSeries) int64 {
	t.Helper()
	v, ok := ts.Points[len(ts.Points)-1].Value.(int64)
	if !ok {
		t.Fatalf("point value is %T, want int64", ts.Points[len(ts.Points)-1].Value)
	}
	return v
}

// dist returns a distribution series' value and its bucket counts.
func dist(t *testing.T, ts *metricdata.TimeSeries) (*metricdata.Distribution, []int64) {
	t.Helper()
	d, ok := ts.Points[len(ts.Points)-1].Value.(*metricdata.Distribution)
	if !ok {
		t.Fatalf("point value is %T, want *metricdata.Distribution", ts.Points[len(ts.Points)-1].Value)
	}
	var counts []int64
	for _, b := range d.Buckets {
		counts = append(counts, b.Count)
	}
	return d, counts
}

func TestAppendedAndRead(t *testing.T) {
	m := newMetrics(t)
	topic := uniqueTopic(t)
	alice := withPrincipal(context.Background(), "alice")
	bob := withPrincipal(context.Background(), "bob")

	m.Appended(alice, topic, 3, 300, 2*time.Millisecond)
	m.Appended(alice, topic, 1, 50, 70*time.Microsecond)
	m.Appended(bob, topic, 2, 20, 7*time.Second)
	m.Read(bob, topic, 5, 500)
	m.Read(context.Background(), topic, 1, 10) // no principal

	byAlice := map[string]string{"topic": topic, "principal": "alice"}
	byBob := map[string]string{"topic": topic, "principal": "bob"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   int64
	}{
		{ViewRecordsAppended, byAlice, 4},
		{ViewBytesAppended, byAlice, 350},
		{ViewRecordsAppended, byBob, 2},
		{ViewBytesAppended, byBob, 20},
		{ViewRecordsRead, byBob, 5},
		{ViewBytesRead, byBob, 500},
		{ViewRecordsRead, map[string]string{"topic": topic, "principal": "unknown"}, 1},
		{ViewBytesRead, map[string]string{"topic": topic, "principal": "unknown"}, 10},
	} {
		if got := counter(t, mustSeries(t, m, c.name, c.labels)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if ts := inPlaceSeries(t, m, ViewRecordsRead, byAlice); ts != nil {
		t.Errorf("%s%v: unexpected series %v", ViewRecordsRead, byAlice, ts)
	}

	// Latency is by topic only, in milliseconds.
	d, buckets := dist(t, mustSeries(t, m, ViewAppendLatency, map[string]string{"topic": topic}))
	if d.Count != 3 || math.Abs(d.Sum-7002.07) > 1e-9 {
		t.Errorf("latency count, sum = %d, %v ms; want 3, 7002.07", d.Count, d.Sum)
	}
	// Bounds 0.05 0.1 … 1 2.5 … 5000: 0.07 ms in [0.05, 0.1), 2 ms in
	// [1, 2.5), 7 s in the overflow bucket.
	want := make([]int64, len(latencyBoundsMS)+1)
	want[1], want[5], want[len(latencyBoundsMS)] = 1, 1, 1
	if !slices.Equal(buckets, want) || !slices.Equal(d.BucketOptions.Bounds, latencyBoundsMS) {
		t.Errorf("latency buckets = %v with bounds %v, want %v with %v", buckets, d.BucketOptions.Bounds, want, latencyBoundsMS)
	}
}

func TestSynced(t *testing.T) {
	m := newMetrics(t)
	topic := uniqueTopic(t)
	m.Synced(topic, 3*time.Millisecond, 1)
	m.Synced(topic, 400*time.Microsecond, 0)
	m.Synced(topic, 30*time.Millisecond, 4)
	m.Synced(topic, time.Millisecond, 5000)

	tags := map[string]string{"topic": topic}
	lat, _ := dist(t, mustSeries(t, m, ViewFsyncLatency, tags))
	if lat.Count != 4 || math.Abs(lat.Sum-34.4) > 1e-9 {
		t.Errorf("fsync latency count, sum = %d, %v; want 4, 34.4", lat.Count, lat.Sum)
	}
	_, b := dist(t, mustSeries(t, m, ViewFsyncBatch, tags))
	// Bounds 1 2 4 … 1024: 0 below 1, 1 in [1, 2), 4 in [4, 8), 5000 over.
	want := make([]int64, len(batchBounds)+1)
	want[0], want[1], want[3], want[len(batchBounds)] = 1, 1, 1, 1
	if !slices.Equal(b, want) {
		t.Errorf("batch buckets = %v, want %v", b, want)
	}
}

// refusalSetup is the start of the tests of refusals: Metrics, spans
// always sampled and recorded, a principal of the test's own (so that
// earlier runs' rows don't count) and a call's span.
func refusalSetup(t *testing.T) (*Metrics, *spanRecorder, string, context.Context, *trace.Span) {
	t.Helper()
	m := newMetrics(t)
	alwaysSample(t)
	spans := recordSpans(t)
	ctx, span := trace.StartSpan(context.Background(), "call")
	return m, spans, uniqueTopic(t), ctx, span
}

func TestDenied(t *testing.T) {
	m, spans, principal, ctx, span := refusalSetup(t)
	m.Denied(ctx, principal, "secret/topic", "produce")
	span.End()
	m.Denied(context.Background(), principal, "other", "produce")
	m.Denied(context.Background(), principal, "other", "consume")

	for action, want := range map[string]int64{"produce": 2, "consume": 1} {
		r := mustRow(t, ViewAuthzDenials, map[string]string{"principal": principal, "action": action})
		if got := r.Data.(*view.CountData).Value; got != want {
			t.Errorf("denials %s = %d, want %d", action, got, want)
		}
	}

	if !annotated(spans, span, "permission denied", map[string]any{"topic": "secret/topic", "principal": principal, "action": "produce"}) {
		t.Errorf("no permission denied annotation on the span")
	}
}

// annotated says whether span was exported with an annotation msg that
// has attrs.
func annotated(spans *spanRecorder, span *trace.Span, msg string, attrs map[string]any) bool {
	for _, s := range spans.get() {
		if s.SpanID != span.SpanContext().SpanID {
			continue
		}
	annotations:
		for _, a := range s.Annotations {
			if a.Message != msg {
				continue
			}
			for k, v := range attrs {
				if a.Attributes[k] != v {
					continue annotations
				}
			}
			return true
		}
	}
	return false
}

func TestQuotaExceeded(t *testing.T) {
	m, spans, principal, ctx, span := refusalSetup(t)
	m.QuotaExceeded(ctx, principal, "produce_bytes", "alice/x")
	span.End()
	m.QuotaExceeded(context.Background(), principal, "produce_bytes", "alice/y")
	m.QuotaExceeded(context.Background(), principal, "streams", "")
	m.QuotaExceeded(context.Background(), "", "requests", "")

	for _, c := range []struct {
		principal, quota string
		want             int64
	}{{principal, "produce_bytes", 2}, {principal, "streams", 1}, {"unknown", "requests", 1}} {
		r := mustRow(t, ViewQuotaExceeded, map[string]string{"principal": c.principal, "quota": c.quota})
		if got := r.Data.(*view.CountData).Value; got < c.want || (c.principal == principal && got != c.want) {
			t.Errorf("quota exceeded %s/%s = %d, want %d", c.principal, c.quota, got, c.want)
		}
	}
	if !annotated(spans, span, "quota exceeded", map[string]any{"topic": "alice/x", "principal": principal, "quota": "produce_bytes"}) {
		t.Errorf("no quota exceeded annotation on the span")
	}
}

func TestTagValuesAreSanitized(t *testing.T) {
	m := newMetrics(t)
	topic := uniqueTopic(t)
	long := strings.Repeat("x", 300)
	m.Appended(withPrincipal(context.Background(), "José\n"), topic, 1, 1, time.Millisecond)
	m.Appended(withPrincipal(context.Background(), long), topic, 1, 1, time.Millisecond)

	mustSeries(t, m, ViewRecordsAppended, map[string]string{"topic": topic, "principal": "Jos??"})
	mustSeries(t, m, ViewRecordsAppended, map[string]string{"topic": topic, "principal": long[:255]})
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	ctx := context.Background()
	m.Appended(ctx, "t", 1, 1, time.Millisecond)
	m.Read(ctx, "t", 1, 1)
	m.Denied(ctx, "p", "t", "produce")
	m.QuotaExceeded(ctx, "p", "streams", "")
	m.Following("t", 1)
	m.Synced("t", time.Millisecond, 1)
	m.ObserveTopics(nil)
	m.Unregister()
}

func TestUnregister(t *testing.T) {
	m, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	m.Unregister()
	m.Unregister() // idempotent
	if _, err := view.RetrieveData(ViewAuthzDenials); err == nil {
		t.Errorf("view %s still registered after Unregister", ViewAuthzDenials)
	}
	for _, p := range metricproducer.GlobalManager().GetAll() {
		if p == m.producer {
			t.Errorf("producer still registered after Unregister")
		}
	}
	m.Appended(context.Background(), "t", 1, 1, time.Millisecond) // harmless
}

func TestConcurrentRecording(t *testing.T) {
	m := newMetrics(t)
	topic := uniqueTopic(t)
	const goroutines, calls = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := withPrincipal(context.Background(), "p")
			for i := 0; i < calls; i++ {
				m.Appended(ctx, topic, 1, 10, time.Millisecond)
				m.Read(ctx, topic, 1, 10)
				m.Following(topic, 1)
				m.Synced(topic, time.Millisecond, 1)
				m.producer.Read()
				m.Following(topic, -1)
			}
		}()
	}
	wg.Wait()
	tags := map[string]string{"topic": topic, "principal": "p"}
	if got := counter(t, mustSeries(t, m, ViewRecordsAppended, tags)); got != goroutines*calls {
		t.Errorf("records appended = %v, want %d", got, goroutines*calls)
	}
	if got := counter(t, mustSeries(t, m, ViewRecordsRead, tags)); got != goroutines*calls {
		t.Errorf("records read = %v, want %d", got, goroutines*calls)
	}
	if _, f := m.snapshot(); len(f) != 0 {
		t.Errorf("following = %v after every consumer ended, want none", f)
	}
}

// Recording an append, as a streamed record does: "record=opencensus"
// records the measures into OpenCensus views (the baseline: how Appended
// recorded them before), which hands them to OpenCensus's worker
// goroutine (its work counts here only as far as its channel pushes
// back); "record=in-place" is Appended, which adds them up where it is.
func BenchmarkAppended(b *testing.B) {
	m, err := NewMetrics(WithPrincipal(principalFrom))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Unregister()
	ctx := withPrincipal(context.Background(), "alice")
	for _, tc := range []struct {
		name   string
		views  []*view.View
		record func()
	}{
		{"record=opencensus", []*view.View{viewRecordsAppended, viewBytesAppended, viewAppendLatency}, func() {
			_ = stats.RecordWithTags(ctx,
				[]tag.Mutator{tag.Upsert(keyTopic, tagValue("bench")), tag.Upsert(keyPrincipal, m.principalOf(ctx))},
				mRecordsAppended.M(1), mBytesAppended.M(256), mAppendLatency.M(0.2))
		}},
		{"record=in-place", nil, func() { m.Appended(ctx, "bench", 1, 256, 200*time.Microsecond) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if err := view.Register(tc.views...); err != nil {
				b.Fatal(err)
			}
			defer view.Unregister(tc.views...)
			b.ReportAllocs()
			for b.Loop() {
				tc.record()
			}
		})
	}
}
