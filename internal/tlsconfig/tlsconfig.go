// Package tlsconfig builds the mutual-TLS configurations of logd's server
// and clients from PEM files: a certificate, its key and the CA bundle
// that the peer's certificate must chain to. TLS 1.2 is the minimum. The
// returned configs are safe for concurrent use once built.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Files names a certificate, its key and a CA bundle.
type Files struct {
	Cert, Key, CA string
}

// Server returns a config that presents the server certificate and
// requires and verifies a client certificate signed by the CA.
func Server(f Files) (*tls.Config, error) {
	cert, pool, err := load(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// Client returns a config that presents the client certificate and
// verifies the server's certificate against the CA for serverName.
func Client(f Files, serverName string) (*tls.Config, error) {
	cert, pool, err := load(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func load(f Files) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tlsconfig: certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tlsconfig: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("tlsconfig: CA %s: no PEM certificates", f.CA)
	}
	return cert, pool, nil
}
