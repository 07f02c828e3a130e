package server

import (
	"context"

	"go.opencensus.io/trace"
	"go.uber.org/zap"
)

// auditor writes the audit log: one entry per authorization that denies
// and per admin action, with who, what, which topic, the decision and the
// policy rule that decided it. Its logger has its own sink (--audit-log);
// a nil logger writes nothing.
type auditor struct{ l *zap.Logger }

// record writes one audit entry. rule is the policy line that decided
// ("" when no rule matched: the default deny).
func (a auditor) record(ctx context.Context, principal, action, topic string, allowed bool, rule string) {
	if a.l == nil {
		return
	}
	decision := "deny"
	if allowed {
		decision = "allow"
	}
	f := []zap.Field{
		zap.String("principal", principal),
		zap.String("action", action),
		zap.String("topic", topic),
		zap.String("decision", decision),
		zap.String("rule", rule),
	}
	if span := trace.FromContext(ctx); span != nil {
		f = append(f, zap.String("trace_id", span.SpanContext().TraceID.String()))
	}
	a.l.Info("audit", f...)
}
