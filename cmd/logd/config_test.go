package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logd/logd/internal/log"
)

func writeFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "logd.conf")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	t.Setenv("LOGD_CONFIG_DIR", "/cfg")
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:8400" || c.httpListen != "127.0.0.1:8480" {
		t.Errorf("got listen %q, http %q; want 127.0.0.1:8400, 127.0.0.1:8480", c.listen, c.httpListen)
	}
	if c.dataDir != "/cfg/data" || c.tlsCert != "/cfg/server.pem" || c.tlsKey != "/cfg/server-key.pem" || c.tlsCA != "/cfg/ca.pem" {
		t.Errorf("got data %q, cert %q, key %q, ca %q; want them under /cfg", c.dataDir, c.tlsCert, c.tlsKey, c.tlsCA)
	}
	if !c.defaultTLS || c.syncPolicy != log.SyncAlways {
		t.Errorf("got defaultTLS %v, sync %v; want true, always", c.defaultTLS, c.syncPolicy)
	}
	if c.tlsCRL != "/cfg/crl.pem" || !c.tlsCRLOptional {
		t.Errorf("got CRL %q (optional %v), want /cfg/crl.pem, optional", c.tlsCRL, c.tlsCRLOptional)
	}
}

func TestCRLDefault(t *testing.T) {
	t.Setenv("LOGD_CONFIG_DIR", "/cfg")
	tests := []struct {
		name     string
		args     []string
		want     string
		optional bool
	}{
		{"explicit CRL is required", []string{"--tls-crl", "/etc/logd/crl.der"}, "/etc/logd/crl.der", false},
		{"explicit TLS files: no default CRL", []string{"--tls-ca", "/etc/logd/ca.pem"}, "", false},
		{"both explicit", []string{"--tls-cert", "/etc/logd/s.pem", "--tls-crl", "/etc/logd/crl.pem"}, "/etc/logd/crl.pem", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.tlsCRL != tt.want || c.tlsCRLOptional != tt.optional {
				t.Fatalf("got CRL %q (optional %v), want %q (optional %v)", c.tlsCRL, c.tlsCRLOptional, tt.want, tt.optional)
			}
		})
	}
}

func TestConfigFile(t *testing.T) {
	file := writeFile(t, `
# a comment
listen = 127.0.0.1:9000
sync none          # trailing comment
retention-age = "2h"
tls-ca = /etc/logd/ca.pem
`)
	c, err := parseConfig([]string{"--config", file, "--listen", "127.0.0.1:9100"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:9100" {
		t.Errorf("got listen %q, want the command line's 127.0.0.1:9100", c.listen)
	}
	if c.syncPolicy != log.SyncNone || c.retentionAge != 2*time.Hour || c.tlsCA != "/etc/logd/ca.pem" {
		t.Errorf("got sync %v, retention %v, ca %q; want the file's", c.syncPolicy, c.retentionAge, c.tlsCA)
	}
	if c.defaultTLS {
		t.Error("a tls-ca key in the file must turn off certificates on first use")
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, "-bogus"},
		{"bad sync", []string{"--sync", "sometimes"}, "--sync"},
		{"bad duration", []string{"--sync-interval", "soon"}, "sync-interval"},
		{"stray argument", []string{"serve"}, `"serve"`},
		{"record over segment", []string{"--max-record-bytes", "2000", "--segment-bytes", "1000"}, "--segment-bytes"},
		{"missing file", []string{"--config", "/nonexistent/logd.conf"}, "/nonexistent/logd.conf"},
		{"unknown key", []string{"--config", writeFile(t, "colour = blue\n")}, `unknown key "colour"`},
		{"bad value in file", []string{"--config", writeFile(t, "\nmax-record-bytes = lots\n")}, "logd.conf:2"},
		{"nested config", []string{"--config", writeFile(t, "config = other\n")}, "cannot name another"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if _, ok := err.(usageError); !ok {
				t.Fatalf("got %T, want a usageError (exit status 2)", err)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"-h"}, &out); code != 0 {
		t.Fatalf("got exit %d, want 0", code)
	}
	for _, want := range []string{"Usage: logd", "-listen", "-sync", "LOGD_CONFIG_DIR"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
