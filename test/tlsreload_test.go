package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/tlsconfig"
)

// tlsClient is a client certificate and the CA bundle it trusts.
type tlsClient struct {
	certDir, cn, trust string
}

func (c tlsClient) config(t testing.TB) *tls.Config {
	t.Helper()
	cert, key := pki.ClientFiles(c.cn)
	cfg, err := tlsconfig.Client(tlsconfig.Files{
		Cert: filepath.Join(c.certDir, cert),
		Key:  filepath.Join(c.certDir, key),
		CA:   c.trust,
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// dial opens a gRPC connection of its own (a new handshake on first use).
func (c tlsClient) dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(c.config(t))))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// produceOn appends value to topic over conn and returns the serial
// number of the server certificate the connection was made with.
func produceOn(conn *grpc.ClientConn, topic, value string) (*big.Int, error) {
	ctx, cancel := rpcCtx()
	defer cancel()
	var pr peer.Peer
	_, err := logv1.NewLogClient(conn).Produce(ctx,
		&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(value)}}, grpc.Peer(&pr))
	if err != nil {
		return nil, err
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil, fmt.Errorf("no server certificate in peer %+v", pr)
	}
	return ti.State.PeerCertificates[0].SerialNumber, nil
}

// freshSerial produces once on a new connection and returns the server
// certificate's serial number.
func (c tlsClient) freshSerial(t testing.TB, addr, topic string) *big.Int {
	t.Helper()
	conn := c.dial(t, addr)
	defer conn.Close()
	s, err := produceOn(conn, topic, "fresh")
	if err != nil {
		t.Fatalf("%s on a new connection: %v", c.cn, err)
	}
	return s
}

// certSerial returns the serial number of a PEM certificate file.
func certSerial(t testing.TB, path string) *big.Int {
	t.Helper()
	blk, _ := pem.Decode(readFile(t, path))
	if blk == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c.SerialNumber
}

// replaceFile puts data at path the way an operator should: written to a
// temporary file beside it, then renamed into place.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
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

// load runs clients against logd until stop is called: producers on
// long-lived connections, and dialers that make a new connection for
// every record.
type load struct {
	stop   func()
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
	served atomic.Int64 // calls that succeeded
	long   atomic.Int64 // of them, on long-lived connections
	// long-lived connections: the server serials they saw.
	longSerials map[string]bool
	// new connections: the server serials they saw.
	newSerials map[string]bool
}

func startLoad(t testing.TB, c tlsClient, addr string, producers, dialers int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{stop: cancel, longSerials: map[string]bool{}, newSerials: map[string]bool{}}
	creds := credentials.NewTLS(c.config(t))
	record := func(seen map[string]bool, s *big.Int, err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.errs = append(l.errs, err)
			return
		}
		seen[s.String()] = true
		l.served.Add(1)
	}
	for i := range producers {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer conn.Close()
			for n := 0; ctx.Err() == nil; n++ {
				s, err := produceOn(conn, fmt.Sprintf("rotate/long-%d", i), fmt.Sprint(n))
				record(l.longSerials, s, err)
				if err == nil {
					l.long.Add(1)
				}
			}
		}()
	}
	for i := range dialers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
				if err != nil {
					record(nil, nil, err)
					continue
				}
				s, err := produceOn(conn, fmt.Sprintf("rotate/new-%d", i), fmt.Sprint(n))
				conn.Close()
				record(l.newSerials, s, err)
			}
		}()
	}
	return l
}

// progress waits until the load has gone on for a while under the
// current certificates: calls on the long-lived connections, and a new
// connection that got the server certificate with serial.
func (l *load) progress(t testing.TB, serial *big.Int) {
	t.Helper()
	from := l.long.Load()
	waitFor(t, "calls on long-lived connections", func() bool { return l.long.Load() >= from+20 })
	waitFor(t, fmt.Sprintf("a new connection to get server certificate %v", serial), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.newSerials[serial.String()]
	})
}

// halt stops the load and waits for its clients to return.
func (l *load) halt() {
	l.stop()
	l.wg.Wait()
}

// finish stops the load and checks that no call failed.
func (l *load) finish(t testing.TB) {
	t.Helper()
	l.halt()
	if len(l.errs) > 0 {
		t.Errorf("%d client errors under load (of %d calls); first: %v", len(l.errs), int(l.served.Load())+len(l.errs), l.errs[0])
	}
}

