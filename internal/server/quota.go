package server

import (
	"context"
	"errors"
	"strings"

	"go.opencensus.io/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/quota"
)

// quotaGuard enforces the quotas (Config.Quotas) for both APIs:
//
//   - requests/s: every log.v1 call (unary, or a stream when it opens) and
//     every HTTP API request, checked once the principal is known and
//     before authorization; refused at once, with the delay in RetryInfo.
//   - streams: gRPC streams and HTTP record listings count against the
//     principal's cap while they run; one more is refused.
//   - produce and consume bytes/s (record values): unary calls (Produce,
//     Consume, the HTTP API's single calls) are refused at once, with the
//     delay; streams (ProduceStream, ConsumeStream, HTTP listings) are
//     paced: they wait for the tokens, as long as the call's context
//     allows. A request larger than the bucket is refused either way: it
//     can never pass.
//   - topic bytes on disk: an append that would take the topic over its
//     cap is refused, with a delay only if retention will free space.
//
// Refusals are decided before anything is appended or sent and take no
// tokens; the tokens of a call let through are spent even if its append
// then fails (a concurrent append filled the topic, an I/O error).
// Refusals are counted (Observer.QuotaExceeded) and logged, a few a
// second per principal and quota at most: the call lines of refusals that
// are not logged are dropped too. A nil quota.Quotas limits nothing, and
// costs nothing: each check returns at once, and the server does not even
// install the interceptors.
type quotaGuard struct {
	q      *quota.Quotas
	obs    Observer
	logger *zap.Logger
}

// refuse reports a refusal by a quota and returns err as a status. Other
// errors are returned as they are.
func (g *quotaGuard) refuse(ctx context.Context, err error) error {
	var e *quota.Exceeded
	if !errors.As(err, &e) {
		return err
	}
	g.obs.QuotaExceeded(ctx, e.Principal, string(e.Kind), e.Topic)
	if ok, suppressed := g.q.Report(e.Principal, e.Kind); ok {
		f := []zap.Field{zap.String("principal", e.Principal), zap.String("quota", string(e.Kind))}
		if e.Topic != "" {
			f = append(f, zap.String("topic", e.Topic))
		}
		f = append(f, zap.Float64("limit", e.Limit))
		if e.Burst > 0 {
			f = append(f, zap.Int("burst", e.Burst))
		}
		if e.Asked > 0 {
			f = append(f, zap.Int64("asked", e.Asked))
		}
		if e.RetryAfter > 0 {
			f = append(f, zap.Duration("retry_after", e.RetryAfter))
		}
		if e.OverBurst {
			f = append(f, zap.Bool("over_burst", true))
		}
		if suppressed > 0 {
			f = append(f, zap.Int64("suppressed", suppressed))
		}
		if span := trace.FromContext(ctx); span != nil {
			f = append(f, zap.String("trace_id", span.SpanContext().TraceID.String()))
		}
		g.logger.Warn("quota exceeded", f...)
	} else {
		callInfoFrom(ctx).setQuiet()
	}
	return toStatus(err, "", nil)
}

// allow takes one request of the call's principal.
func (g *quotaGuard) allow(ctx context.Context, principal string) error {
	return g.refuse(ctx, g.q.Allow(principal))
}

// openStream counts a stream of principal; release it when it ends.
func (g *quotaGuard) openStream(ctx context.Context, principal string) (release func(), err error) {
	release, err = g.q.OpenStream(principal)
	return release, g.refuse(ctx, err)
}

// take takes n bytes of kind for the call's principal at once, or
// refuses.
func (g *quotaGuard) take(ctx context.Context, topic string, kind quota.Kind, n int) error {
	if g.q == nil {
		return nil
	}
	p, _ := Principal(ctx)
	return g.refuse(ctx, g.q.Take(p, topic, kind, n))
}

// wait takes n bytes of kind for the call's principal, waiting for them
// while ctx allows. Its errors are statuses.
func (g *quotaGuard) wait(ctx context.Context, topic string, kind quota.Kind, n int) error {
	if g.q == nil {
		return nil
	}
	p, _ := Principal(ctx)
	err := g.q.Wait(ctx, p, topic, kind, n)
	if err != nil && ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return toStatus(err, topic, nil)
	}
	return g.refuse(ctx, err)
}

// topicCap is the cap on topic's bytes on disk, 0 if none.
func (g *quotaGuard) topicCap(topic string) int64 { return g.q.TopicCap(topic) }

// topicFull turns an append refused by the log's cap into a refusal by
// the topic's quota, and returns other errors as they are.
func (g *quotaGuard) topicFull(ctx context.Context, topic string, err error) error {
	var full *log.FullError
	if !errors.As(err, &full) {
		return err
	}
	p, _ := Principal(ctx)
	return g.refuse(ctx, &quota.Exceeded{
		Kind: quota.TopicBytes, Principal: p, Topic: topic,
		Limit: float64(full.Max), Asked: full.Adding, Used: full.Bytes, RetryAfter: full.Frees,
	})
}

// quotaMethod says whether a gRPC method is subject to the quotas: the
// log.v1 services, not health or reflection.
func quotaMethod(method string) bool { return strings.HasPrefix(method, "/log.v1.") }

// admit checks requests/s for a call of method, and returns its
// principal: "" for a call the quotas do not apply to (not log.v1), or
// with no principal, which the guard then refuses. It runs before the
// guard (authentication and authorization), so it finds the principal
// itself.
func (g *quotaGuard) admit(ctx context.Context, method string) (string, error) {
	if g.q == nil || !quotaMethod(method) {
		return "", nil
	}
	principal, err := principalFromPeer(ctx)
	if err != nil {
		return "", nil
	}
	callInfoFrom(ctx).setPrincipal(principal)
	return principal, g.allow(ctx, principal)
}

// unary checks requests/s.
func (g *quotaGuard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, err := g.admit(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// stream checks requests/s when a stream opens, and counts it against
// the principal's cap while it runs.
func (g *quotaGuard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	principal, err := g.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if principal == "" {
		return handler(srv, ss)
	}
	release, err := g.openStream(ss.Context(), principal)
	if err != nil {
		return err
	}
	defer release()
	return handler(srv, ss)
}
