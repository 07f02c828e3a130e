package telemetry

import (
	"context"

	"go.opencensus.io/stats"
	"go.opencensus.io/stats/view"
	"go.opencensus.io/tag"
)

// Reloads of live configuration files (see package reload).
var (
	keySource = tag.MustNewKey("source")
	keyResult = tag.MustNewKey("result")

	mReloads = stats.Int64("logd/config_reloads", "Reloads of a live configuration file", stats.UnitDimensionless)
)

// ViewConfigReloads counts reloads by source and result ("ok" or
// "error").
const ViewConfigReloads = "logd/config_reloads_total"

var viewConfigReloads = &view.View{
	Name:        ViewConfigReloads,
	Description: "Reloads of live configuration files, by source and result (ok: swapped in; error: the previous one kept)",
	Measure:     mReloads,
	TagKeys:     []tag.Key{keySource, keyResult},
	Aggregation: view.Count(),
}

// Reloaded records one reload of the live configuration source (its
// name, e.g. "acl policy"): ok if err is nil, error if the previous
// value was kept. It fits reload.Watcher's OnReload hook.
func (m *Metrics) Reloaded(source string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	_ = stats.RecordWithTags(context.Background(),
		[]tag.Mutator{tag.Upsert(keySource, tagValue(source)), tag.Upsert(keyResult, result)},
		mReloads.M(1))
}
