// Package client is a Go client for logd's gRPC services log.v1.Log and
// log.v1.Admin.
//
// Dial connects over mutual TLS from PEM files; the client certificate's CN
// is the principal logd's ACL knows the caller by. A Client offers the
// unary calls (Produce, Consume, Offsets), a pipelining Producer over one
// ProduceStream, and Follow, which tails a topic over ConsumeStream and
// reconnects with backoff when the stream breaks, resuming after the last
// record it delivered so that no record is lost or repeated. ListTopics,
// DescribeTopic and DeleteTopic are the admin calls.
//
// Concurrency: a Client is safe for concurrent use by many goroutines, and
// so is a Producer (its Send, Close and the Wait of its Acks may be called
// from any goroutine; Sends are ordered as they acquire the stream). Follow
// calls its fn from the calling goroutine only, one record at a time. Close
// a Client once its Producers and Follows are done.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/tlsconfig"
)

// Config says where logd listens and which files prove who the client is.
type Config struct {
	Addr       string // host:port of logd's gRPC listener
	CAFile     string // CA bundle that the server's certificate must chain to
	CertFile   string // client certificate (its CN is the principal)
	KeyFile    string
	ServerName string // defaults to the host of Addr
}

// Client is a connection to logd. It is safe for concurrent use.
type Client struct {
	conn  *grpc.ClientConn
	log   logv1.LogClient
	admin logv1.AdminClient
}

// Dial builds a mutual-TLS (TLS 1.2 or later) connection to cfg.Addr from
// the PEM files of cfg. Errors name the file that failed: missing,
// unreadable, holding no PEM, or a key that does not match the
// certificate. By default the connection retries with a backoff capped at
// 2 s and pings an idle connection every 30 s while calls are open; opts
// are added after those defaults and the transport credentials, so they
// may override them. The connection is made lazily, on the first call.
func Dial(cfg Config, opts ...grpc.DialOption) (*Client, error) {
	tlsCfg, err := TLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		// Reconnect within 2 s of the server coming back, so that Follow's
		// own backoff governs.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 20 * time.Second,
		}),
		// Notice a connection that died silently (logd lets clients ping
		// every 10 s).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}, opts...)
	conn, err := grpc.NewClient(cfg.Addr, all...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", cfg.Addr, err)
	}
	return &Client{conn: conn, log: logv1.NewLogClient(conn), admin: logv1.NewAdminClient(conn)}, nil
}

// TLSConfig returns the client's mutual-TLS configuration built from cfg's
// files, as Dial uses it.
func TLSConfig(cfg Config) (*tls.Config, error) {
	if cfg.Addr == "" {
		return nil, errors.New("client: Addr is required")
	}
	serverName := cfg.ServerName
	if serverName == "" {
		host, _, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("client: address %q: %w", cfg.Addr, err)
		}
		serverName = host
	}
	tlsCfg, err := tlsconfig.Client(tlsconfig.Files{Cert: cfg.CertFile, Key: cfg.KeyFile, CA: cfg.CAFile}, serverName)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return tlsCfg, nil
}

// Close closes the connection. Calls in flight fail with Canceled.
func (c *Client) Close() error { return c.conn.Close() }

// Log returns the raw generated client on the connection.
func (c *Client) Log() logv1.LogClient { return c.log }

// Produce appends value to topic ("" is the default topic) and returns its
// offset once the server's durability policy is met.
func (c *Client) Produce(ctx context.Context, topic string, value []byte) (uint64, error) {
	resp, err := c.log.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: value}})
	if err != nil {
		return 0, err
	}
	return resp.GetOffset(), nil
}

// Consume reads the record of topic at offset. Past the end the error is
// OutOfRange with an ErrorInfo detail holding the topic's offsets.
func (c *Client) Consume(ctx context.Context, topic string, offset uint64) (*logv1.Record, error) {
	resp, err := c.log.Consume(ctx, &logv1.ConsumeRequest{Topic: topic, Offset: offset})
	if err != nil {
		return nil, err
	}
	return resp.GetRecord(), nil
}

// Offsets returns the lowest offset of topic and the next one to be
// written, so that its records are lowest..next-1. It reads them from the
// details of the OutOfRange error that a Consume at math.MaxUint64 gets.
// An empty topic gives (0, 0); a missing one the server's NotFound error.
func (c *Client) Offsets(ctx context.Context, topic string) (lowest, next uint64, err error) {
	_, err = c.Consume(ctx, topic, math.MaxUint64)
	if err == nil {
		return 0, 0, errors.New("client: offsets: server returned a record at offset 2^64-1")
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.OutOfRange {
		return 0, 0, err
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok {
			continue
		}
		md := info.GetMetadata()
		ls, lok := md["lowest"]
		ns, nok := md["next"]
		if !lok || !nok {
			continue
		}
		lowest, lerr := strconv.ParseUint(ls, 10, 64)
		next, nerr := strconv.ParseUint(ns, 10, 64)
		if lerr != nil || nerr != nil {
			return 0, 0, fmt.Errorf("client: offsets: bad metadata lowest=%q next=%q", ls, ns)
		}
		return lowest, next, nil
	}
	return 0, 0, fmt.Errorf("client: offsets: no offsets in the server's answer: %w", err)
}
