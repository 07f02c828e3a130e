package tlsconfig

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logd/logd/internal/pki"
)

func TestConfigs(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Generate(dir, "alice"); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, pki.CAFile)
	srv, err := Server(Files{Cert: filepath.Join(dir, pki.ServerFile), Key: filepath.Join(dir, pki.ServerKeyFile), CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	if srv.ClientAuth != tls.RequireAndVerifyClientCert || srv.MinVersion != tls.VersionTLS12 || srv.ClientCAs == nil {
		t.Fatalf("server config: got ClientAuth %v, MinVersion %x; want RequireAndVerifyClientCert, TLS 1.2", srv.ClientAuth, srv.MinVersion)
	}
	c, k := pki.ClientFiles("alice")
	cli, err := Client(Files{Cert: filepath.Join(dir, c), Key: filepath.Join(dir, k), CA: ca}, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if cli.ServerName != "localhost" || cli.RootCAs == nil || len(cli.Certificates) != 1 || cli.MinVersion != tls.VersionTLS12 {
		t.Fatalf("client config: got %+v", cli)
	}

	// A full handshake between the two on 127.0.0.1.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		done <- conn.(*tls.Conn).Handshake()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func TestErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Generate(dir); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := Files{Cert: filepath.Join(dir, pki.ServerFile), Key: filepath.Join(dir, pki.ServerKeyFile), CA: filepath.Join(dir, pki.CAFile)}
	tests := []struct {
		name string
		edit func(*Files)
		want string
	}{
		{"missing cert", func(f *Files) { f.Cert = filepath.Join(dir, "nope.pem") }, "nope.pem"},
		{"missing key", func(f *Files) { f.Key = filepath.Join(dir, "nokey.pem") }, "nokey.pem"},
		{"missing CA", func(f *Files) { f.CA = filepath.Join(dir, "noca.pem") }, "noca.pem"},
		{"CA not PEM", func(f *Files) { f.CA = notPEM }, "not.pem"},
		{"key does not match", func(f *Files) { f.Key = filepath.Join(dir, pki.CAKeyFile) }, pki.CAKeyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good
			tt.edit(&f)
			if _, err := Server(f); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
