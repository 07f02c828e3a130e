package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	ocprom "contrib.go.opencensus.io/exporter/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opencensus.io/metric/metricproducer"
	"go.opencensus.io/plugin/ocgrpc"
	"go.opencensus.io/stats"
	"go.opencensus.io/stats/view"
	"go.opencensus.io/tag"
	"go.opencensus.io/trace"
	"go.uber.org/zap"
)

// Tag keys. They become Prometheus labels of the same names.
var (
	keyTopic     = tag.MustNewKey("topic")
	keyPrincipal = tag.MustNewKey("principal")
	keyAction    = tag.MustNewKey("action")
	keyQuota     = tag.MustNewKey("quota")
)

// Measures: what the server and storage record.
var (
	mRecordsAppended = stats.Int64("logd/records_appended", "Records appended and acknowledged to producers", stats.UnitDimensionless)
	mBytesAppended   = stats.Int64("logd/bytes_appended", "Bytes of record values appended and acknowledged", stats.UnitBytes)
	mRecordsRead     = stats.Int64("logd/records_read", "Records sent to consumers", stats.UnitDimensionless)
	mBytesRead       = stats.Int64("logd/bytes_read", "Bytes of record values sent to consumers", stats.UnitBytes)
	mAppendLatency   = stats.Float64("logd/append_latency", "Time from an append request to its acknowledgement, write and fsync wait included", stats.UnitMilliseconds)
	mFsyncLatency    = stats.Float64("logd/fsync_latency", "Time one fsync of a topic's active segment took", stats.UnitMilliseconds)
	mFsyncRecords    = stats.Int64("logd/fsync_records", "Records made durable by one fsync", stats.UnitDimensionless)
	mDenials         = stats.Int64("logd/authz_denials", "Calls refused by the ACL", stats.UnitDimensionless)
	mQuotaExceeded   = stats.Int64("logd/quota_exceeded", "Calls refused by a quota", stats.UnitDimensionless)
)

// Bucket bounds. OpenCensus buckets are [lower, upper).
var (
	latencyBoundsMS = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}
	batchBounds     = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}
)

// View names, which the Prometheus exporter turns into metric names by
// replacing '/' with '_'.
const (
	ViewRecordsAppended = "logd/records_appended_total"
	ViewBytesAppended   = "logd/bytes_appended_total"
	ViewRecordsRead     = "logd/records_read_total"
	ViewBytesRead       = "logd/bytes_read_total"
	ViewAppendLatency   = "logd/append_latency_milliseconds"
	ViewFsyncLatency    = "logd/fsync_latency_milliseconds"
	ViewFsyncBatch      = "logd/fsync_batch_records"
	ViewAuthzDenials    = "logd/authz_denials_total"
	ViewQuotaExceeded   = "logd/quota_exceeded_total"
)

// Views: how measures are aggregated and exported.
var (
	viewRecordsAppended = &view.View{
		Name:        ViewRecordsAppended,
		Description: "Records appended and acknowledged to producers",
		Measure:     mRecordsAppended,
		TagKeys:     []tag.Key{keyTopic, keyPrincipal},
		Aggregation: view.Sum(),
	}
	viewBytesAppended = &view.View{
		Name:        ViewBytesAppended,
		Description: "Bytes of record values appended and acknowledged to producers",
		Measure:     mBytesAppended,
		TagKeys:     []tag.Key{keyTopic, keyPrincipal},
		Aggregation: view.Sum(),
	}
	viewRecordsRead = &view.View{
		Name:        ViewRecordsRead,
		Description: "Records sent to consumers",
		Measure:     mRecordsRead,
		TagKeys:     []tag.Key{keyTopic, keyPrincipal},
		Aggregation: view.Sum(),
	}
	viewBytesRead = &view.View{
		Name:        ViewBytesRead,
		Description: "Bytes of record values sent to consumers",
		Measure:     mBytesRead,
		TagKeys:     []tag.Key{keyTopic, keyPrincipal},
		Aggregation: view.Sum(),
	}
	viewAppendLatency = &view.View{
		Name:        ViewAppendLatency,
		Description: "Time from an append request to its acknowledgement, in milliseconds",
		Measure:     mAppendLatency,
		TagKeys:     []tag.Key{keyTopic},
		Aggregation: view.Distribution(latencyBoundsMS...),
	}
	viewFsyncLatency = &view.View{
		Name:        ViewFsyncLatency,
		Description: "Time one fsync of a topic's active segment took, in milliseconds",
		Measure:     mFsyncLatency,
		TagKeys:     []tag.Key{keyTopic},
		Aggregation: view.Distribution(latencyBoundsMS...),
	}
	viewFsyncBatch = &view.View{
		Name:        ViewFsyncBatch,
		Description: "Records made durable by one fsync (buckets count values below le)",
		Measure:     mFsyncRecords,
		TagKeys:     []tag.Key{keyTopic},
		Aggregation: view.Distribution(batchBounds...),
	}
	viewAuthzDenials = &view.View{
		Name:        ViewAuthzDenials,
		Description: "Calls refused by the ACL",
		Measure:     mDenials,
		TagKeys:     []tag.Key{keyPrincipal, keyAction},
		Aggregation: view.Count(),
	}
	viewQuotaExceeded = &view.View{
		Name:        ViewQuotaExceeded,
		Description: "Calls refused by a quota",
		Measure:     mQuotaExceeded,
		TagKeys:     []tag.Key{keyPrincipal, keyQuota},
		Aggregation: view.Count(),
	}
)

