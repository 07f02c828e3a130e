package tlsconfig

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Reloader is a server TLS configuration that can be reloaded from its
// files while the server runs. Each handshake uses the state current when
// it starts; Reload replaces the state in whole or not at all.
type Reloader struct {
	files  Files
	logger *zap.Logger

	mu  sync.Mutex // serializes Reload
	cur atomic.Pointer[state]
}

// NewReloader loads the files (see Reload) and returns a Reloader serving
// them. It logs to logger (nil: nowhere) each load and each client
// certificate refused because the CRL revokes it.
func NewReloader(f Files, logger *zap.Logger) (*Reloader, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	r := &Reloader{files: f, logger: logger}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Paths returns the files the configuration is read from: certificate,
// key, CA bundle and CRL ("" if none).
func (r *Reloader) Paths() []string {
	return []string{r.files.Cert, r.files.Key, r.files.CA, r.files.CRL}
}

// Reload re-reads every file. Only if they all parse, the key matches the
// certificate, the CA bundle holds a certificate and every CRL is signed
// by a CA of the bundle does the new state replace the old one, for the
// handshakes that start afterwards; otherwise the error names the file at
// fault and the old state stays. Established connections are not
// affected either way.
//
// A missing optional CRL file (Files.CRLOptional) means no CRL, unless a
// CRL was loaded from it before: then it is an error, so that losing the
// file never lifts revocations silently.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := loadState(r.files, r.cur.Load(), r.logger)
	if err != nil {
		return err
	}
	r.cur.Store(st)
	fields := []zap.Field{
		zap.String("cert", r.files.Cert),
		zap.String("server_serial", st.leaf.SerialNumber.String()),
		zap.Time("server_not_after", st.leaf.NotAfter),
		zap.Int("cas", st.cas),
	}
	if st.crl != nil {
		fields = append(fields, zap.String("crl", st.crl.file), zap.Int("crl_revoked", st.crl.entries))
		if !st.crl.nextUpdate.IsZero() {
			fields = append(fields, zap.Time("crl_next_update", st.crl.nextUpdate))
		}
	}
	r.logger.Info("TLS files loaded", fields...)
	st.checkExpiry(time.Now())
	return nil
}

// Config returns a server config whose handshakes use the state current
// when they start. nextProtos are the ALPN protocols to offer: the
// handshake runs on the config that GetConfigForClient returns, so
// protocols a library adds to its own copy of this config are lost unless
// named here (gRPC adds "h2" itself; net/http needs "h2", "http/1.1").
func (r *Reloader) Config(nextProtos ...string) *tls.Config {
	protos := slices.Clone(nextProtos)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		NextProtos: protos,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			st := r.cur.Load()
			c := st.config.Clone()
			c.NextProtos = protos
			var remote net.Addr
			if hello.Conn != nil {
				remote = hello.Conn.RemoteAddr()
			}
			c.VerifyConnection = func(cs tls.ConnectionState) error { return st.verify(cs, remote) }
			return c, nil
		},
	}
}

// state is one immutable load of the files.
type state struct {
	config *tls.Config // the handshake template
	leaf   *x509.Certificate
	cas    int
	crl    *revocations // nil: no CRL
	logger *zap.Logger

	expiredWarned atomic.Bool // the CRL's expiry was logged
}

// loadState reads f; prev is the state it replaces (nil if none).
func loadState(f Files, prev *state, logger *zap.Logger) (*state, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	cert, cas, err := loadPair(f)
	if err != nil {
		return nil, err
	}
	crl, err := loadCRL(f, cas, prev != nil && prev.crl != nil)
	if err != nil {
		return nil, err
	}
	st := &state{leaf: cert.Leaf, cas: len(cas), crl: crl, logger: logger}
	st.config = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool(cas),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		// Used as is (Server), without a peer address in log lines;
		// Reloader.Config sets its own per handshake.
		VerifyConnection: func(cs tls.ConnectionState) error { return st.verify(cs, nil) },
	}
	// Session tickets of one state do not resume under another, so a
	// client the new CA bundle no longer accepts cannot resume past it.
	var key [32]byte
	rand.Read(key[:])
	st.config.SetSessionTicketKeys([][32]byte{key})
	return st, nil
}

// verify refuses a client certificate the CRL revokes. It runs after
// the chain was verified, on resumed connections too.
func (st *state) verify(cs tls.ConnectionState, remote net.Addr) error {
	if st.crl == nil {
		return nil
	}
	st.checkExpiry(time.Now())
	err := st.crl.check(cs.VerifiedChains)
	if err != nil {
		leaf := cs.VerifiedChains[0][0]
		fields := []zap.Field{
			zap.String("cn", leaf.Subject.CommonName),
			zap.String("serial", leaf.SerialNumber.String()),
			zap.String("crl", st.crl.file),
		}
		if remote != nil {
			fields = append(fields, zap.String("remote", remote.String()))
		}
		st.logger.Warn("refused a revoked client certificate", fields...)
	}
	return err
}

// checkExpiry logs, once per state, that the CRL's next update is past.
func (st *state) checkExpiry(now time.Time) {
	if st.crl == nil || !st.crl.expired(now) || !st.expiredWarned.CompareAndSwap(false, true) {
		return
	}
	st.logger.Warn("CRL is past its next update; still enforcing it, sign a new one",
		zap.String("crl", st.crl.file), zap.Time("crl_next_update", st.crl.nextUpdate))
}
