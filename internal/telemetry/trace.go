package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opencensus.io/trace"
)

// ConfigureTracing sets the sampler, which decides whether a span with
// no sampled parent is recorded: a fraction p of them; p >= 1 samples
// every span, p <= 0 (or NaN) none. Children of a sampled span are always
// sampled. Call it before serving: the first call installs the sampling
// tracer (see sampledTracer) as OpenCensus's default tracer.
func ConfigureTracing(p float64) {
	var s trace.Sampler
	switch {
	case p >= 1:
		s = trace.AlwaysSample()
	case p > 0:
		s = trace.ProbabilitySampler(p)
	default:
		s = trace.NeverSample()
	}
	trace.ApplyConfig(trace.Config{DefaultSampler: s})
	installTracer.Do(func() {
		tracer.base = trace.DefaultTracer
		trace.DefaultTracer = tracer
	})
	tracer.sampler.Store(&s)
}

var (
	tracer        = &sampledTracer{}
	installTracer sync.Once
)

// sampledTracer is OpenCensus's tracer for the spans that are sampled,
// and a cheap stand-in for the others. Serving zPages (see OperatorMux)
// turns on OpenCensus's local span store, and then OpenCensus records
// every span in full, sampled or not: its attributes, message events,
// and a place in the store, which costs more than many a call itself.
// sampledTracer decides first, as OpenCensus would, and hands only the
// spans it samples to OpenCensus's tracer (with an always-sample option,
// so that it agrees); the others get an unsampledSpan, which carries its
// trace and span IDs (for log lines and children) and records nothing.
// So /debug/tracez shows sampled spans only, and trace exporters get what
// they got before.
type sampledTracer struct {
	base    trace.Tracer                  // OpenCensus's
	sampler atomic.Pointer[trace.Sampler] // the default sampler
}

var _ trace.Tracer = (*sampledTracer)(nil)

// sample decides like OpenCensus: a span whose options carry a sampler,
// or without a local parent, asks that sampler or the default one; the
// child of a local span keeps its parent's decision.
func (t *sampledTracer) sample(o []trace.StartOption, parent trace.SpanContext, local bool, sc trace.SpanContext, name string) bool {
	var opts trace.StartOptions
	for _, op := range o {
		op(&opts)
	}
	if local && opts.Sampler == nil {
		return parent.IsSampled()
	}
	s := opts.Sampler
	if s == nil {
		s = *t.sampler.Load()
	}
	return s(trace.SamplingParameters{
		ParentContext:   parent,
		TraceID:         sc.TraceID,
		SpanID:          sc.SpanID,
		Name:            name,
		HasRemoteParent: !local && parent != (trace.SpanContext{}),
	}).Sample
}

func (t *sampledTracer) StartSpan(ctx context.Context, name string, o ...trace.StartOption) (context.Context, *trace.Span) {
	var parent trace.SpanContext
	p := t.base.FromContext(ctx)
	if p != nil {
		parent = p.SpanContext()
	}
	sc := childContext(parent)
	if t.sample(o, parent, p != nil, sc, name) {
		return t.base.StartSpan(ctx, name, withAlwaysSample(o)...)
	}
	return t.unsampled(ctx, sc)
}

func (t *sampledTracer) StartSpanWithRemoteParent(ctx context.Context, name string, parent trace.SpanContext, o ...trace.StartOption) (context.Context, *trace.Span) {
	sc := childContext(parent)
	if t.sample(o, parent, false, sc, name) {
		return t.base.StartSpanWithRemoteParent(ctx, name, parent, withAlwaysSample(o)...)
	}
	return t.unsampled(ctx, sc)
}

func (t *sampledTracer) FromContext(ctx context.Context) *trace.Span { return t.base.FromContext(ctx) }

func (t *sampledTracer) NewContext(parent context.Context, s *trace.Span) context.Context {
	return t.base.NewContext(parent, s)
}

// unsampled returns ctx with an unsampledSpan of sc.
func (t *sampledTracer) unsampled(ctx context.Context, sc trace.SpanContext) (context.Context, *trace.Span) {
	sc.TraceOptions &^= 1 // not sampled
	s := trace.NewSpan(unsampledSpan{sc: sc})
	return t.base.NewContext(ctx, s), s
}

// childContext returns the context of a new span under parent: parent's
// trace (a new one if parent is zero) and a new span ID.
func childContext(parent trace.SpanContext) trace.SpanContext {
	sc := parent
	if sc.TraceID == (trace.TraceID{}) {
		for sc.TraceID == (trace.TraceID{}) {
			binary.BigEndian.PutUint64(sc.TraceID[:8], rand.Uint64())
			binary.BigEndian.PutUint64(sc.TraceID[8:], rand.Uint64())
		}
	}
	sc.SpanID = trace.SpanID{}
	for sc.SpanID == (trace.SpanID{}) {
		binary.BigEndian.PutUint64(sc.SpanID[:], rand.Uint64())
	}
	return sc
}

// withAlwaysSample returns o with an always-sample option last, which wins.
func withAlwaysSample(o []trace.StartOption) []trace.StartOption {
	return append(o[:len(o):len(o)], trace.WithSampler(trace.AlwaysSample()))
}

// unsampledSpan is a span that is not sampled: it has a SpanContext and
// records nothing.
type unsampledSpan struct{ sc trace.SpanContext }

var _ trace.SpanInterface = unsampledSpan{}

