package telemetry

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.opencensus.io/stats/view"
	"go.opencensus.io/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// OpenCensus starts its view worker in an init function; it runs for
	// the life of the process.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

var topicSeq atomic.Int64

// uniqueTopic returns a topic name no other test (or run, with -count)
// uses, so that rows left in OpenCensus globals cannot be confused.
func uniqueTopic(t *testing.T) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	return fmt.Sprintf("%s-%d", name, topicSeq.Add(1))
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p string) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

// newMetrics returns a Metrics whose views and producer are unregistered
// when the test ends.
func newMetrics(t *testing.T, opts ...Option) *Metrics {
	t.Helper()
	m, err := NewMetrics(append([]Option{WithPrincipal(principalFrom)}, opts...)...)
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	t.Cleanup(m.Unregister)
	return m
}

// row returns the row of a view whose tags are exactly tags, or nil.
func row(t *testing.T, viewName string, tags map[string]string) *view.Row {
	t.Helper()
	rows, err := view.RetrieveData(viewName)
	if err != nil {
		t.Fatalf("RetrieveData(%s): %v", viewName, err)
	}
	for _, r := range rows {
		if len(r.Tags) != len(tags) {
			continue
		}
		match := true
		for _, tg := range r.Tags {
			if v, ok := tags[tg.Key.Name()]; !ok || v != tg.Value {
				match = false
			}
		}
		if match {
			return r
		}
	}
	return nil
}

func mustRow(t *testing.T, viewName string, tags map[string]string) *view.Row {
	t.Helper()
	r := row(t, viewName, tags)
	if r == nil {
		rows, _ := view.RetrieveData(viewName)
		t.Fatalf("%s: no row with tags %v; rows: %v", viewName, tags, rows)
	}
	return r
}

// alwaysSample samples every span until the test ends.
func alwaysSample(t *testing.T) {
	ConfigureTracing(1)
	t.Cleanup(func() { ConfigureTracing(1e-4) }) // OpenCensus's default
}

// spanRecorder is a trace exporter that keeps the spans it is given.
type spanRecorder struct {
	mu    sync.Mutex
	spans []*trace.SpanData
}

func recordSpans(t *testing.T) *spanRecorder {
	r := &spanRecorder{}
	trace.RegisterExporter(r)
	t.Cleanup(func() { trace.UnregisterExporter(r) })
	return r
}

func (r *spanRecorder) ExportSpan(s *trace.SpanData) {
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
}

func (r *spanRecorder) get() []*trace.SpanData {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*trace.SpanData(nil), r.spans...)
}
