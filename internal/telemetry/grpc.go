package telemetry

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opencensus.io/metric/metricdata"
	"go.opencensus.io/plugin/ocgrpc"
	ocstats "go.opencensus.io/stats"
	"go.opencensus.io/tag"
	"go.opencensus.io/trace"
	"go.opencensus.io/trace/propagation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// ServerHandler is a gRPC server stats handler that does what
// ocgrpc.ServerHandler does, for less: a span per call (named like
// "log.v1.Log.Produce", server kind, the child of a sampled caller's span
// sent in grpc-trace-bin), and the measures of ocgrpc's server views
// (started RPCs; per completed RPC its latency, messages and bytes each
// way, tagged with grpc_server_method and grpc_server_status, plus any
// tags the caller sent in grpc-tags-bin). It reads the two headers it
// needs rather than copying the call's metadata, builds each method's and
// status's tags once rather than per call, and records exemplars only of
// sampled spans. Unlike ocgrpc it puts no tags in the call's context: no
// view of logd's own measures is by method. The zero value is ready, and
// safe for concurrent use.
type ServerHandler struct {
	mu      sync.RWMutex
	methods map[string]*methodTags // guarded by mu
}

var _ stats.Handler = (*ServerHandler)(nil)

// maxMethods bounds the methods whose tags ServerHandler keeps: a client
// may call methods that do not exist, each a new name.
const maxMethods = 256

// methodTags is what ServerHandler keeps of a method.
type methodTags struct {
	name     string // as in grpc_server_method
	spanName string
	begin    context.Context // the tags of a started RPC
	mu       sync.RWMutex
	end      map[string]context.Context // by status: a completed RPC's tags
}

// rpcData is what ServerHandler knows of a call.
type rpcData struct {
	start                                      time.Time
	method                                     *methodTags
	fullMethod                                 string
	span                                       *trace.Span
	propagated                                 *tag.Map // the caller's tags, if it sent any
	sentBytes, sentCount, recvBytes, recvCount atomic.Int64
}

type rpcDataKey struct{}