func TestCertificateRotationUnderLoad(t *testing.T) {
	configDir := t.TempDir()
	if err := pki.Generate(configDir, pki.DefaultClients...); err != nil {
		t.Fatal(err)
	}
	// The next server certificate, from the same CA.
	sameCA := t.TempDir()
	for _, f := range []string{pki.CAFile, pki.CAKeyFile} {
		if err := os.WriteFile(filepath.Join(sameCA, f), readFile(t, filepath.Join(configDir, f)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := pki.IssueServer(sameCA); err != nil {
		t.Fatal(err)
	}
	// A new CA, its server certificate and a client.
	newCA := t.TempDir()
	if err := pki.Generate(newCA, "alice"); err != nil {
		t.Fatal(err)
	}
	// Clients trust both CAs from the start, as they must before the
	// server's certificate moves to the new CA.
	trust := filepath.Join(t.TempDir(), "trust.pem")
	bundle := append(readFile(t, filepath.Join(configDir, pki.CAFile)), readFile(t, filepath.Join(newCA, pki.CAFile))...)
	if err := os.WriteFile(trust, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	root := tlsClient{certDir: configDir, cn: "root", trust: trust}
	newAlice := tlsClient{certDir: newCA, cn: "alice", trust: trust}
	serial := map[string]*big.Int{
		"first":  certSerial(t, filepath.Join(configDir, pki.ServerFile)),
		"sameCA": certSerial(t, filepath.Join(sameCA, pki.ServerFile)),
		"newCA":  certSerial(t, filepath.Join(newCA, pki.ServerFile)),
	}

	p := startLogd(t, configDir, "", "--sync", "none", "--reload-interval", "100ms")
	if got := root.freshSerial(t, p.GRPCAddr, "rotate/check"); got.Cmp(serial["first"]) != 0 {
		t.Fatalf("server serial %v at start, want %v", got, serial["first"])
	}
	l := startLoad(t, root, p.GRPCAddr, 4, 2)
	defer l.halt() // on a failure before finish
	l.progress(t, serial["first"])

	// 1. A new server certificate from the same CA. Key and certificate
	// are two renames: should logd look between them, the pair does not
	// match, the reload fails and the old pair serves on until the next.
	rotateServer(t, p, root, sameCA, 1)
	l.progress(t, serial["sameCA"])

	// 2. The CA bundle grows by the new CA: its clients get in.
	early := newAlice.dial(t, p.GRPCAddr)
	if _, err := produceOn(early, "alice/rotate", "early"); err == nil {
		t.Fatal("a client of the new CA was accepted before the CA bundle had it")
	}
	early.Close()
	replaceFile(t, filepath.Join(configDir, pki.CAFile), bundle)
	p.waitReloads(t, "tls", "reloaded", "", 2)
	newAlice.freshSerial(t, p.GRPCAddr, "alice/rotate")
	l.progress(t, serial["sameCA"])

	// 3. A server certificate from the new CA.
	rotateServer(t, p, root, newCA, 3)
	// The JSON API serves the same state.
	if got := apiServerSerial(t, p, root); got.Cmp(serial["newCA"]) != 0 {
		t.Fatalf("HTTP API server serial %v, want %v", got, serial["newCA"])
	}
	l.progress(t, serial["newCA"])

	l.finish(t)
	// Connections made before the reloads lived through them: they never
	// saw another certificate. New ones saw each in turn.
	if len(l.longSerials) != 1 || !l.longSerials[serial["first"].String()] {
		t.Errorf("long-lived connections saw server serials %v, want only the first, %v", l.longSerials, serial["first"])
	}
	if len(l.newSerials) != len(serial) {
		t.Errorf("new connections saw server serials %v, want the three of %v", l.newSerials, serial)
	}
	t.Logf("%d calls under load (%d on new connections), 0 errors, across 3 reloads", l.served.Load(), l.served.Load()-l.long.Load())
}

// rotateServer renames the server key and certificate of dir into logd's
// config dir, waits for its nth TLS reload and checks that a new
// connection of c gets the new certificate.
func rotateServer(t testing.TB, p *process, c tlsClient, dir string, n int) {
	t.Helper()
	for _, f := range []string{pki.ServerKeyFile, pki.ServerFile} {
		replaceFile(t, filepath.Join(p.configDir, f), readFile(t, filepath.Join(dir, f)))
	}
	p.waitReloads(t, "tls", "reloaded", "", n)
	want := certSerial(t, filepath.Join(dir, pki.ServerFile))
	if got := c.freshSerial(t, p.GRPCAddr, "rotate/check"); got.Cmp(want) != 0 {
		t.Fatalf("after TLS reload %d: server serial %v, want %v", n, got, want)
	}
}

// apiServerSerial produces through the JSON API on a new HTTP/2
// connection and returns the server certificate's serial number.
func apiServerSerial(t testing.TB, p *process, c tlsClient) *big.Int {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: c.config(t), DisableKeepAlives: true, ForceAttemptHTTP2: true}
	hc := &http.Client{Transport: tr, Timeout: rpcTimeout}
	res, err := hc.Post(p.apiURL(recordsPath("rotate/api")), "application/json", strings.NewReader(jsonRecord("x")))
	if err != nil {
		t.Fatalf("HTTP API: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 {
		t.Fatalf("HTTP API produce: status %d over %s, want 200 over HTTP/2", res.StatusCode, res.Proto)
	}
	return res.TLS.PeerCertificates[0].SerialNumber
}

func TestRevokedClientIsRefused(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	configDir := t.TempDir()
	if err := pki.Generate(configDir, pki.DefaultClients...); err != nil {
		t.Fatal(err)
	}
	p := startLogd(t, configDir, "", "--sync", "none", "--reload-interval", "100ms")
	ca := filepath.Join(configDir, pki.CAFile)
	alice := tlsClient{certDir: configDir, cn: "alice", trust: ca}
	bob := tlsClient{certDir: configDir, cn: "bob", trust: ca}
	aliceConn := alice.dial(t, p.GRPCAddr)
	defer aliceConn.Close()
	for _, c := range []tlsClient{alice, bob} {
		c.freshSerial(t, p.GRPCAddr, c.cn+"/before")
	}
	if _, err := produceOn(aliceConn, "alice/long", "before"); err != nil {
		t.Fatal(err)
	}

	// No CRL yet: logd watches <config dir>/crl.pem and loads it when
	// make revoke writes it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", repoRoot(t), "--no-print-directory", "revoke", "CN=bob", "CONFIG_DIR="+configDir, "GO="+goTool())
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make revoke CN=bob: %v\n%s", err, out)
	}
	bobSerial := certSerial(t, filepath.Join(configDir, "bob-client.pem"))
	if !strings.Contains(string(out), "revoked bob (serial "+bobSerial.String()+")") {
		t.Fatalf("make revoke output %q does not name bob's serial %v", out, bobSerial)
	}
	p.waitReloads(t, "tls", "reloaded", "", 1)

	// bob's new connections are refused at the handshake, over gRPC ...
	conn := bob.dial(t, p.GRPCAddr)
	_, err = produceOn(conn, "bob/after", "x")
	conn.Close()
	// The client sees the server's alert ("bad certificate") or, if it
	// was still writing, a broken connection; logd's log says why.
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
		t.Fatalf("bob after revocation: got %v, want Unavailable", err)
	}
	for _, l := range p.stderr.find("finished call") {
		if strings.Contains(l.raw, `"topic":"bob/after"`) {
			t.Fatalf("a call of bob's passed the handshake after the revocation: %s", l.raw)
		}
	}
	var refusals []logLine
	waitFor(t, "the refusal's log line", func() bool {
		refusals = p.stderr.find("refused a revoked client certificate")
		return len(refusals) > 0
	})
	var line struct{ Level, CN, Serial string }
	if err := json.Unmarshal([]byte(refusals[0].raw), &line); err != nil {
		t.Fatal(err)
	}
	if line.Level != "warn" || line.CN != "bob" || line.Serial != bobSerial.String() {
		t.Fatalf("refusal log line %s, want level warn, cn bob, serial %v", refusals[0].raw, bobSerial)
	}
	// ... and over the JSON API.
	tr := &http.Transport{TLSClientConfig: bob.config(t), DisableKeepAlives: true}
	if res, err := (&http.Client{Transport: tr, Timeout: rpcTimeout}).Post(p.apiURL(recordsPath("bob/api")), "application/json", strings.NewReader(jsonRecord("x"))); err == nil {
		res.Body.Close()
		t.Fatalf("bob's HTTP API call after revocation: status %d, want the handshake refused", res.StatusCode)
	}

	// alice is not affected: new connections and the one she had.
	alice.freshSerial(t, p.GRPCAddr, "alice/after")
	if _, err := produceOn(aliceConn, "alice/long", "after"); err != nil {
		t.Fatalf("alice's connection after bob's revocation: %v", err)
	}
	apiServerSerial(t, p, tlsClient{certDir: configDir, cn: "root", trust: ca})
}

// repoRoot is the directory of the module's go.mod, where the Makefile
// is.
func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		t.Fatal("go env GOMOD: not in a module")
	}
	return filepath.Dir(mod)
}
