// Command ceiling is the least a log.v1 server can do, for `make bench`
// to measure logd against: each topic is a list of records in memory
// under a lock (values packed into large chunks), tail readers are woken
// by the next append (no polling), and Produce, Consume, ProduceStream and
// ConsumeStream return the offsets and records logd would. It serves
// behind the same mutual TLS as logd (package tlsconfig, the certificates
// made by cfssl) and does nothing else: no authorization, no logging,
// metrics or traces, no durability, no topic-name checks, and it keeps
// every record until it exits (about 300 bytes of memory, and twice that
// in heap growth, per 256-byte record).
//
// Usage:
//
//	ceiling [--listen 127.0.0.1:0] [--config-dir DIR]
//
// DIR holds server.pem, server-key.pem and ca.pem as `make gencert` or
// package pki writes them (default $LOGD_CONFIG_DIR or ~/.logd). Once it
// listens, ceiling prints "serving ADDR" on stderr; SIGINT or SIGTERM
// stop it. Every call may run concurrently with every other.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/tlsconfig"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "gRPC listen `address`")
	dir := fs.String("config-dir", pki.DefaultDir(), "`directory` of server.pem, server-key.pem and ca.pem")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	gs, err := newServer(*dir)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		gs.Stop()
	}()
	fmt.Fprintf(os.Stderr, "serving %s\n", lis.Addr())
	if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// newServer returns a gRPC server with log.v1.Log on a new memLog behind
// mutual TLS from the certificates in dir.
func newServer(dir string) (*grpc.Server, error) {
	tlsCfg, err := tlsconfig.Server(tlsconfig.Files{
		Cert: filepath.Join(dir, pki.ServerFile),
		Key:  filepath.Join(dir, pki.ServerKeyFile),
		CA:   filepath.Join(dir, pki.CAFile),
	})
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	logv1.RegisterLogServer(gs, &service{log: newMemLog()})
	return gs, nil
}
