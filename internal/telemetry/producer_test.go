package telemetry

import (
	"fmt"
	"testing"

	"go.opencensus.io/metric/metricdata"
	"go.opencensus.io/metric/metricproducer"

	"github.com/logd/logd/internal/log"
)

// gauges reads a producer into name -> topic -> value.
func gauges(t *testing.T, p metricproducer.Producer) map[string]map[string]int64 {
	t.Helper()
	out := map[string]map[string]int64{}
	for _, m := range p.Read() {
		if m.Descriptor.Type != metricdata.TypeGaugeInt64 {
			t.Errorf("%s: type %v, want gauge int64", m.Descriptor.Name, m.Descriptor.Type)
		}
		if len(m.Descriptor.LabelKeys) != 1 || m.Descriptor.LabelKeys[0].Key != "topic" {
			t.Errorf("%s: label keys %v, want [topic]", m.Descriptor.Name, m.Descriptor.LabelKeys)
		}
		if len(m.TimeSeries) == 0 {
			t.Errorf("%s: no time series", m.Descriptor.Name)
		}
		byTopic := map[string]int64{}
		for _, ts := range m.TimeSeries {
			if len(ts.Points) != 1 {
				t.Fatalf("%s: %d points, want 1", m.Descriptor.Name, len(ts.Points))
			}
			byTopic[ts.LabelValues[0].Value] = ts.Points[0].Value.(int64)
		}
		out[m.Descriptor.Name] = byTopic
	}
	return out
}

// openTopics opens a data directory whose segments hold 5 records of 10
// bytes (34 bytes with their frame headers).
func openTopics(t *testing.T) *log.Topics {
	t.Helper()
	topics, err := log.OpenTopics(log.Config{
		Dir:            t.TempDir(),
		MaxRecordBytes: 64,
		MaxStoreBytes:  5 * 34,
		Sync:           log.SyncNone,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topics.Close(); err != nil {
			t.Errorf("close topics: %v", err)
		}
	})
	return topics
}

func TestStorageGauges(t *testing.T) {
	m := newMetrics(t)
	topics := openTopics(t)
	full, empty := uniqueTopic(t), uniqueTopic(t)
	l, err := topics.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 23; i++ {
		if _, err := l.Append(fmt.Appendf(nil, "record-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := topics.Open(empty); err != nil {
		t.Fatal(err)
	}
	m.ObserveTopics(TopicsSource(topics))
	m.Following(full, +1)
	m.Following(full, +1)
	m.Following(full, -1)
	m.Following("elsewhere", +1) // a topic the source does not list

	st := l.Stats()
	if st.Segments < 4 || st.Next != 23 || st.Lowest != 0 {
		t.Fatalf("log stats %+v: want 4+ segments, offsets 0..22", st)
	}
	emptySt, ok := TopicsSource(topics).Stats(empty)
	if !ok {
		t.Fatalf("TopicsSource.Stats(%q) = false", empty)
	}
	if _, ok := TopicsSource(topics).Stats("no-such-topic"); ok {
		t.Errorf("TopicsSource.Stats of a missing topic = true")
	}

	got := gauges(t, m.producer)
	want := map[string]map[string]int64{
		GaugeSegments:      {full: int64(st.Segments), empty: 1},
		GaugeSizeBytes:     {full: st.Bytes, empty: emptySt.Bytes},
		GaugeLowestOffset:  {full: 0, empty: 0},
		GaugeNextOffset:    {full: 23, empty: 0},
		GaugeHighestOffset: {full: 22}, // none for the empty topic
		GaugeTailConsumers: {full: 1, empty: 0, "elsewhere": 1},
	}
	if st.Bytes != 23*(34+12) { // 34-byte frames, 12-byte index entries
		t.Errorf("log bytes = %d, want %d", st.Bytes, 23*(34+12))
	}
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			t.Errorf("%s = %v, want %v", name, g, w)
			continue
		}
		for topic, v := range w {
			if g[topic] != v {
				t.Errorf("%s{topic=%q} = %d, want %d", name, topic, g[topic], v)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("gauges %v, want %v", got, want)
	}

	// The producer is registered globally, so every exporter reads it.
	var registered bool
	for _, p := range metricproducer.GlobalManager().GetAll() {
		registered = registered || p == m.producer
	}
	if !registered {
		t.Errorf("producer not in the global manager")
	}

	// Without a source, only tail consumers are left.
	m.ObserveTopics(nil)
	got = gauges(t, m.producer)
	if len(got) != 1 || len(got[GaugeTailConsumers]) != 2 {
		t.Errorf("gauges without a source = %v, want tail consumers of %s and elsewhere", got, full)
	}
	m.Following(full, -1)
	m.Following("elsewhere", -1)
	if got := m.producer.Read(); len(got) != 0 {
		t.Errorf("gauges with no source and no consumers = %v, want none", got)
	}
}

// vanishing lists a topic whose stats are gone: it was deleted between
// Names and Stats.
type vanishing struct{}

func (vanishing) Names() []string                { return []string{"gone"} }
func (vanishing) Stats(string) (log.Stats, bool) { return log.Stats{}, false }

func TestStorageGaugesSkipVanishedTopics(t *testing.T) {
	m := newMetrics(t)
	m.ObserveTopics(vanishing{})
	if got := m.producer.Read(); len(got) != 0 {
		t.Errorf("gauges = %v, want none", got)
	}
}

// TestStorageGaugesForgetDeletedTopics: once a topic is deleted (and its
// followers are gone), no gauge reports it; the other topics stay.
func TestStorageGaugesForgetDeletedTopics(t *testing.T) {
	m := newMetrics(t)
	topics := openTopics(t)
	kept, deleted := uniqueTopic(t), uniqueTopic(t)
	for _, name := range []string{kept, deleted} {
		l, err := topics.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append([]byte("record-000")); err != nil {
			t.Fatal(err)
		}
	}
	m.ObserveTopics(TopicsSource(topics))
	m.Following(deleted, +1)
	if got := gauges(t, m.producer); got[GaugeNextOffset][deleted] != 1 || got[GaugeTailConsumers][deleted] != 1 {
		t.Fatalf("gauges before the delete = %v, want %s at next offset 1 with 1 tail consumer", got, deleted)
	}
	if _, err := topics.Delete(deleted); err != nil {
		t.Fatal(err)
	}
	m.Following(deleted, -1) // the server ends its followers
	for name, byTopic := range gauges(t, m.producer) {
		if _, ok := byTopic[deleted]; ok {
			t.Errorf("%s still reports the deleted topic %s: %v", name, deleted, byTopic)
		}
		if _, ok := byTopic[kept]; !ok {
			t.Errorf("%s lost the topic %s that was not deleted: %v", name, kept, byTopic)
		}
	}
}
