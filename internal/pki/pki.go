// Package pki issues logd's certificates with cfssl, from the same CSR and
// signing configs that `make gencert` feeds the cfssl command (see
// package configs): a CA, a server certificate and client certificates
// whose subject CN is the principal the ACL knows them by.
//
// logd uses it to make certificates on first use, and tests use it to get
// real cfssl certificates in a temporary directory. Functions are safe for
// concurrent use on different directories.
package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/initca"
	cflog "github.com/cloudflare/cfssl/log"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"

	"github.com/logd/logd/configs"
)

func init() {
	// cfssl logs every step at info level to the standard logger; logd
	// reports what it made itself.
	cflog.Level = cflog.LevelWarning
}

// DefaultClients are the principals of the default policy.
var DefaultClients = []string{"root", "alice", "bob", "nobody"}

// File names in a certificate directory, as `make gencert` writes them.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
	// CRLFile is the revocation list `make revoke` writes (PEM), and
	// RevokedFile the revoked serial numbers (decimal, one a line) it is
	// signed from. Both belong to the CA: Generate removes them.
	CRLFile     = "crl.pem"
	RevokedFile = "revoked-serials.txt"
)

// DefaultDir is where logd and logctl look for certificates unless told
// otherwise: $LOGD_CONFIG_DIR, or ~/.logd.
func DefaultDir() string {
	if d := os.Getenv("LOGD_CONFIG_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".logd"
	}
	return filepath.Join(home, ".logd")
}

// ClientFiles returns the certificate and key file names of a client.
func ClientFiles(cn string) (cert, key string) {
	return cn + "-client.pem", cn + "-client-key.pem"
}

// Generate writes a new CA, a server certificate and a certificate for
// each client CN into dir (created if needed), overwriting what is there.
// Keys are written with mode 0600. A CRL of the old CA and its list of
// revoked serials are removed: the new CA did not sign them.
func Generate(dir string, clients ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, n := range []string{CRLFile, RevokedFile} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	caReq, err := loadCSR("ca-csr.json")
	if err != nil {
		return err
	}
	caCert, _, caKey, err := initca.New(caReq)
	if err != nil {
		return fmt.Errorf("pki: make CA: %w", err)
	}
	if err := writePair(dir, CAFile, CAKeyFile, caCert, caKey); err != nil {
		return err
	}
	return issueAll(dir, caCert, caKey, clients)
}

// GenerateMissing runs Generate into dir unless its CA, server and every
// client's certificate are there already. It reports whether it made new
// certificates.
func GenerateMissing(dir string, clients ...string) (bool, error) {
	names := []string{CAFile, CAKeyFile, ServerFile, ServerKeyFile}
	for _, cn := range clients {
		c, k := ClientFiles(cn)
		names = append(names, c, k)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); errors.Is(err, fs.ErrNotExist) {
			return true, Generate(dir, clients...)
		} else if err != nil {
			return false, err
		}
	}
	return false, nil
}

// IssueClient signs a new client certificate for cn with the CA in dir.
func IssueClient(dir, cn string) error {
	s, err := dirSigner(dir)
	if err != nil {
		return err
	}
	return issueClient(s, dir, cn)
}

// IssueServer signs a new server certificate and key with the CA in dir,
// replacing server.pem and server-key.pem there (to rotate a live
// server's certificate, issue into a copy of the CA directory and rename
// the files into place).
func IssueServer(dir string) error {
	s, err := dirSigner(dir)
	if err != nil {
		return err
	}
	return issueServer(s, dir)
}

// dirSigner is a signer for the CA certificate and key in dir.
func dirSigner(dir string) (*local.Signer, error) {
	caCert, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	caKey, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	return newSigner(caCert, caKey)
}

func issueAll(dir string, caCert, caKey []byte, clients []string) error {
	s, err := newSigner(caCert, caKey)
	if err != nil {
		return err
	}
	if err := issueServer(s, dir); err != nil {
		return err
	}
	for _, cn := range clients {
		if err := issueClient(s, dir, cn); err != nil {
			return err
		}
	}
	return nil
}

func issueServer(s *local.Signer, dir string) error {
	req, err := loadCSR("server-csr.json")
	if err != nil {
		return err
	}
	return issue(s, dir, req, "server", ServerFile, ServerKeyFile)
}

func issueClient(s *local.Signer, dir, cn string) error {
	req, err := loadCSR("client-csr.json")
	if err != nil {
		return err
	}
	req.CN = cn
	c, k := ClientFiles(cn)
	return issue(s, dir, req, "client", c, k)
}

func newSigner(caCert, caKey []byte) (*local.Signer, error) {
	raw, err := configs.FS.ReadFile("ca-config.json")
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("pki: ca-config.json: %w", err)
	}
	cert, err := helpers.ParseCertificatePEM(caCert)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	key, err := helpers.ParsePrivateKeyPEM(caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	return local.NewSigner(key, cert, signer.DefaultSigAlgo(key), cfg.Signing)
}

func issue(s *local.Signer, dir string, req *csr.CertificateRequest, profile, certName, keyName string) error {
	csrPEM, key, err := csr.ParseRequest(req)
	if err != nil {
		return fmt.Errorf("pki: %s request: %w", certName, err)
	}
	cert, err := s.Sign(signer.SignRequest{Hosts: req.Hosts, Request: string(csrPEM), Profile: profile})
	if err != nil {
		return fmt.Errorf("pki: sign %s: %w", certName, err)
	}
	return writePair(dir, certName, keyName, cert, key)
}

func loadCSR(name string) (*csr.CertificateRequest, error) {
	raw, err := configs.FS.ReadFile(name)
	if err != nil {
		return nil, err
	}
	req := csr.New()
	if err := json.Unmarshal(raw, req); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", name, err)
	}
	return req, nil
}

func writePair(dir, certName, keyName string, cert, key []byte) error {
	if err := os.WriteFile(filepath.Join(dir, certName), cert, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, keyName), key, 0o600)
}
