// Package tlsconfig builds the mutual-TLS configurations of logd's server
// and clients from PEM files: a certificate, its key, the CA bundle that
// the peer's certificate must chain to and, for a server, an optional
// certificate revocation list (CRL). TLS 1.2 is the minimum.
//
// A Reloader holds the server's files as one immutable state behind an
// atomic pointer: every new handshake takes the current state (through
// tls.Config.GetConfigForClient), Reload swaps in a new state only if
// every file parses and they fit together, and connections already
// established are never touched. Client certificates listed in the CRL
// are refused at the handshake.
//
// The returned configs and a Reloader are safe for concurrent use;
// Reload may run while handshakes are in progress.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"iter"
	"os"
)

// Files names a certificate, its key and a CA bundle, and for a server
// the CRL of revoked client certificates.
type Files struct {
	Cert, Key, CA string
	// CRL is a file of one or more PEM "X509 CRL" blocks, or one DER
	// CRL, each signed by a CA of the bundle; "" for none. Clients
	// ignore it.
	CRL string
	// CRLOptional makes a missing CRL file mean "no CRL" until a CRL
	// has been loaded from it; after that a missing file is an error
	// (see Reloader.Reload).
	CRLOptional bool
}

// Server returns a config that presents the server certificate, requires
// and verifies a client certificate signed by the CA and refuses those
// the CRL lists. It is a snapshot of the files: use a Reloader for a
// server whose files may change.
func Server(f Files) (*tls.Config, error) {
	st, err := loadState(f, nil, nil)
	if err != nil {
		return nil, err
	}
	return st.config, nil
}

// Client returns a config that presents the client certificate and
// verifies the server's certificate against the CA for serverName.
func Client(f Files, serverName string) (*tls.Config, error) {
	cert, cas, err := loadPair(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool(cas),
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// loadPair reads the key pair and the CA bundle. Errors name the file at
// fault and what is wrong with it: not set, unreadable, not PEM, no
// certificate in the CA bundle, or a key that does not match its
// certificate.
func loadPair(f Files) (tls.Certificate, []*x509.Certificate, error) {
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
	cas, err := parseCerts(caPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tlsconfig: CA file %s: %w", f.CA, err)
	}
	return cert, cas, nil
}

// parseCerts parses the CERTIFICATE blocks of a PEM bundle (other blocks
// are skipped) and fails if there is none.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var cas []*x509.Certificate
	for blk := range pemBlocks(b) {
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(cas)+1, err)
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return cas, nil
}

// pemBlocks yields the PEM blocks of b in order.
func pemBlocks(b []byte) iter.Seq[*pem.Block] {
	return func(yield func(*pem.Block) bool) {
		for {
			var blk *pem.Block
			if blk, b = pem.Decode(b); blk == nil || !yield(blk) {
				return
			}
		}
	}
}

func pool(cas []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c)
	}
	return p
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
