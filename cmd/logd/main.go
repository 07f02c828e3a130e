// Command logd is the logd server: a commit log over gRPC with mutual TLS
// and per-topic access control.
//
// It parses its configuration (flags, optionally a config file with the
// same keys), opens the topics under the data directory (recovering them
// from any crash), and only then serves. SIGINT or SIGTERM stops it
// gracefully: in-flight calls finish (up to --shutdown-timeout), the logs
// are closed cleanly, and it exits 0. A bad flag or file exits 2; a
// failure while running exits 1. SIGHUP reloads the live configuration
// files (see package reload), which are also reloaded when they change.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/quota"
	"github.com/logd/logd/internal/reload"
	"github.com/logd/logd/internal/server"
	"github.com/logd/logd/internal/telemetry"
	"github.com/logd/logd/internal/tlsconfig"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// usageError is a bad flag, value or file: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// gcPercent is the garbage collector's GOGC unless $GOGC is set: twice
// Go's default, which costs logd a few percent less CPU per call for a
// larger heap (see the README's Running logd).
const gcPercent = 200

// run is main without the exit: it returns the exit status.
func run(args []string, stderr io.Writer) int {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "logd: %v\n", err)
		return 2
	}
	logger, err := telemetry.NewLogger(cfg.logLevel, cfg.logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "logd: %v\n", err)
		return 2
	}
	defer logger.Sync()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, logger); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "logd: %v\n", err)
			return 2
		}
		logger.Error("logd stopped", zap.Error(err))
		return 1
	}
	return 0
}

