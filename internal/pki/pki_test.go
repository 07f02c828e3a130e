package pki

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, CAFile))
	if !ca.IsCA {
		t.Fatal("CA certificate is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	srv := readCert(t, filepath.Join(dir, ServerFile))
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("server certificate for localhost: %v", err)
	}
	if !slices.ContainsFunc(srv.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
		t.Errorf("server certificate IPs %v lack 127.0.0.1", srv.IPAddresses)
	}
	for _, cn := range []string{"alice", "bob"} {
		c, k := ClientFiles(cn)
		cert := readCert(t, filepath.Join(dir, c))
		if cert.Subject.CommonName != cn {
			t.Errorf("got CN %q, want %q", cert.Subject.CommonName, cn)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s client certificate: %v", cn, err)
		}
		fi, err := os.Stat(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode: got %v, want 0600", cn, fi.Mode().Perm())
		}
	}
}

func TestGenerateMissing(t *testing.T) {
	dir := t.TempDir()
	made, err := GenerateMissing(dir, "root")
	if err != nil || !made {
		t.Fatalf("first call: got made=%v err=%v, want true, nil", made, err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CAFile))
	made, err = GenerateMissing(dir, "root")
	if err != nil || made {
		t.Fatalf("second call: got made=%v err=%v, want false, nil", made, err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(before) != string(after) {
		t.Fatal("CA was replaced although nothing was missing")
	}
	if err := IssueClient(dir, "carol"); err != nil {
		t.Fatal(err)
	}
	c, _ := ClientFiles("carol")
	if got := readCert(t, filepath.Join(dir, c)).Subject.CommonName; got != "carol" {
		t.Fatalf("got CN %q, want carol", got)
	}
}

func TestIssueServerKeepsTheCA(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	old := readCert(t, filepath.Join(dir, ServerFile))
	if err := IssueServer(dir); err != nil {
		t.Fatal(err)
	}
	now := readCert(t, filepath.Join(dir, ServerFile))
	if now.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("IssueServer kept the old serial number")
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, CAFile)))
	if _, err := now.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("new server certificate: %v", err)
	}
}

func TestGenerateRemovesTheOldCRL(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{CRLFile, RevokedFile} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{CRLFile, RevokedFile} {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s after Generate: got %v, want it removed", n, err)
		}
	}
}
