package telemetry

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opencensus.io/metric/metricdata"
	"go.opencensus.io/stats"
	"go.opencensus.io/stats/view"
)

// inPlace aggregates the measures recorded for every append, read and
// fsync (the counters of records and bytes appended and read, the append
// and fsync latencies and the fsync batch sizes) where they are recorded,
// with atomic additions, and reports them at each scrape through the
// Metrics' producer. OpenCensus would hand each recording to its view
// worker goroutine over a channel, tag map and all, which cost more than
// the rest of a streamed record's work in logd. The series are those the
// views (viewRecordsAppended, …) define: same names, descriptions, labels
// and buckets, so Prometheus sees what it saw when they were OpenCensus
// views. Like a view's rows, a series appears when first recorded and is
// kept. Its methods are safe for concurrent use.
type inPlace struct {
	mu sync.RWMutex
	// The fields below are guarded by mu; the values they point to are
	// updated without it.
	appended, read map[series]*flow
	appendLatency  map[string]*histogram // by topic
	fsyncLatency   map[string]*histogram
	fsyncBatch     map[string]*histogram
}

// flow is the records and bytes of one series.
type flow struct {
	start          time.Time
	records, bytes atomic.Int64
}

// histogram is an OpenCensus distribution aggregated in place: bucket i
// counts values in [bounds[i-1], bounds[i]), the last one values from
// the last bound on.
type histogram struct {
	start   time.Time
	bounds  []float64
	sum     atomic.Uint64 // float64 bits
	buckets []atomic.Int64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{start: time.Now(), bounds: bounds, buckets: make([]atomic.Int64, len(bounds)+1)}
}

func (h *histogram) add(v float64) {
	h.buckets[sort.Search(len(h.bounds), func(i int) bool { return v < h.bounds[i] })].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
}

func newInPlace() *inPlace {
	return &inPlace{
		appended:      map[series]*flow{},
		read:          map[series]*flow{},
		appendLatency: map[string]*histogram{},
		fsyncLatency:  map[string]*histogram{},
		fsyncBatch:    map[string]*histogram{},
	}
}

// getOrAdd returns m[k], adding it with make if it is missing.
func getOrAdd[K comparable, V any](mu *sync.RWMutex, m map[K]*V, k K, make func() *V) *V {
	mu.RLock()
	v, ok := m[k]
	mu.RUnlock()
	if ok {
		return v
	}
	mu.Lock()
	defer mu.Unlock()
	if v, ok := m[k]; ok {
		return v
	}
	v = make()
	m[k] = v
	return v
}

func newFlow() *flow { return &flow{start: time.Now()} }

func (p *inPlace) appendedTo(s series, records, bytes int, latencyMS float64) {
	f := getOrAdd(&p.mu, p.appended, s, newFlow)
	f.records.Add(int64(records))
	f.bytes.Add(int64(bytes))
	getOrAdd(&p.mu, p.appendLatency, s.topic, func() *histogram { return newHistogram(latencyBoundsMS) }).add(latencyMS)
}

func (p *inPlace) readFrom(s series, records, bytes int) {
	f := getOrAdd(&p.mu, p.read, s, newFlow)
	f.records.Add(int64(records))
	f.bytes.Add(int64(bytes))
}

func (p *inPlace) synced(topic string, latencyMS float64, records int64) {
	getOrAdd(&p.mu, p.fsyncLatency, topic, func() *histogram { return newHistogram(latencyBoundsMS) }).add(latencyMS)
	getOrAdd(&p.mu, p.fsyncBatch, topic, func() *histogram { return newHistogram(batchBounds) }).add(float64(records))
}

// metrics returns the series as of now, as the views would report them.
func (p *inPlace) metrics() []*metricdata.Metric {
	now := time.Now()
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []*metricdata.Metric
	counters := func(v *view.View, m map[series]*flow, value func(*flow) int64) {
		if len(m) == 0 {
			return
		}
		c := &metricdata.Metric{Descriptor: descriptor(v, metricdata.TypeCumulativeInt64)}
		for s, f := range m {
			c.TimeSeries = append(c.TimeSeries, &metricdata.TimeSeries{
				LabelValues: []metricdata.LabelValue{metricdata.NewLabelValue(s.topic), metricdata.NewLabelValue(s.principal)},
				Points:      []metricdata.Point{metricdata.NewInt64Point(now, value(f))},
				StartTime:   f.start,
			})
		}
		out = append(out, c)
	}
	records := func(f *flow) int64 { return f.records.Load() }
	bytes := func(f *flow) int64 { return f.bytes.Load() }
	counters(viewRecordsAppended, p.appended, records)
	counters(viewBytesAppended, p.appended, bytes)
	counters(viewRecordsRead, p.read, records)
	counters(viewBytesRead, p.read, bytes)
	for _, d := range []struct {
		v *view.View
		m map[string]*histogram
	}{{viewAppendLatency, p.appendLatency}, {viewFsyncLatency, p.fsyncLatency}, {viewFsyncBatch, p.fsyncBatch}} {
		if len(d.m) == 0 {
			continue
		}
		c := &metricdata.Metric{Descriptor: descriptor(d.v, metricdata.TypeCumulativeDistribution)}
		for topic, h := range d.m {
			c.TimeSeries = append(c.TimeSeries, &metricdata.TimeSeries{
				LabelValues: []metricdata.LabelValue{metricdata.NewLabelValue(topic)},
				Points:      []metricdata.Point{metricdata.NewDistributionPoint(now, h.snapshot())},
				StartTime:   h.start,
			})
		}
		out = append(out, c)
	}
	return out
}

// snapshot returns the distribution so far; its count is its buckets'.
// The sum may miss values being added meanwhile, which a bucket counts.
func (h *histogram) snapshot() *metricdata.Distribution {
	d := &metricdata.Distribution{
		BucketOptions: &metricdata.BucketOptions{Bounds: h.bounds},
		Buckets:       make([]metricdata.Bucket, len(h.buckets)),
	}
	for i := range h.buckets {
		d.Buckets[i].Count = h.buckets[i].Load()
		d.Count += d.Buckets[i].Count
	}
	d.Sum = math.Float64frombits(h.sum.Load())
	return d
}

// descriptor is the metric descriptor OpenCensus gives view v.
func descriptor(v *view.View, typ metricdata.Type) metricdata.Descriptor {
	d := metricdata.Descriptor{Name: v.Name, Description: v.Description, Type: typ, Unit: metricdata.UnitDimensionless}
	switch v.Measure.Unit() {
	case stats.UnitBytes:
		d.Unit = metricdata.UnitBytes
	case stats.UnitMilliseconds:
		d.Unit = metricdata.UnitMilliseconds
	}
	for _, k := range v.TagKeys {
		d.LabelKeys = append(d.LabelKeys, metricdata.LabelKey{Key: k.Name()})
	}
	return d
}