// serve runs logd until ctx ends.
func serve(ctx context.Context, cfg *config, logger *zap.Logger) error {
	// First, so that a bad path makes nothing; closed last.
	audit, closeAudit, err := telemetry.NewAuditLogger(cfg.auditLog)
	if err != nil {
		return usagef("--audit-log: %v", err)
	}
	defer func() {
		if err := closeAudit(); err != nil {
			logger.Error("close audit log", zap.Error(err))
		}
	}()
	if cfg.defaultTLS {
		made, err := pki.GenerateMissing(cfg.configDir, pki.DefaultClients...)
		if err != nil {
			return fmt.Errorf("make certificates in %s: %w", cfg.configDir, err)
		}
		if made {
			logger.Info("made certificates on first use", zap.String("dir", cfg.configDir), zap.Strings("clients", pki.DefaultClients))
		}
	}
	tlsFiles, err := tlsconfig.NewReloader(tlsconfig.Files{
		Cert: cfg.tlsCert, Key: cfg.tlsKey, CA: cfg.tlsCA, CRL: cfg.tlsCRL, CRLOptional: cfg.tlsCRLOptional,
	}, logger)
	if err != nil {
		return usageError{err}
	}
	authz, err := auth.Load(cfg.aclModel, cfg.aclPolicy)
	if err != nil {
		return usageError{err}
	}
	var quotas *quota.Quotas // none without a file: nothing to check per call
	if cfg.quotaFile != "" {
		qc, err := quota.LoadFile(cfg.quotaFile)
		if err != nil {
			return usagef("--quota-file: %v", err)
		}
		quotas = quota.New(qc)
	}

	metrics, err := telemetry.NewMetrics(
		telemetry.WithPrincipal(func(ctx context.Context) string { p, _ := server.Principal(ctx); return p }),
		telemetry.WithLogger(logger),
	)
	if err != nil {
		return err
	}
	defer metrics.Unregister()
	telemetry.ConfigureTracing(cfg.traceSample)
	if cfg.traceFile != "" {
		tf, err := telemetry.NewTraceFile(cfg.traceFile)
		if err != nil {
			return usagef("--trace-file: %v", err)
		}
		defer tf.Close()
	}

	lcfg := cfg.logConfig(logger)
	lcfg.OnSync = metrics.Synced
	logger.Info("starting", cfg.fields()...)
	topics, err := log.OpenTopics(lcfg)
	if err != nil {
		return fmt.Errorf("open data directory: %w", err)
	}
	defer func() {
		if err := topics.Close(); err != nil {
			logger.Error("close logs", zap.Error(err))
		} else {
			logger.Info("logs closed")
		}
	}()
	// Live configuration: the files registered with watcher are reloaded
	// on SIGHUP and when they change.
	watcher := reload.New(logger, cfg.reloadInterval)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watcher.OnReload = onReload(metrics, audit)
	watcher.Add(reload.Source{Name: "tls", Paths: tlsFiles.Paths(), Load: tlsFiles.Reload})
	if src, ok := policySource(cfg, authz); ok {
		watcher.Add(src)
	}
	if cfg.quotaFile != "" {
		watcher.Add(reload.Source{Name: "quotas", Paths: []string{cfg.quotaFile}, Load: func() error { return quotas.Reload(cfg.quotaFile) }})
	}

	logger.Info("logs opened", zap.String("data_dir", cfg.dataDir), zap.Int("topics", len(topics.Names())))
	metrics.ObserveTopics(telemetry.TopicsSource(topics))
	defer metrics.ObserveTopics(nil)

	srv, err := server.New(server.Config{
		Topics:         topics,
		Authorizer:     authz,
		TLS:            tlsFiles.Config("h2"),
		MaxRecordBytes: lcfg.MaxRecordBytes,
		Observer:       metrics,
		Logger:         logger,
		Audit:          audit,
		Quotas:         quotas,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return usagef("--listen %s: %v", cfg.listen, err)
	}
	var ready atomic.Bool
	var httpSrv *http.Server
	if cfg.httpListen != "" {
		hl, err := net.Listen("tcp", cfg.httpListen)
		if err != nil {
			lis.Close()
			return usagef("--http-listen %s: %v", cfg.httpListen, err)
		}
		mux := telemetry.OperatorMux(telemetry.OperatorOptions{Metrics: metrics, Ready: ready.Load})
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := httpSrv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("operator HTTP", zap.Error(err))
			}
		}()
		logger.Info("operator HTTP listening", zap.String("http_addr", hl.Addr().String()))
	}

	var apiSrv *http.Server
	if cfg.httpAPIListen != "" {
		al, err := net.Listen("tcp", cfg.httpAPIListen)
		if err != nil {
			lis.Close()
			return usagef("--http-api-listen %s: %v", cfg.httpAPIListen, err)
		}
		apiSrv = &http.Server{
			Handler:           srv.HTTPHandler(),
			TLSConfig:         tlsFiles.Config("h2", "http/1.1"),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          zap.NewStdLog(logger.Named("http-api")),
		}
		go func() {
			if err := apiSrv.ServeTLS(al, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP API", zap.Error(err))
			}
		}()
		logger.Info("HTTP API listening", zap.String("http_api_addr", al.Addr().String()))
	}

	// Stopped and waited for before the audit log it writes to closes.
	watched := make(chan struct{})
	go func() { defer close(watched); watcher.Run(wctx, hup) }()
	defer func() { stopWatch(); <-watched }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	ready.Store(true)
	logger.Info("serving", zap.String("grpc_addr", lis.Addr().String()))

	select {
	case err = <-served:
		// Serve failed on its own.
	case <-ctx.Done():
		logger.Info("shutting down", zap.Duration("timeout", cfg.shutdownTimeout))
		ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
		apiDone := make(chan struct{})
		go func() {
			// Following HTTP streams end when srv.Shutdown starts.
			if apiSrv != nil {
				if err := apiSrv.Shutdown(sctx); err != nil {
					apiSrv.Close()
				}
			}
			close(apiDone)
		}()
		srv.Shutdown(sctx)
		<-apiDone
		cancel()
		err = <-served
	}
	if httpSrv != nil {
		httpSrv.Close()
	}
	return err
}
