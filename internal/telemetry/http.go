package telemetry

import (
	"net/http"
	"net/http/pprof"

	"go.opencensus.io/zpages"
)

// OperatorOptions configures OperatorMux.
type OperatorOptions struct {
	// Metrics serves /metrics; nil leaves /metrics out.
	Metrics *Metrics
	// Ready reports whether the server is ready to serve (/readyz); nil
	// means ready whenever the process runs.
	Ready func() bool
}

// OperatorMux returns the operator HTTP endpoints:
//
//	/metrics          Prometheus scrape (Metrics.Handler)
//	/healthz          200 "ok" while the process runs
//	/readyz           200 "ready" when o.Ready() is true, else 503 "not ready"
//	/debug/rpcz       zPages: gRPC method statistics
//	/debug/tracez     zPages: sampled spans, by name and latency
//	/debug/pprof/     net/http/pprof (profile, trace, heap, goroutine, …)
//
// The handlers are registered on the returned mux only. (Importing
// net/http/pprof and zpages also registers handlers on
// http.DefaultServeMux, which logd does not serve.) These endpoints expose
// internals and cost CPU (profiles): serve them on an operator-only
// address.
func OperatorMux(o OperatorOptions) *http.ServeMux {
	mux := http.NewServeMux()
	if o.Metrics != nil {
		mux.Handle("/metrics", o.Metrics.Handler())
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready == nil || o.Ready() {
			plain(w, http.StatusOK, "ready\n")
		} else {
			plain(w, http.StatusServiceUnavailable, "not ready\n")
		}
	})
	zpages.Handle(mux, "/debug")
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
