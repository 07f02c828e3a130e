package tlsconfig

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// revocations is a loaded CRL file: the serial numbers each CA revoked.
// It is not modified after loadCRL returns.
type revocations struct {
	file       string
	revoked    map[issuerKey]map[string]bool // serial number bytes
	entries    int
	nextUpdate time.Time // the earliest NextUpdate of the file's CRLs; zero if none has one
}

// issuerKey identifies a CA by name and public key, so that a CA
// certificate renewed with the same key keeps its CRL.
type issuerKey string

func keyOf(ca *x509.Certificate) issuerKey {
	return issuerKey(string(ca.RawSubject) + "\x00" + string(ca.RawSubjectPublicKeyInfo))
}

// loadCRL reads f.CRL (nil, nil if unset) and checks each CRL in it
// against the CA bundle cas. hadCRL says a CRL was loaded before, which
// makes a missing optional file an error.
func loadCRL(f Files, cas []*x509.Certificate, hadCRL bool) (*revocations, error) {
	if f.CRL == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f.CRL)
	if errors.Is(err, fs.ErrNotExist) && f.CRLOptional {
		if !hadCRL {
			return nil, nil
		}
		return nil, fmt.Errorf("tlsconfig: CRL file %s is gone; the CRL loaded from it stays in force until a restart: %w", f.CRL, err)
	}
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: CRL file %s: %w", f.CRL, err)
	}
	lists, err := parseCRLs(b)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: CRL file %s: %w", f.CRL, err)
	}
	r := &revocations{file: f.CRL, revoked: map[issuerKey]map[string]bool{}}
	for i, l := range lists {
		ca := issuerOf(l, cas)
		if ca == nil {
			return nil, fmt.Errorf("tlsconfig: CRL file %s: CRL %d (issuer %q) is not signed by a CA of CA file %s", f.CRL, i+1, l.Issuer, f.CA)
		}
		k := keyOf(ca)
		if r.revoked[k] == nil {
			r.revoked[k] = map[string]bool{}
		}
		for _, e := range l.RevokedCertificateEntries {
			r.revoked[k][string(e.SerialNumber.Bytes())] = true
			r.entries++
		}
		if !l.NextUpdate.IsZero() && (r.nextUpdate.IsZero() || l.NextUpdate.Before(r.nextUpdate)) {
			r.nextUpdate = l.NextUpdate
		}
	}
	return r, nil
}

// parseCRLs parses PEM "X509 CRL" blocks, or, if b holds no PEM, one DER
// CRL.
func parseCRLs(b []byte) ([]*x509.RevocationList, error) {
	var lists []*x509.RevocationList
	for blk := range pemBlocks(b) {
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block %d is %q, want \"X509 CRL\"", len(lists)+1, blk.Type)
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", len(lists)+1, err)
		}
		lists = append(lists, l)
	}
	if len(lists) > 0 {
		return lists, nil
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty")
	}
	l, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("neither PEM \"X509 CRL\" nor DER: %w", err)
	}
	return []*x509.RevocationList{l}, nil
}

// issuerOf returns the CA of cas whose name is l's issuer and whose key
// signed l, or nil.
func issuerOf(l *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, l.RawIssuer) && l.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// check returns an error if a verified chain's leaf is revoked by a CRL
// of the CA that issued it in that chain.
func (r *revocations) check(chains [][]*x509.Certificate) error {
	for _, chain := range chains {
		if len(chain) == 0 {
			continue
		}
		leaf, issuer := chain[0], chain[0]
		if len(chain) > 1 {
			issuer = chain[1]
		}
		if r.revoked[keyOf(issuer)][string(leaf.SerialNumber.Bytes())] {
			return fmt.Errorf("tlsconfig: client certificate %q (serial %s) is revoked by CRL file %s",
				leaf.Subject.CommonName, leaf.SerialNumber, r.file)
		}
	}
	return nil
}

// expired reports whether now is past the CRL's next update.
func (r *revocations) expired(now time.Time) bool {
	return !r.nextUpdate.IsZero() && now.After(r.nextUpdate)
}
