package telemetry

import (
	"math"
	"sort"
	"time"

	"go.opencensus.io/metric/metricdata"

	"github.com/logd/logd/internal/log"
)

// TopicSource is what the storage gauges read at each scrape: the topics
// and each one's size and offsets. Its methods must be safe for concurrent
// use. TopicsSource adapts a *log.Topics.
type TopicSource interface {
	// Names returns the topics.
	Names() []string
	// Stats returns a topic's stats, or false if it no longer exists.
	Stats(topic string) (log.Stats, bool)
}

// TopicsSource returns a TopicSource reading t.
func TopicsSource(t *log.Topics) TopicSource { return topicsSource{t} }

type topicsSource struct{ t *log.Topics }

func (s topicsSource) Names() []string { return s.t.Names() }

func (s topicsSource) Stats(topic string) (log.Stats, bool) {
	l, err := s.t.Get(topic)
	if err != nil {
		return log.Stats{}, false
	}
	return l.Stats(), true
}

// Gauge names, as the Prometheus exporter spells them with '_' for '/'.
const (
	GaugeSegments      = "logd/topic_segments"
	GaugeSizeBytes     = "logd/topic_size_bytes"
	GaugeLowestOffset  = "logd/topic_lowest_offset"
	GaugeNextOffset    = "logd/topic_next_offset"
	GaugeHighestOffset = "logd/topic_highest_offset"
	GaugeTailConsumers = "logd/topic_tail_consumers"
)

// producer is the metricproducer.Producer of a Metrics: at each read it
// reports the series aggregated in place (see inPlace), the storage gauges
// of the Metrics' topic source, if any, and the open tail consumers.
type producer struct{ m *Metrics }

// Read implements metricproducer.Producer.
func (p *producer) Read() []*metricdata.Metric {
	now := time.Now()
	src, following := p.m.snapshot()
	seg := gauge(GaugeSegments, "Segments of the topic's log on disk", metricdata.UnitDimensionless)
	size := gauge(GaugeSizeBytes, "Bytes of the topic's store and index files", metricdata.UnitBytes)
	lowest := gauge(GaugeLowestOffset, "Offset of the topic's oldest record kept", metricdata.UnitDimensionless)
	next := gauge(GaugeNextOffset, "Offset the topic's next record will get", metricdata.UnitDimensionless)
	highest := gauge(GaugeHighestOffset, "Offset of the topic's newest record (absent while the topic is empty)", metricdata.UnitDimensionless)
	tail := gauge(GaugeTailConsumers, "Open ConsumeStreams of the topic", metricdata.UnitDimensionless)

	var names []string
	if src != nil {
		names = src.Names()
	}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		st, ok := src.Stats(name)
		if !ok {
			continue
		}
		seen[name] = true
		addPoint(seg, name, int64(st.Segments), now)
		addPoint(size, name, st.Bytes, now)
		addPoint(lowest, name, offset(st.Lowest), now)
		addPoint(next, name, offset(st.Next), now)
		if st.Next > st.Lowest {
			addPoint(highest, name, offset(st.Next-1), now)
		}
		addPoint(tail, name, following[name], now)
	}
	// Consumers of topics the source does not know (or with no source).
	var rest []string
	for name := range following {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		addPoint(tail, name, following[name], now)
	}

	out := p.m.inPlace.metrics()
	for _, g := range []*metricdata.Metric{seg, size, lowest, next, highest, tail} {
		if len(g.TimeSeries) > 0 {
			out = append(out, g)
		}
	}
	return out
}

func gauge(name, description string, unit metricdata.Unit) *metricdata.Metric {
	return &metricdata.Metric{Descriptor: metricdata.Descriptor{
		Name:        name,
		Description: description,
		Unit:        unit,
		Type:        metricdata.TypeGaugeInt64,
		LabelKeys:   []metricdata.LabelKey{{Key: keyTopic.Name(), Description: "Topic"}},
	}}
}

func addPoint(g *metricdata.Metric, topic string, v int64, now time.Time) {
	g.TimeSeries = append(g.TimeSeries, &metricdata.TimeSeries{
		LabelValues: []metricdata.LabelValue{metricdata.NewLabelValue(topic)},
		Points:      []metricdata.Point{metricdata.NewInt64Point(now, v)},
	})
}

// offset converts an offset to a gauge value; offsets past 2^63-1 (which
// logd never reaches) are reported as 2^63-1.
func offset(o uint64) int64 {
	return int64(min(o, math.MaxInt64))
}
