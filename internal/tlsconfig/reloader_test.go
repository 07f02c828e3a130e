package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/crl"
	"github.com/cloudflare/cfssl/helpers"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/logd/logd/internal/pki"
)

// pkiDir is a directory of cfssl certificates made by pki.Generate.
type pkiDir string

func newPKI(t testing.TB, clients ...string) pkiDir {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Generate(dir, clients...); err != nil {
		t.Fatal(err)
	}
	return pkiDir(dir)
}

func (d pkiDir) path(name string) string { return filepath.Join(string(d), name) }

// serverFiles names d's server files as they are now, with crl.
func (d pkiDir) serverFiles(crl string) Files {
	return Files{Cert: d.path(pki.ServerFile), Key: d.path(pki.ServerKeyFile), CA: d.path(pki.CAFile), CRL: crl}
}

// client is a client config for cn of d that trusts the server CAs of
// trust.
func (d pkiDir) client(t testing.TB, cn string, trust ...pkiDir) *tls.Config {
	t.Helper()
	c, k := pki.ClientFiles(cn)
	cfg, err := Client(Files{Cert: d.path(c), Key: d.path(k), CA: d.path(pki.CAFile)}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range trust {
		cfg.RootCAs.AddCert(o.cert(t, pki.CAFile))
	}
	return cfg
}

func (d pkiDir) cert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(d.path(name))
	if err != nil {
		t.Fatal(err)
	}
	c, err := helpers.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (d pkiDir) clientCert(t testing.TB, cn string) *x509.Certificate {
	c, _ := pki.ClientFiles(cn)
	return d.cert(t, c)
}

// crl signs, with cfssl and d's CA, a CRL revoking serials that expires
// at next, and returns it DER-encoded.
func (d pkiDir) crl(t testing.TB, next time.Time, serials ...*big.Int) []byte {
	t.Helper()
	keyPEM, err := os.ReadFile(d.path(pki.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var revoked []pkix.RevokedCertificate
	for _, s := range serials {
		revoked = append(revoked, pkix.RevokedCertificate{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := crl.CreateGenericCRL(revoked, key, d.cert(t, pki.CAFile), next)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyFiles copies the server files of f into a new directory and
// returns their names there.
func copyFiles(t testing.TB, f Files) Files {
	t.Helper()
	dir := t.TempDir()
	cp := func(src, name string) string {
		if src == "" {
			return ""
		}
		dst := filepath.Join(dir, name)
		writeFile(t, dst, readFile(t, src))
		return dst
	}
	return Files{Cert: cp(f.Cert, "server.pem"), Key: cp(f.Key, "server-key.pem"), CA: cp(f.CA, "ca.pem"), CRL: cp(f.CRL, "crl.pem")}
}

// echoServer serves cfg on 127.0.0.1, echoing what each connection
// sends, until the test ends. Handshake errors go to errs.
type echoServer struct {
	addr string
	errs chan error
}

func serve(t testing.TB, cfg *tls.Config) *echoServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{addr: ln.Addr().String(), errs: make(chan error, 100)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				if err := conn.(*tls.Conn).Handshake(); err != nil {
					s.errs <- err
					return
				}
				io.Copy(conn, conn)
			}()
		}
	}()
	return s
}

// dial connects with cfg and checks the connection with one echo; in
// TLS 1.3 a refused client certificate shows there, not in the
// handshake.
func (s *echoServer) dial(t testing.TB, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", s.addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	if err := echo(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func echo(conn *tls.Conn) error {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo: got " + string(buf))
	}
	return nil
}

// mustDial dials and returns the serial number of the server certificate
// the connection got.
func (s *echoServer) mustDial(t testing.TB, cfg *tls.Config) (*tls.Conn, *big.Int) {
	t.Helper()
	conn, err := s.dial(t, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return conn, conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// refused checks that a connection with cfg is refused and that the
// server's handshake error says why.
func (s *echoServer) refused(t testing.TB, cfg *tls.Config, why string) {
	t.Helper()
	if _, err := s.dial(t, cfg); err == nil {
		t.Fatal("connection accepted, want it refused")
	}
	select {
	case err := <-s.errs:
		if !strings.Contains(err.Error(), why) {
			t.Fatalf("server handshake error %q, want it to say %q", err, why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no server handshake error")
	}
}

func TestReloadSwapsTheState(t *testing.T) {
	a := newPKI(t, "alice")
	b := newPKI(t, "alice") // another CA
	f := copyFiles(t, a.serverFiles(""))
	r, err := NewReloader(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, r.Config("h2"))
	alice := a.client(t, "alice", b)
	alice.NextProtos = []string{"h2"}

	old, oldSerial := s.mustDial(t, alice)
	if want := a.cert(t, pki.ServerFile).SerialNumber; oldSerial.Cmp(want) != 0 {
		t.Fatalf("server serial %v, want %v", oldSerial, want)
	}
	if p := old.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated protocol %q, want h2", p)
	}

	// A new server certificate from the same CA.
	if err := pki.IssueServer(string(a)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.Cert, readFile(t, a.path(pki.ServerFile)))
	writeFile(t, f.Key, readFile(t, a.path(pki.ServerKeyFile)))
	if _, serial := s.mustDial(t, alice); serial.Cmp(oldSerial) != 0 {
		t.Fatal("new certificate presented before Reload")
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, serial := s.mustDial(t, alice); serial.Cmp(a.cert(t, pki.ServerFile).SerialNumber) != 0 {
		t.Fatalf("after Reload: server serial %v, want the new %v", serial, a.cert(t, pki.ServerFile).SerialNumber)
	}
	if err := echo(old); err != nil {
		t.Fatalf("connection made before the reload: %v", err)
	}

	// A client of the other CA is refused until the bundle holds its CA.
	aliceB := b.client(t, "alice", a)
	s.refused(t, aliceB, "certificate signed by unknown authority")
	writeFile(t, f.CA, append(readFile(t, a.path(pki.CAFile)), readFile(t, b.path(pki.CAFile))...))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	s.mustDial(t, aliceB)
	s.mustDial(t, alice)
	if err := echo(old); err != nil {
		t.Fatalf("connection made before the reloads: %v", err)
	}
}

func TestFailedReloadKeepsTheStateAndNamesTheFile(t *testing.T) {
	a := newPKI(t, "alice", "bob")
	other := newPKI(t)
	good := a.serverFiles(a.path("crl.pem"))
	writeFile(t, good.CRL, pemCRL(a.crl(t, time.Now().Add(time.Hour), a.clientCert(t, "bob").SerialNumber)))
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	writeFile(t, notPEM, []byte("hello"))
	keyOnly := filepath.Join(t.TempDir(), "key-only.pem")
	writeFile(t, keyOnly, readFile(t, a.path(pki.CAKeyFile)))

	tests := []struct {
		name string
		file func(f Files) string // the file to break
		with []byte
		want string
	}{
		{"cert not PEM", func(f Files) string { return f.Cert }, []byte("hello"), "not PEM"},
		{"key of another certificate", func(f Files) string { return f.Key }, readFile(t, a.path(pki.CAKeyFile)), "private key does not match"},
		{"CA bundle without a certificate", func(f Files) string { return f.CA }, readFile(t, keyOnly), "no PEM certificate"},
		{"CRL garbage", func(f Files) string { return f.CRL }, []byte("hello"), "neither PEM"},
		{"CRL empty", func(f Files) string { return f.CRL }, nil, "empty"},
		{"CRL PEM of another type", func(f Files) string { return f.CRL }, readFile(t, a.path(pki.CAFile)), `"CERTIFICATE", want "X509 CRL"`},
		{"CRL of another CA", func(f Files) string { return f.CRL }, pemCRL(other.crl(t, time.Now().Add(time.Hour))), "not signed by a CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := copyFiles(t, good)
			core, logs := observer.New(zap.InfoLevel)
			r, err := NewReloader(f, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			s := serve(t, r.Config())
			_, before := s.mustDial(t, a.client(t, "alice"))

			bad := tt.file(f)
			writeFile(t, bad, tt.with)
			err = r.Reload()
			if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reload: got %v, want an error naming %s and saying %q", err, bad, tt.want)
			}
			// The old state serves on: same certificate, same CRL.
			if _, serial := s.mustDial(t, a.client(t, "alice")); serial.Cmp(before) != 0 {
				t.Fatalf("server serial %v after a failed reload, want %v", serial, before)
			}
			s.refused(t, a.client(t, "bob"), "revoked")
			if n := len(logs.FilterMessage("TLS files loaded").All()); n != 1 {
				t.Fatalf("%d \"TLS files loaded\" lines, want 1 (the first load)", n)
			}
		})
	}
}

func TestCRLRefusesTheRevokedSerialOnly(t *testing.T) {
	a := newPKI(t, "alice", "bob")
	bob := a.clientCert(t, "bob")
	for _, tt := range []struct {
		name   string
		encode func([]byte) []byte
	}{
		{"PEM", pemCRL},
		{"DER", func(der []byte) []byte { return der }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := a.serverFiles(filepath.Join(t.TempDir(), "crl"))
			writeFile(t, f.CRL, tt.encode(a.crl(t, time.Now().Add(time.Hour), bob.SerialNumber)))
			core, logs := observer.New(zap.InfoLevel)
			r, err := NewReloader(f, zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			s := serve(t, r.Config())
			s.mustDial(t, a.client(t, "alice"))
			s.refused(t, a.client(t, "bob"), "revoked")

			l := logs.FilterMessage("refused a revoked client certificate").All()
			if len(l) != 1 || l[0].Level != zap.WarnLevel {
				t.Fatalf("refusal log lines %v, want one at warn", l)
			}
			m := l[0].ContextMap()
			if m["cn"] != "bob" || m["serial"] != bob.SerialNumber.String() || !strings.HasPrefix(m["remote"].(string), "127.0.0.1:") {
				t.Fatalf("refusal log fields %v, want cn bob, serial %v, remote 127.0.0.1", m, bob.SerialNumber)
			}
		})
	}
}

func TestCRLAppliesToItsIssuerOnly(t *testing.T) {
	// Serial numbers are unique per CA: a CRL of CA a that lists the
	// serial of a certificate b issued revokes nothing of b's.
	a := newPKI(t, "alice")
	b := newPKI(t, "bob")
	f := copyFiles(t, a.serverFiles(""))
	f.CRL = filepath.Join(t.TempDir(), "crl.pem")
	writeFile(t, f.CA, append(readFile(t, a.path(pki.CAFile)), readFile(t, b.path(pki.CAFile))...))
	writeFile(t, f.CRL, pemCRL(a.crl(t, time.Now().Add(time.Hour), b.clientCert(t, "bob").SerialNumber)))
	r, err := NewReloader(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, r.Config())
	s.mustDial(t, b.client(t, "bob", a))

	// Both CAs' CRLs in one file: now b's revokes bob.
	writeFile(t, f.CRL, append(readFile(t, f.CRL), pemCRL(b.crl(t, time.Now().Add(time.Hour), b.clientCert(t, "bob").SerialNumber))...))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	s.refused(t, b.client(t, "bob", a), "revoked")
	s.mustDial(t, a.client(t, "alice"))
}

func TestCRLOfAnotherCAIsRefused(t *testing.T) {
	a := newPKI(t)
	other := newPKI(t)
	f := a.serverFiles(filepath.Join(t.TempDir(), "crl.pem"))
	writeFile(t, f.CRL, pemCRL(other.crl(t, time.Now().Add(time.Hour))))
	_, err := NewReloader(f, nil)
	if err == nil || !strings.Contains(err.Error(), f.CRL) || !strings.Contains(err.Error(), "not signed by a CA of CA file "+f.CA) {
		t.Fatalf("got %v, want an error naming %s as not signed by a CA of %s", err, f.CRL, f.CA)
	}
}

func TestOptionalCRL(t *testing.T) {
	a := newPKI(t, "alice", "bob")
	f := a.serverFiles(filepath.Join(t.TempDir(), "crl.pem"))
	f.CRLOptional = true
	r, err := NewReloader(f, nil)
	if err != nil {
		t.Fatalf("missing optional CRL: %v", err)
	}
	s := serve(t, r.Config())
	s.mustDial(t, a.client(t, "bob"))

	writeFile(t, f.CRL, pemCRL(a.crl(t, time.Now().Add(time.Hour), a.clientCert(t, "bob").SerialNumber)))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	s.refused(t, a.client(t, "bob"), "revoked")

	// Once loaded, losing the file does not lift the revocation.
	if err := os.Remove(f.CRL); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), f.CRL) {
		t.Fatalf("Reload without the CRL file: got %v, want an error naming %s", err, f.CRL)
	}
	s.refused(t, a.client(t, "bob"), "revoked")
	s.mustDial(t, a.client(t, "alice"))

	// Required (not optional): a missing file is an error from the start.
	f.CRLOptional = false
	if _, err := NewReloader(f, nil); err == nil || !strings.Contains(err.Error(), f.CRL) {
		t.Fatalf("missing required CRL: got %v, want an error naming %s", err, f.CRL)
	}
}

func TestExpiredCRLIsStillEnforced(t *testing.T) {
	a := newPKI(t, "alice", "bob")
	f := a.serverFiles(filepath.Join(t.TempDir(), "crl.pem"))
	next := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeFile(t, f.CRL, pemCRL(a.crl(t, next, a.clientCert(t, "bob").SerialNumber)))
	core, logs := observer.New(zap.InfoLevel)
	r, err := NewReloader(f, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, r.Config())
	s.refused(t, a.client(t, "bob"), "revoked")
	s.refused(t, a.client(t, "bob"), "revoked")
	s.mustDial(t, a.client(t, "alice"))
	l := logs.FilterMessage("CRL is past its next update; still enforcing it, sign a new one").All()
	if len(l) != 1 || l[0].Level != zap.WarnLevel {
		t.Fatalf("expiry log lines %v, want one at warn", l)
	}
	if got := l[0].ContextMap()["crl_next_update"]; !got.(time.Time).Equal(next) {
		t.Fatalf("crl_next_update %v, want %v", got, next)
	}
}

func TestServerSnapshotEnforcesTheCRL(t *testing.T) {
	a := newPKI(t, "alice", "bob")
	f := a.serverFiles(filepath.Join(t.TempDir(), "crl.pem"))
	writeFile(t, f.CRL, pemCRL(a.crl(t, time.Now().Add(time.Hour), a.clientCert(t, "bob").SerialNumber)))
	cfg, err := Server(f)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)
	s.mustDial(t, a.client(t, "alice"))
	s.refused(t, a.client(t, "bob"), "revoked")
}
