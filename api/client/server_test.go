package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/server"
	"github.com/logd/logd/internal/tlsconfig"
)

// certDir holds the package's cfssl certificates: CA, server and the
// clients root, alice, bob and nobody of the default policy.
var certDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "logd-client-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	certDir = dir
	if err := pki.Generate(dir, pki.DefaultClients...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// OpenCensus runs one worker goroutine for the life of the process.
		if err := goleak.Find(goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestServer is an in-process logd over mutual TLS for tests and examples.
type TestServer struct {
	Addr    string // where it listens
	DataDir string // its topics

	srv    *server.Server
	topics *log.Topics
	served chan error
}

// ServerOption adjusts a TestServer's configs.
type ServerOption func(*server.Config, *log.Config)

// StartTestServer runs logd with the default policy on dataDir, listening
// on addr ("" means a free port of 127.0.0.1). Reusing the address of a
// stopped server lets clients reconnect to the new one.
func StartTestServer(dataDir, addr string, opts ...ServerOption) (*TestServer, error) {
	lcfg := log.DefaultConfig(dataDir)
	lcfg.Sync = log.SyncNone
	tlsCfg, err := tlsconfig.Server(tlsconfig.Files{
		Cert: filepath.Join(certDir, pki.ServerFile),
		Key:  filepath.Join(certDir, pki.ServerKeyFile),
		CA:   filepath.Join(certDir, pki.CAFile),
	})
	if err != nil {
		return nil, err
	}
	authz, err := auth.Load("", "")
	if err != nil {
		return nil, err
	}
	cfg := server.Config{Authorizer: authz, TLS: tlsCfg, Logger: zap.NewNop()}
	for _, o := range opts {
		o(&cfg, &lcfg)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// The old server's port may take a moment to be free again.
	var lis net.Listener
	for i := 0; ; i++ {
		lis, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		if i == 50 {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	topics, err := log.OpenTopics(lcfg)
	if err != nil {
		lis.Close()
		return nil, err
	}
	cfg.Topics = topics
	srv, err := server.New(cfg)
	if err != nil {
		lis.Close()
		topics.Close()
		return nil, err
	}
	ts := &TestServer{Addr: lis.Addr().String(), DataDir: dataDir, srv: srv, topics: topics, served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(lis) }()
	return ts, nil
}

// Stop shuts the server down and closes its topics.
func (ts *TestServer) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.srv.Shutdown(ctx)
	return errors.Join(<-ts.served, ts.topics.Close())
}

// Config returns the client Config of principal cn for the server.
func (ts *TestServer) Config(cn string) Config {
	cert, key := pki.ClientFiles(cn)
	return Config{
		Addr:     ts.Addr,
		CAFile:   filepath.Join(certDir, pki.CAFile),
		CertFile: filepath.Join(certDir, cert),
		KeyFile:  filepath.Join(certDir, key),
	}
}

// startServer runs a TestServer in a temporary directory until the test
// ends.
func startServer(t testing.TB, opts ...ServerOption) *TestServer {
	t.Helper()
	ts, err := StartTestServer(t.TempDir(), "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ts.Stop(); err != nil {
			t.Errorf("stop server: %v", err)
		}
	})
	return ts
}

// dial connects to ts as cn until the test ends.
func dial(t testing.TB, ts *TestServer, cn string) *Client {
	t.Helper()
	c, err := Dial(ts.Config(cn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
