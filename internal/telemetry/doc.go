// Package telemetry is logd's observability: metrics (OpenCensus views
// and gauges, served to Prometheus), traces (OpenCensus spans, sampled and
// written to a JSON-lines file), the operator HTTP endpoints, the
// structured logger, and the audit log's sink ([NewAuditLogger]).
//
// OpenCensus keeps its registered views, metric producers, trace exporters
// and trace configuration in process globals. This package is the only one
// in logd that touches them, through functions the binary calls once at
// start-up: [NewMetrics] (views and the storage gauge producer),
// [ConfigureTracing] (the sampler) and [NewTraceFile] (a trace exporter).
// A process should hold a single [Metrics]: two would export the same
// gauges twice. [Metrics.Unregister] and [TraceFile.Close] undo the
// registrations, for tests and orderly shutdown.
//
// # Metrics
//
// The Prometheus handler ([Metrics.Handler], served at /metrics by
// [OperatorMux]) exposes these series (latencies in milliseconds):
//
//	logd_records_appended_total{topic,principal}    counter  records acknowledged to producers
//	logd_bytes_appended_total{topic,principal}      counter  bytes of their values
//	logd_records_read_total{topic,principal}        counter  records sent to consumers
//	logd_bytes_read_total{topic,principal}          counter  bytes of their values
//	logd_append_latency_milliseconds{topic}         histogram  append to acknowledgement (write and fsync wait)
//	logd_fsync_latency_milliseconds{topic}          histogram  one fsync of a topic's active segment
//	logd_fsync_batch_records{topic}                 histogram  records made durable by one fsync
//	logd_authz_denials_total{principal,action}      counter  calls refused by the ACL
//	logd_config_reloads_total{source,result}        counter  reloads of live configuration files (result ok or error)
//	logd_quota_exceeded_total{principal,quota}      counter  calls refused by a quota (package quota's kinds)
//	logd_topic_segments{topic}                      gauge    segments on disk
//	logd_topic_size_bytes{topic}                    gauge    store and index bytes on disk
//	logd_topic_lowest_offset{topic}                 gauge    offset of the oldest record kept
//	logd_topic_next_offset{topic}                   gauge    offset the next record will get
//	logd_topic_highest_offset{topic}                gauge    newest record (only if the topic is not empty)
//	logd_topic_tail_consumers{topic}                gauge    open ConsumeStreams (reading or waiting at the tail)
//	grpc_io_server_*{grpc_server_method,...}        ocgrpc.DefaultServerViews
//	go_*, process_*                                 the Go runtime and process collectors
//
// Histograms have _bucket, _sum and _count series. OpenCensus buckets are
// half-open, [lower, upper), while Prometheus reads le as "at most", so a
// bucket counts values strictly below its le: for logd_fsync_batch_records
// le="2" counts fsyncs of one record, le="1" fsyncs that covered none.
// Counters and histograms appear once something was recorded for them;
// gauges at each scrape. The topic gauges need [Metrics.ObserveTopics].
//
// Denials and quota refusals are not labeled by topic: a client could
// otherwise create any number of series by naming topics. The topic is
// recorded as an annotation on the call's span instead. Label values are
// made printable ASCII of at most 255 bytes, as OpenCensus requires.
//
// The series of every append, read and fsync (the logd_records_*,
// logd_bytes_*, logd_append_latency, logd_fsync_* series) are added up
// where they are recorded, with atomic additions, and reported at each
// scrape: a scrape includes every recording that returned before it.
// The others (denials, quota refusals, reloads, and ocgrpc's views) are
// OpenCensus views, recorded asynchronously: OpenCensus hands
// measurements to a background goroutine, so a scrape just after a call
// may not include it.
//
// # Concurrency
//
// All methods of [Metrics] and [TraceFile] are safe for concurrent use,
// and the recording methods are cheap: Appended, Read and Synced a map
// lookup under a read lock and a few atomic additions; the others a few
// small allocations and a channel send; no I/O; Following takes a mutex
// briefly. A nil *Metrics records nothing.
package telemetry