// views returns every view NewMetrics registers: logd's rare events and
// ocgrpc's default server views. The views of appends, reads and fsyncs
// (viewRecordsAppended, …) define series that inPlace aggregates instead.
func views() []*view.View {
	v := []*view.View{viewAuthzDenials, viewConfigReloads, viewQuotaExceeded}
	return append(v, ocgrpc.DefaultServerViews...)
}

// Metrics records what logd does into OpenCensus views and serves them,
// with the storage gauges and the Go and process collectors, to
// Prometheus. Create it with NewMetrics, once per process. Its methods
// are safe for concurrent use; those of a nil *Metrics do nothing.
type Metrics struct {
	principal func(context.Context) string
	logger    *zap.Logger
	handler   http.Handler
	producer  *producer

	inPlace *inPlace // appends, reads and fsyncs

	mu           sync.Mutex
	following    map[string]int64 // open tail consumers by topic; no zero entries
	source       TopicSource      // nil: no storage gauges
	unregistered bool
}

// Option configures NewMetrics.
type Option func(*Metrics)

// WithPrincipal sets how Appended and Read find the caller's principal in
// the call's context. Without it, or if it returns "", the principal label
// is "unknown".
func WithPrincipal(f func(context.Context) string) Option {
	return func(m *Metrics) { m.principal = f }
}

// WithLogger sets where errors exporting metrics are logged. Without it,
// they go to the standard library's log package.
func WithLogger(l *zap.Logger) Option {
	return func(m *Metrics) { m.logger = l }
}

// NewMetrics registers logd's views and ocgrpc.DefaultServerViews with
// OpenCensus, adds the gauge producer (topic gauges, see ObserveTopics,
// and tail consumers) to the global metric producer manager, and builds
// the Prometheus handler on a registry of its own. Call it once per
// process; Unregister undoes it.
func NewMetrics(opts ...Option) (*Metrics, error) {
	m := &Metrics{following: map[string]int64{}, inPlace: newInPlace()}
	for _, o := range opts {
		o(m)
	}
	if err := view.Register(views()...); err != nil {
		return nil, fmt.Errorf("telemetry: register views: %w", err)
	}
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		view.Unregister(views()...)
		return nil, fmt.Errorf("telemetry: register Prometheus collectors: %w", err)
	}
	m.producer = &producer{m: m}
	metricproducer.GlobalManager().AddProducer(m.producer)

	eopts := ocprom.Options{Registry: reg}
	hopts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	if m.logger != nil {
		l := m.logger
		eopts.OnError = func(err error) { l.Warn("export metrics", zap.Error(err)) }
		hopts.ErrorLog = zap.NewStdLog(l.With(zap.String("component", "prometheus")))
	}
	// The exporter registers its collector, which reads every producer of
	// the global manager (views and gauges) at each scrape, with reg.
	if _, err := ocprom.NewExporter(eopts); err != nil {
		m.Unregister()
		return nil, fmt.Errorf("telemetry: Prometheus exporter: %w", err)
	}
	// Serve reg ourselves rather than through the exporter so that one bad
	// series does not fail the whole scrape.
	m.handler = promhttp.HandlerFor(reg, hopts)
	return m, nil
}

// Handler returns the Prometheus scrape handler: OpenCensus views and
// gauges, and the go_* and process_* series.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Unregister unregisters the views NewMetrics registered (including
// ocgrpc's, which zpages also shows) and removes the gauge producer. It is
// for tests and shutdown; recording afterwards is harmless but lost.
func (m *Metrics) Unregister() {
	if m == nil {
		return
	}
	m.mu.Lock()
	done := m.unregistered
	m.unregistered = true
	m.mu.Unlock()
	if done {
		return
	}
	metricproducer.GlobalManager().DeleteProducer(m.producer)
	view.Unregister(views()...)
}

