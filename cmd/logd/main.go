// Command logd is the logd server: a commit log over gRPC with mutual TLS
// and per-topic access control.
//
// It parses its configuration (flags, optionally a config file with the
// same keys), opens the topics under the data directory (recovering them
// from any crash), and only then serves. SIGINT or SIGTERM stops it
// gracefully: in-flight calls finish (up to --shutdown-timeout), the logs
// are closed cleanly, and it exits 0. A bad flag or file exits 2; a
// failure while running exits 1.
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
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/server"
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

// run is main without the exit: it returns the exit status.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "logd: %v\n", err)
		return 2
	}
	logger, err := newLogger(cfg, stderr)
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

func newLogger(cfg *config, stderr io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.logLevel)
	if err != nil {
		return nil, usagef("--log-level: %v", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch cfg.logFormat {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, usagef("--log-format: %q is not json or console", cfg.logFormat)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(stderr), level)), nil
}

// serve runs logd until ctx ends.
func serve(ctx context.Context, cfg *config, logger *zap.Logger) error {
	if cfg.defaultTLS {
		made, err := pki.GenerateMissing(cfg.configDir, pki.DefaultClients...)
		if err != nil {
			return fmt.Errorf("make certificates in %s: %w", cfg.configDir, err)
		}
		if made {
			logger.Info("made certificates on first use", zap.String("dir", cfg.configDir), zap.Strings("clients", pki.DefaultClients))
		}
	}
	tlsCfg, err := tlsconfig.Server(tlsconfig.Files{Cert: cfg.tlsCert, Key: cfg.tlsKey, CA: cfg.tlsCA})
	if err != nil {
		return usageError{err}
	}
	authz, err := auth.Load(cfg.aclModel, cfg.aclPolicy)
	if err != nil {
		return usageError{err}
	}

	lcfg := cfg.logConfig(logger)
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
	logger.Info("logs opened", zap.String("data_dir", cfg.dataDir), zap.Int("topics", len(topics.Names())))

	srv, err := server.New(server.Config{
		Topics:         topics,
		Authorizer:     authz,
		TLS:            tlsCfg,
		MaxRecordBytes: lcfg.MaxRecordBytes,
		Logger:         logger,
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
		httpSrv = &http.Server{Handler: operatorMux(&ready), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := httpSrv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("operator HTTP", zap.Error(err))
			}
		}()
		logger.Info("operator HTTP listening", zap.String("http_addr", hl.Addr().String()))
	}

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
		srv.Shutdown(sctx)
		cancel()
		err = <-served
	}
	if httpSrv != nil {
		httpSrv.Close()
	}
	return err
}

// operatorMux serves the operator endpoints: /healthz (the process is
// alive) and /readyz (it serves requests).
func operatorMux(ready *atomic.Bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

// defaultConfigDir is $LOGD_CONFIG_DIR, or ~/.logd.
func defaultConfigDir() string {
	if d := os.Getenv("LOGD_CONFIG_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".logd"
	}
	return filepath.Join(home, ".logd")
}