// methodTagsOf returns fullMethod's methodTags, made now (and kept, if
// there is room).
func (h *ServerHandler) methodTagsOf(fullMethod string) *methodTags {
	h.mu.RLock()
	m, ok := h.methods[fullMethod]
	h.mu.RUnlock()
	if ok {
		return m
	}
	// As ocgrpc names them; and it tags a started RPC with the client
	// method key too.
	name := strings.TrimLeft(fullMethod, "/")
	m = &methodTags{name: name, spanName: strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", "."), end: map[string]context.Context{}}
	m.begin, _ = tag.New(context.Background(), tag.Upsert(ocgrpc.KeyServerMethod, name), tag.Upsert(ocgrpc.KeyClientMethod, name))
	h.mu.Lock()
	defer h.mu.Unlock()
	if kept, ok := h.methods[fullMethod]; ok {
		return kept
	}
	if h.methods == nil {
		h.methods = map[string]*methodTags{}
	}
	if len(h.methods) < maxMethods {
		h.methods[fullMethod] = m
	}
	return m
}

// endTags returns the tags of a completed RPC of m with status st.
func (m *methodTags) endTags(st string) context.Context {
	m.mu.RLock()
	ctx, ok := m.end[st]
	m.mu.RUnlock()
	if ok {
		return ctx
	}
	ctx, _ = tag.New(m.begin, tag.Delete(ocgrpc.KeyClientMethod), tag.Upsert(ocgrpc.KeyServerStatus, st))
	m.mu.Lock()
	if len(m.end) < len(statusNames)+1 {
		m.end[st] = ctx
	}
	m.mu.Unlock()
	return ctx
}

// TagRPC starts the call's span and keeps what the call's stats need.
func (h *ServerHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	d := &rpcData{start: time.Now(), fullMethod: info.FullMethodName, method: h.methodTagsOf(info.FullMethodName)}
	if tc := metadata.ValueFromIncomingContext(ctx, "grpc-trace-bin"); len(tc) > 0 {
		if parent, ok := propagation.FromBinary([]byte(tc[0])); ok {
			ctx, d.span = trace.StartSpanWithRemoteParent(ctx, d.method.spanName, parent, trace.WithSpanKind(trace.SpanKindServer))
		}
	}
	if d.span == nil {
		ctx, d.span = trace.StartSpan(ctx, d.method.spanName, trace.WithSpanKind(trace.SpanKindServer))
	}
	if tb := metadata.ValueFromIncomingContext(ctx, "grpc-tags-bin"); len(tb) > 0 {
		if m, err := tag.Decode([]byte(tb[len(tb)-1])); err == nil {
			d.propagated = m
		}
	}
	return context.WithValue(ctx, rpcDataKey{}, d)
}

// HandleRPC records the call's events on its span and in its stats.
func (h *ServerHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	d, ok := ctx.Value(rpcDataKey{}).(*rpcData)
	if !ok {
		return
	}
	switch rs := rs.(type) {
	case *stats.Begin:
		if d.span.IsRecordingEvents() {
			d.span.AddAttributes(trace.BoolAttribute("Client", rs.Client), trace.BoolAttribute("FailFast", rs.FailFast))
		}
		d.record(d.method.begin, ocgrpc.KeyClientMethod, d.method.name, nil, ocgrpc.ServerStartedRPCs.M(1))
	case *stats.InPayload:
		d.recvBytes.Add(int64(rs.Length))
		d.recvCount.Add(1)
		d.span.AddMessageReceiveEvent(0, int64(rs.Length), int64(rs.WireLength))
	case *stats.OutPayload:
		d.sentBytes.Add(int64(rs.Length))
		d.sentCount.Add(1)
		d.span.AddMessageSendEvent(0, int64(rs.Length), int64(rs.WireLength))
	case *stats.End:
		h.end(d, rs)
	}
}

func (h *ServerHandler) end(d *rpcData, rs *stats.End) {
	latency := float64(time.Since(d.start)) / float64(time.Millisecond)
	st := "OK"
	if rs.Error != nil {
		s, ok := status.FromError(rs.Error)
		if ok {
			d.span.SetStatus(trace.Status{Code: int32(s.Code()), Message: s.Message()})
			st = statusName(s.Code())
		} else {
			d.span.SetStatus(trace.Status{Code: int32(codes.Internal), Message: rs.Error.Error()})
			st = ""
		}
	}
	d.span.End()
	var exemplar map[string]any
	if sc := d.span.SpanContext(); sc.IsSampled() {
		exemplar = map[string]any{metricdata.AttachmentKeySpanContext: sc}
	}
	d.record(d.method.endTags(st), ocgrpc.KeyServerStatus, st, exemplar,
		ocgrpc.ServerSentBytesPerRPC.M(d.sentBytes.Load()),
		ocgrpc.ServerSentMessagesPerRPC.M(d.sentCount.Load()),
		ocgrpc.ServerReceivedMessagesPerRPC.M(d.recvCount.Load()),
		ocgrpc.ServerReceivedBytesPerRPC.M(d.recvBytes.Load()),
		ocgrpc.ServerLatency.M(latency))
}

// record records ms with the tags of tagged: the method and k = v. If the
// caller sent tags, with those too, under these (as with ocgrpc).
func (d *rpcData) record(tagged context.Context, k tag.Key, v string, exemplar map[string]any, ms ...ocstats.Measurement) {
	if d.propagated != nil {
		ctx := tag.NewContext(context.Background(), d.propagated)
		if ctx, err := tag.New(ctx, tag.Upsert(ocgrpc.KeyServerMethod, d.method.name), tag.Upsert(k, v)); err == nil {
			tagged = ctx
		}
	}
	_ = ocstats.RecordWithOptions(tagged, ocstats.WithAttachments(exemplar), ocstats.WithMeasurements(ms...))
}

// TagConn and HandleConn do nothing: there are no connection stats.
func (h *ServerHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (h *ServerHandler) HandleConn(context.Context, stats.ConnStats) {}

// statusNames are the names ocgrpc gives status codes in
// grpc_server_status.
var statusNames = [...]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

func statusName(c codes.Code) string {
	if int(c) < len(statusNames) {
		return statusNames[c]
	}
	return "CODE_" + strconv.FormatInt(int64(c), 10)
}