// Appended records records acknowledged to a producer on topic: how many,
// the bytes of their values, and how long the append took.
func (m *Metrics) Appended(ctx context.Context, topic string, records, bytes int, latency time.Duration) {
	if m == nil {
		return
	}
	m.inPlace.appendedTo(series{tagValue(topic), m.principalOf(ctx)}, records, bytes, milliseconds(latency))
}

// Read records records sent to a consumer of topic.
func (m *Metrics) Read(ctx context.Context, topic string, records, bytes int) {
	if m == nil {
		return
	}
	m.inPlace.readFrom(series{tagValue(topic), m.principalOf(ctx)}, records, bytes)
}

// Denied records a call by principal refused by the ACL for action on
// topic. The topic is not a label (see the package documentation): it goes,
// with the principal and action, into an annotation on ctx's span.
func (m *Metrics) Denied(ctx context.Context, principal, topic, action string) {
	if m == nil {
		return
	}
	if span := trace.FromContext(ctx); span != nil && span.IsRecordingEvents() {
		span.Annotate([]trace.Attribute{
			trace.StringAttribute("principal", principal),
			trace.StringAttribute("topic", topic),
			trace.StringAttribute("action", action),
		}, "permission denied")
	}
	if principal == "" {
		principal = "unknown"
	}
	_ = stats.RecordWithTags(ctx,
		[]tag.Mutator{tag.Upsert(keyPrincipal, tagValue(principal)), tag.Upsert(keyAction, tagValue(action))},
		mDenials.M(1))
}

// QuotaExceeded records a call by principal refused by quota (its kind,
// see package quota). The topic, like a denial's, is not a label but an
// annotation on ctx's span.
func (m *Metrics) QuotaExceeded(ctx context.Context, principal, quota, topic string) {
	if m == nil {
		return
	}
	if span := trace.FromContext(ctx); span != nil && span.IsRecordingEvents() {
		attrs := []trace.Attribute{trace.StringAttribute("principal", principal), trace.StringAttribute("quota", quota)}
		if topic != "" {
			attrs = append(attrs, trace.StringAttribute("topic", topic))
		}
		span.Annotate(attrs, "quota exceeded")
	}
	if principal == "" {
		principal = "unknown"
	}
	_ = stats.RecordWithTags(ctx,
		[]tag.Mutator{tag.Upsert(keyPrincipal, tagValue(principal)), tag.Upsert(keyQuota, tagValue(quota))},
		mQuotaExceeded.M(1))
}

// Following adds delta to the open tail consumers of topic: +1 when a
// ConsumeStream opens, -1 when it ends.
func (m *Metrics) Following(topic string, delta int) {
	if m == nil || delta == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.following[topic] + int64(delta); n != 0 {
		m.following[topic] = n
	} else {
		delete(m.following, topic)
	}
}

// Synced records one fsync of topic's log: how long it took and how many
// records it made durable (0 if it covered none).
func (m *Metrics) Synced(topic string, d time.Duration, records uint64) {
	if m == nil {
		return
	}
	m.inPlace.synced(tagValue(topic), milliseconds(d), int64(min(records, 1<<62)))
}

// ObserveTopics makes the gauge producer report the storage gauges of
// src's topics at each scrape, replacing any previous source; nil stops
// them. The tail consumer gauges are reported whatever the source.
func (m *Metrics) ObserveTopics(src TopicSource) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.source = src
	m.mu.Unlock()
}

// snapshot returns the topic source and a copy of the following counts.
func (m *Metrics) snapshot() (TopicSource, map[string]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := make(map[string]int64, len(m.following))
	for k, v := range m.following {
		f[k] = v
	}
	return m.source, f
}

// series is a (topic, principal) pair: the labels of the append and
// read counters.
type series struct{ topic, principal string }

func (m *Metrics) principalOf(ctx context.Context) string {
	var p string
	if m.principal != nil {
		p = m.principal(ctx)
	}
	if p == "" {
		return "unknown"
	}
	return tagValue(p)
}

func milliseconds(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// maxTagValueLen is OpenCensus's limit on a tag value's length.
const maxTagValueLen = 255

// tagValue makes s a valid OpenCensus tag value, which must be printable
// ASCII of at most 255 bytes (tag.New rejects the whole record otherwise):
// other characters (and invalid UTF-8 bytes) become '?', and the value is
// cut at 255 bytes.
func tagValue(s string) string {
	ok := len(s) <= maxTagValueLen
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= ' ' && s[i] <= '~'
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if b.Len() == maxTagValueLen {
			break
		}
		if r >= ' ' && r <= '~' {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