func (s unsampledSpan) IsRecordingEvents() bool                     { return false }
func (s unsampledSpan) End()                                        {}
func (s unsampledSpan) SpanContext() trace.SpanContext              { return s.sc }
func (s unsampledSpan) SetName(string)                              {}
func (s unsampledSpan) SetStatus(trace.Status)                      {}
func (s unsampledSpan) AddAttributes(...trace.Attribute)            {}
func (s unsampledSpan) Annotate([]trace.Attribute, string)          {}
func (s unsampledSpan) Annotatef([]trace.Attribute, string, ...any) {}
func (s unsampledSpan) AddMessageSendEvent(int64, int64, int64)     {}
func (s unsampledSpan) AddMessageReceiveEvent(int64, int64, int64)  {}
func (s unsampledSpan) AddLink(trace.Link)                          {}
func (s unsampledSpan) String() string                              { return "span " + s.sc.SpanID.String() }

// TraceFile is a trace.Exporter that appends each sampled span, when it
// ends, to a file as one JSON object per line:
//
//	{"trace_id":"…","span_id":"…","parent_span_id":"…","name":"log.v1.Log.Produce",
//	 "kind":"server","start":"2024-…Z","end":"…","duration_ms":1.25,
//	 "status":{"code":0,"message":""},"attributes":{…},
//	 "annotations":[{"time":"…","message":"…","attributes":{…}}],
//	 "links":[{"trace_id":"…","span_id":"…","type":"parent"}]}
//
// parent_span_id is absent for a root span, and kind, attributes,
// annotations and links when there are none. Status codes are gRPC
// codes. Each line is written with a single write call. Its methods are
// safe for concurrent use.
type TraceFile struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
	err    error // first write error
}

// NewTraceFile opens path for appending (creating it, mode 0640) and
// registers the TraceFile as an OpenCensus trace exporter.
func NewTraceFile(path string) (*TraceFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("telemetry: trace file: %w", err)
	}
	t := &TraceFile{f: f}
	trace.RegisterExporter(t)
	return t, nil
}

// ExportSpan implements trace.Exporter: it writes s as one line. Spans
// ending after Close are dropped.
func (t *TraceFile) ExportSpan(s *trace.SpanData) {
	line, err := json.Marshal(spanRecord(s))
	if err != nil { // cannot happen: spanRecord makes every value encodable
		return
	}
	line = append(line, '\n')
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if _, err := t.f.Write(line); err != nil && t.err == nil {
		t.err = err
	}
}

// Close unregisters the exporter and closes the file. It returns the
// first error writing a span, if any, or closing the file.
func (t *TraceFile) Close() error {
	trace.UnregisterExporter(t)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var werr error
	if t.err != nil {
		werr = fmt.Errorf("telemetry: write trace file: %w", t.err)
	}
	return errors.Join(werr, t.f.Close())
}

type spanJSON struct {
	TraceID      string           `json:"trace_id"`
	SpanID       string           `json:"span_id"`
	ParentSpanID string           `json:"parent_span_id,omitempty"`
	Name         string           `json:"name"`
	Kind         string           `json:"kind,omitempty"`
	Start        time.Time        `json:"start"`
	End          time.Time        `json:"end"`
	DurationMS   float64          `json:"duration_ms"`
	Status       statusJSON       `json:"status"`
	Attributes   map[string]any   `json:"attributes,omitempty"`
	Annotations  []annotationJSON `json:"annotations,omitempty"`
	Links        []linkJSON       `json:"links,omitempty"`
	RemoteParent bool             `json:"remote_parent,omitempty"`
}

type statusJSON struct {
	Code    int32  `json:"code"`
	Message string `json:"message"`
}

type annotationJSON struct {
	Time       time.Time      `json:"time"`
	Message    string         `json:"message"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

type linkJSON struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
	Type    string `json:"type,omitempty"`
}

func spanRecord(s *trace.SpanData) spanJSON {
	r := spanJSON{
		TraceID:      s.TraceID.String(),
		SpanID:       s.SpanID.String(),
		Name:         s.Name,
		Start:        s.StartTime,
		End:          s.EndTime,
		DurationMS:   milliseconds(s.EndTime.Sub(s.StartTime)),
		Status:       statusJSON{Code: s.Code, Message: s.Message},
		Attributes:   attributes(s.Attributes),
		RemoteParent: s.HasRemoteParent,
	}
	if s.ParentSpanID != (trace.SpanID{}) {
		r.ParentSpanID = s.ParentSpanID.String()
	}
	switch s.SpanKind {
	case trace.SpanKindServer:
		r.Kind = "server"
	case trace.SpanKindClient:
		r.Kind = "client"
	}
	for _, a := range s.Annotations {
		r.Annotations = append(r.Annotations, annotationJSON{Time: a.Time, Message: a.Message, Attributes: attributes(a.Attributes)})
	}
	for _, l := range s.Links {
		lj := linkJSON{TraceID: l.TraceID.String(), SpanID: l.SpanID.String()}
		switch l.Type {
		case trace.LinkTypeChild:
			lj.Type = "child"
		case trace.LinkTypeParent:
			lj.Type = "parent"
		}
		r.Links = append(r.Links, lj)
	}
	return r
}

// attributes copies attribute values (string, bool, int64, float64) into
// a map JSON can encode: non-finite floats become strings.
func attributes(in map[string]any) map[string]any {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]any, len(in))
	for k, v := range in {
		switch x := v.(type) {
		case string, bool, int64:
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v = fmt.Sprint(x)
			}
		default:
			v = fmt.Sprint(x)
		}
		out[k] = v
	}
	return out
}
