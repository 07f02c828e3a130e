package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"go.opencensus.io/plugin/ocgrpc"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/quota"
)

// Config wires a Server.
type Config struct {
	// Topics is the storage; Authorizer the ACL. Both are required.
	Topics     Topics
	Authorizer Authorizer
	// TLS is the server's mutual-TLS config (see package tlsconfig).
	TLS *tls.Config
	// MaxRecordBytes is the largest record value accepted; gRPC's receive
	// limit is set just above it, so that a record over it gets a clear
	// InvalidArgument. Zero means log.DefaultMaxRecordBytes.
	MaxRecordBytes int
	// StreamWindow bounds the records of one ProduceStream that wait for
	// their acknowledgement. Zero means 1024.
	StreamWindow int
	// Observer receives what the service does (metrics); nil means none.
	Observer Observer
	// Logger gets one line per call, at its end (see loggingInterceptors).
	Logger *zap.Logger
	// Audit, if set, gets the audit log: denied authorizations and admin
	// actions (see auditor).
	Audit *zap.Logger
	// Quotas, if set, limits each principal and topic (see quotaGuard);
	// reload it with its Set. Nil limits nothing, at no cost per call.
	Quotas *quota.Quotas
}

// streamWorkers is how many goroutines the gRPC server keeps to run
// calls on (grpc.NumStreamWorkers); a call that finds none free gets a
// goroutine of its own, as without them. Idle, each holds a stack of a
// few KiB.
const streamWorkers = 64

// requestSlack is what a request may carry beyond its record's value: the
// topic and protobuf framing.
const requestSlack = 16 << 10

// Server is the gRPC server with the log.v1.Log and log.v1.Admin
// services, the standard health service and reflection.
type Server struct {
	svc    *service
	guard  *guard
	grpc   *grpc.Server
	health *health.Server
	cancel context.CancelFunc
	logger *zap.Logger
	// maxRecord is the largest record value; it bounds HTTP bodies.
	maxRecord int
}

// New builds a Server. Its health service reports SERVING from the start:
// build it once the logs are open.
func New(cfg Config) (*Server, error) {
	if cfg.Topics == nil || cfg.Authorizer == nil {
		return nil, errors.New("server: Topics and Authorizer are required")
	}
	if cfg.TLS == nil {
		return nil, errors.New("server: TLS config is required")
	}
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = log.DefaultMaxRecordBytes
	}
	if cfg.StreamWindow == 0 {
		cfg.StreamWindow = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	tails := newTailCounter(cfg.Observer)
	cfg.Observer = tails
	g := &guard{authz: cfg.Authorizer, obs: cfg.Observer, audit: auditor{cfg.Audit}}
	qg := &quotaGuard{q: cfg.Quotas, obs: cfg.Observer, logger: cfg.Logger}
	calls := newCallLogger(cfg.Logger)
	unary := []grpc.UnaryServerInterceptor{calls.unary, qg.unary, g.unary}
	stream := []grpc.StreamServerInterceptor{calls.stream, qg.stream, g.stream}
	if cfg.Quotas == nil {
		// No quotas: no interceptor to pass through.
		unary = []grpc.UnaryServerInterceptor{calls.unary, g.unary}
		stream = []grpc.StreamServerInterceptor{calls.stream, g.stream}
	}
	opts := []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(cfg.TLS)),
		// Spans and OpenCensus views per call; the span is in the context
		// before the interceptors run, so log lines carry its trace id.
		grpc.StatsHandler(&ocgrpc.ServerHandler{}),
		grpc.MaxRecvMsgSize(cfg.MaxRecordBytes + requestSlack),
		// Calls run on goroutines kept for them, whose stacks have grown
		// to what a call needs, rather than on a new goroutine each, which
		// grows its stack by copying it during every call.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	gs := grpc.NewServer(opts...)

	ctx, cancel := context.WithCancel(context.Background())
	svc := &service{topics: cfg.Topics, window: cfg.StreamWindow, obs: cfg.Observer, quotas: qg, shutdown: ctx}
	logv1.RegisterLogServer(gs, svc)
	logv1.RegisterAdminServer(gs, &adminService{topics: cfg.Topics, guard: g, tails: tails})
	hs := health.NewServer()
	hs.SetServingStatus(logv1.Log_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(logv1.Admin_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return &Server{svc: svc, guard: g, grpc: gs, health: hs, cancel: cancel, logger: cfg.Logger, maxRecord: cfg.MaxRecordBytes}, nil
}

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown reports NOT_SERVING, stops accepting, ends tail-following
// streams with Unavailable and lets in-flight calls finish until ctx ends;
// then it cuts the remaining ones off.
func (s *Server) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.logger.Warn("shutdown deadline passed: closing remaining calls")
		s.grpc.Stop()
		<-done
	}
}
