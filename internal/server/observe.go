package server

import (
	"context"
	"sync"
	"time"

	"go.opencensus.io/trace"
	"go.uber.org/zap"
)

// Observer receives what the service does, for metrics. Implementations
// must be fast and safe for concurrent use.
type Observer interface {
	// Appended reports records acknowledged to a producer: how many,
	// their bytes, and how long the append took (write and sync wait).
	Appended(ctx context.Context, topic string, records, bytes int, latency time.Duration)
	// Read reports records sent to a consumer.
	Read(ctx context.Context, topic string, records, bytes int)
	// Denied reports a call refused by the ACL.
	Denied(ctx context.Context, principal, topic, action string)
	// Following reports a ConsumeStream starting (+1) or ending (-1) its
	// wait at the tail of a topic.
	Following(topic string, delta int)
	// QuotaExceeded reports a call of principal refused by a quota (see
	// package quota for the kinds); topic is "" if the call named none yet.
	QuotaExceeded(ctx context.Context, principal, quota, topic string)
}

type nopObserver struct{}

func (nopObserver) Appended(context.Context, string, int, int, time.Duration) {}
func (nopObserver) Read(context.Context, string, int, int)                    {}
func (nopObserver) Denied(context.Context, string, string, string)            {}
func (nopObserver) Following(string, int)                                     {}
func (nopObserver) QuotaExceeded(context.Context, string, string, string)     {}

// callInfo gathers what a call learns on its way (the principal, the
// topic, the offsets it touched) for its log line. The logging
// interceptor puts one in the context before the call runs and reads it
// when the call ends.
type callInfo struct {
	mu        sync.Mutex
	principal string
	topic     string
	first     uint64 // first offset touched, if records > 0
	last      uint64 // last offset touched, if records > 0
	records   int
	// quiet drops the call's log line: a quota refusal that was not
	// logged either (see quotaGuard.refuse).
	quiet bool
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context) context.Context {
	return context.WithValue(ctx, callInfoKey{}, &callInfo{})
}

func callInfoFrom(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	return ci
}

func (ci *callInfo) setPrincipal(p string) {
	if ci == nil {
		return
	}
	ci.mu.Lock()
	ci.principal = p
	ci.mu.Unlock()
}

func (ci *callInfo) setTopic(t string) {
	if ci == nil {
		return
	}
	ci.mu.Lock()
	ci.topic = t
	ci.mu.Unlock()
}

// setQuiet drops the call's log line.
func (ci *callInfo) setQuiet() {
	if ci == nil {
		return
	}
	ci.mu.Lock()
	ci.quiet = true
	ci.mu.Unlock()
}

// isQuiet says whether the call's log line is dropped.
func (ci *callInfo) isQuiet() bool {
	if ci == nil {
		return false
	}
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return ci.quiet
}

// touched records that the call produced or consumed offset off.
func (ci *callInfo) touched(off uint64) { ci.touchedRange(off, off, 1) }

// touchedRange records that the call produced or consumed n records,
// from offset first to last.
func (ci *callInfo) touchedRange(first, last uint64, n int) {
	if ci == nil || n == 0 {
		return
	}
	ci.mu.Lock()
	if ci.records == 0 {
		ci.first = first
	}
	ci.last = last
	ci.records += n
	ci.mu.Unlock()
}

// appendFields appends the call's log fields to f: principal, topic,
// offset (or first_offset, last_offset and records for more than one),
// and the trace id of the call's span.
func (ci *callInfo) appendFields(ctx context.Context, f []zap.Field) []zap.Field {
	if ci != nil {
		ci.mu.Lock()
		if ci.principal != "" {
			f = append(f, zap.String("principal", ci.principal))
		}
		if ci.topic != "" {
			f = append(f, zap.String("topic", ci.topic))
		}
		switch {
		case ci.records == 1:
			f = append(f, zap.Uint64("offset", ci.first))
		case ci.records > 1:
			f = append(f, zap.Uint64("first_offset", ci.first), zap.Uint64("last_offset", ci.last), zap.Int("records", ci.records))
		}
		ci.mu.Unlock()
	}
	if span := trace.FromContext(ctx); span != nil {
		f = append(f, zap.String("trace_id", span.SpanContext().TraceID.String()))
	}
	return f
}
