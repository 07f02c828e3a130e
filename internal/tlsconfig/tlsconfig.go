// Package tlsconfig builds the mutual-TLS configurations of logd's server
// and clients from PEM files: a certificate, its key and the CA bundle
// that the peer's certificate must chain to. TLS 1.2 is the minimum. The
// returned configs are safe for concurrent use once built.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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

// load reads the key pair and the CA bundle. Errors name the file at
// fault and what is wrong with it: not set, unreadable, not PEM, or a key
// that does not match its certificate.
func load(f Files) (tls.Certificate, *x509.CertPool, error) {
	certPEM, err := readPEM("certificate file", f.Cert)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM, err := readPEM("key file", f.Key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tlsconfig: certificate file %s with key file %s: %w", f.Cert, f.Key, err)
	}
	caPEM, err := readPEM("CA file", f.CA)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return tls.Certificate{}, nil, fmt.Errorf("tlsconfig: CA file %s: no PEM certificate", f.CA)
	}
	return cert, pool, nil
}

// readPEM reads a file that must hold at least one PEM block; what names
// it in errors.
func readPEM(what, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("tlsconfig: %s not set", what)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: %s %s: %w", what, path, err)
	}
	if blk, _ := pem.Decode(b); blk == nil {
		return nil, fmt.Errorf("tlsconfig: %s %s: not PEM", what, path)
	}
	return b, nil
}
