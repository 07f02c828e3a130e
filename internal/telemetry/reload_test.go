package telemetry

import (
	"errors"
	"testing"

	"go.opencensus.io/stats/view"
)

func TestReloaded(t *testing.T) {
	m := newMetrics(t)
	source := uniqueTopic(t) // unique, so earlier runs' rows don't count
	m.Reloaded(source, nil)
	m.Reloaded(source, nil)
	m.Reloaded(source, errors.New("policy line 3: bad"))
	for result, want := range map[string]int64{"ok": 2, "error": 1} {
		r := mustRow(t, ViewConfigReloads, map[string]string{"source": source, "result": result})
		if got := r.Data.(*view.CountData).Value; got != want {
			t.Errorf("reloads %s = %d, want %d", result, got, want)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.Reloaded(source, nil) // records nothing, no panic
}
