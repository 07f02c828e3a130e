package server

import (
	"context"
	"fmt"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// zapLogger adapts zap to go-grpc-middleware's logging.Logger.
func zapLogger(l *zap.Logger) logging.Logger {
	return logging.LoggerFunc(func(_ context.Context, lvl logging.Level, msg string, kv ...any) {
		fields := make([]zap.Field, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			key, ok := kv[i].(string)
			if !ok {
				key = fmt.Sprint(kv[i])
			}
			if key == "grpc.start_time" || key == "protocol" {
				// The line's own ts and grpc.duration_ms say when;
				// every call is gRPC.
				continue
			}
			fields = append(fields, zap.Any(key, kv[i+1]))
		}
		switch lvl {
		case logging.LevelDebug:
			l.Debug(msg, fields...)
		case logging.LevelInfo:
			l.Info(msg, fields...)
		case logging.LevelWarn:
			l.Warn(msg, fields...)
		default:
			l.Error(msg, fields...)
		}
	})
}

// callLevel is the level of a call's log line: errors the server must
// look at are errors, refusals (ACL, certificates, quotas) warnings, and
// what clients do in the normal course (read past the end, cancel) info.
func callLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.OutOfRange, codes.NotFound, codes.InvalidArgument:
		return logging.LevelInfo
	case codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted,
		codes.FailedPrecondition, codes.DeadlineExceeded, codes.Unavailable:
		return logging.LevelWarn
	}
	return logging.LevelError
}

// loggingInterceptors log one line per call when it ends, with the
// method, code, duration, peer, and what the call learned on its way
// (principal, topic, offsets, trace id; see callInfo).
func loggingInterceptors(l *zap.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	opts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(callLevel),
		logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			return callInfoFrom(ctx).fields(ctx)
		}),
		logging.WithDurationField(func(d time.Duration) logging.Fields {
			return logging.Fields{"grpc.duration_ms", float64(d.Microseconds()) / 1000}
		}),
		logging.WithDisableLoggingFields(logging.ComponentFieldKey, logging.MethodTypeFieldKey),
	}
	all := zapLogger(l)
	// A quota refusal that was not logged drops its call line too (see
	// quotaGuard.refuse), so that a flood of them cannot flood the log.
	zl := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, kv ...any) {
		if !callInfoFrom(ctx).isQuiet() {
			all.Log(ctx, lvl, msg, kv...)
		}
	})
	return logging.UnaryServerInterceptor(zl, opts...), logging.StreamServerInterceptor(zl, opts...)
}

// callInfoUnary and callInfoStream give each call a callInfo; they run
// before the logging interceptors, which read it when the call ends.
func callInfoUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(withCallInfo(ctx), req)
}

func callInfoStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &contextStream{ServerStream: ss, ctx: withCallInfo(ss.Context())})
}

// contextStream is a ServerStream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
