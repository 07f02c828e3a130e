package server

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callLevel is the level of a call's log line: errors the server must
// look at are errors, refusals (ACL, certificates, quotas) warnings, and
// what clients do in the normal course (read past the end, cancel) info.
func callLevel(c codes.Code) zapcore.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.OutOfRange, codes.NotFound, codes.InvalidArgument:
		return zapcore.InfoLevel
	case codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted,
		codes.FailedPrecondition, codes.DeadlineExceeded, codes.Unavailable:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}

// callLogger gives each call a callInfo and logs one line when the call
// ends, "finished call", with what the call learned on its way
// (principal, topic, offsets, trace id; see callInfo), then grpc.service,
// grpc.method, peer.address, grpc.request.deadline (if the call has a
// deadline, RFC 3339), grpc.code, grpc.error (if it failed) and
// grpc.duration_ms. It builds the line from typed fields, with no
// intermediate maps, and only if the line's level is enabled.
type callLogger struct {
	core zapcore.Core
	name string
	// caller is what the line names as its caller if the logger adds the
	// caller (zap.AddCaller): this file, found once rather than per call.
	caller zapcore.EntryCaller
}

func newCallLogger(l *zap.Logger) callLogger {
	c := callLogger{core: l.Core(), name: l.Name()}
	if ce := l.Check(zapcore.ErrorLevel, ""); ce != nil && ce.Caller.Defined {
		c.caller = zapcore.NewEntryCaller(runtime.Caller(0))
	}
	return c
}

// fieldsPool holds the field slices of call lines; a line's fields are
// encoded before its Write returns.
var fieldsPool = sync.Pool{New: func() any { s := make([]zap.Field, 0, 14); return &s }}

func (c callLogger) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx = withCallInfo(ctx)
	resp, err := handler(ctx, req)
	c.finish(ctx, info.FullMethod, start, err)
	return resp, err
}

func (c callLogger) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx := withCallInfo(ss.Context())
	err := handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	c.finish(ctx, info.FullMethod, start, err)
	return err
}

// finish logs the line of the call of method that started at start and
// ended with err, unless the call was made quiet (see quotaGuard.refuse).
func (c callLogger) finish(ctx context.Context, method string, start time.Time, err error) {
	if errors.Is(err, io.EOF) {
		err = nil
	}
	code := status.Code(err)
	ce := c.core.Check(zapcore.Entry{
		LoggerName: c.name, Time: time.Now(), Level: callLevel(code), Message: "finished call", Caller: c.caller,
	}, nil)
	ci := callInfoFrom(ctx)
	if ce == nil || ci.isQuiet() {
		return
	}
	fp := fieldsPool.Get().(*[]zap.Field)
	defer func() {
		clear(*fp)
		*fp = (*fp)[:0]
		fieldsPool.Put(fp)
	}()
	f := ci.appendFields(ctx, *fp)
	service, name := splitMethod(method)
	f = append(f, zap.String("grpc.service", service), zap.String("grpc.method", name))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		f = append(f, zap.String("peer.address", p.Addr.String()))
	}
	if d, ok := ctx.Deadline(); ok {
		f = append(f, zap.String("grpc.request.deadline", d.Format(time.RFC3339)))
	}
	f = append(f, zap.String("grpc.code", code.String()))
	if err != nil {
		f = append(f, zap.String("grpc.error", err.Error()))
	}
	f = append(f, zap.Float64("grpc.duration_ms", float64(time.Since(start).Microseconds())/1000))
	ce.Write(f...)
	*fp = f
}

// splitMethod splits "/log.v1.Log/Produce" into its service and method.
func splitMethod(full string) (service, method string) {
	service, method, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return "unknown", "unknown"
	}
	return service, method
}

// contextStream is a ServerStream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
