package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/reload"
)

// config is logd's configuration, from flags and an optional file.
type config struct {
	configFile    string
	configDir     string
	listen        string
	httpListen    string
	httpAPIListen string
	dataDir       string

	tlsCert, tlsKey, tlsCA string
	defaultTLS             bool // no TLS flag was given: make certificates if missing
	tlsCRL                 string
	tlsCRLOptional         bool // the default CRL: none until the file exists

	aclModel, aclPolicy string
	auditLog            string
	quotaFile           string

	sync            string
	syncInterval    time.Duration
	maxRecordBytes  int
	segmentBytes    int64
	indexBytes      int64
	retentionBytes  int64
	retentionAge    time.Duration
	shutdownTimeout time.Duration
	slowFsync       time.Duration
	reloadInterval  time.Duration

	logLevel, logFormat string
	traceSample         float64
	traceFile           string

	syncPolicy log.SyncPolicy
}

const usageText = `Usage: logd [flags]

logd serves commit logs (topics) over gRPC with mutual TLS and casbin
access control. Defaults come from $LOGD_CONFIG_DIR (or ~/.logd): the
certificates made by 'make gencert' (or by logd itself on first use, when
none of --tls-cert, --tls-key, --tls-ca is given), the CRL crl.pem that
'make revoke' writes, and the data directory <config dir>/data.

A config file (--config) holds the same keys as the flags, one per line:
'key = value' or 'key value'; '#' starts a comment. Flags on the command
line win over the file.

Flags:
`

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("logd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.configFile, "config", "", "read flags from `file` (key = value lines)")
	fs.StringVar(&c.configDir, "config-dir", "", "directory of certificates and default data (default $LOGD_CONFIG_DIR or ~/.logd)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8400", "gRPC listen `address`")
	fs.StringVar(&c.httpListen, "http-listen", "127.0.0.1:8480", "operator HTTP listen `address` (/metrics, /healthz, /readyz, /debug/tracez, /debug/rpcz, /debug/pprof/); empty turns it off")
	fs.StringVar(&c.httpAPIListen, "http-api-listen", "127.0.0.1:8410", "JSON-over-HTTPS API listen `address` (same mutual TLS and ACL as gRPC); empty turns it off")
	fs.StringVar(&c.dataDir, "data-dir", "", "data `directory` (default <config dir>/data)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "server certificate `file` (default <config dir>/server.pem)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "server key `file` (default <config dir>/server-key.pem)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA bundle `file` that client certificates must chain to (default <config dir>/ca.pem)")
	fs.StringVar(&c.tlsCRL, "tls-crl", "", "CRL `file` (PEM or DER) of revoked client certificates, reloaded like the certificates (default <config dir>/crl.pem when no --tls-cert, --tls-key or --tls-ca is given, used once it exists)")
	fs.StringVar(&c.aclModel, "acl-model", "", "casbin model `file` (default: the embedded configs/model.conf)")
	fs.StringVar(&c.aclPolicy, "acl-policy", "", "casbin policy `file` (default: the embedded configs/policy.csv)")
	fs.StringVar(&c.auditLog, "audit-log", "", "append the audit log (denials, admin actions, reloads) as JSON lines to this `file` (created 0600), or - for stderr; empty turns it off")
	fs.StringVar(&c.quotaFile, "quota-file", "", "per-principal and per-topic quotas, JSON `file` (see configs/quota.json); empty: no limits")
	fs.StringVar(&c.sync, "sync", "always", "durability `policy`: always (fsync before each ack, group commit), interval, none")
	fs.DurationVar(&c.syncInterval, "sync-interval", log.DefaultSyncInterval, "fsync period for --sync interval")
	fs.IntVar(&c.maxRecordBytes, "max-record-bytes", log.DefaultMaxRecordBytes, "largest record value accepted, in `bytes`")
	fs.Int64Var(&c.segmentBytes, "segment-bytes", log.DefaultMaxStoreBytes, "segment store size at which a new segment starts, in `bytes`")
	fs.Int64Var(&c.indexBytes, "index-bytes", log.DefaultMaxIndexBytes, "segment index size at which a new segment starts, in `bytes` (12 per record)")
	fs.Int64Var(&c.retentionBytes, "retention-bytes", 0, "per topic, remove the oldest segments beyond this many `bytes` (0: keep all)")
	fs.DurationVar(&c.retentionAge, "retention-age", 0, "per topic, remove segments whose newest record is older than this (0: keep all)")
	fs.DurationVar(&c.slowFsync, "slow-fsync", log.DefaultSlowSyncThreshold, "log a warning when an fsync takes longer than this")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight calls may run after SIGTERM")
	fs.DurationVar(&c.reloadInterval, "reload-interval", reload.DefaultInterval, "how often to look for changes in the live configuration files (policy, quotas, certificates, CRL); SIGHUP reloads them at once")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "json", "log `format`: json or console")
	fs.Float64Var(&c.traceSample, "trace-sample", 0.01, "fraction of calls to trace (0 to 1); sampled spans show at /debug/tracez")
	fs.StringVar(&c.traceFile, "trace-file", "", "also write sampled spans as JSON lines to this `file`")

	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stderr, usageText)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, usagef("%v (see logd -h)", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (see logd -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.configFile != "" {
		if err := applyFile(fs, c.configFile, set); err != nil {
			return nil, err
		}
	}
	return c, c.finish(set)
}

// applyFile sets, from a config file, every flag not set on the command
// line.
func applyFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			key, value, _ = strings.Cut(line, " ")
		}
		key, value = strings.TrimSpace(key), strings.Trim(strings.TrimSpace(value), `"`)
		if key == "config" {
			return usagef("%s:%d: a config file cannot name another", path, n)
		}
		if fs.Lookup(key) == nil {
			return usagef("%s:%d: unknown key %q", path, n, key)
		}
		if set[key] {
			continue
		}
		if err := fs.Set(key, value); err != nil {
			return usagef("%s:%d: %s: %v", path, n, key, err)
		}
		set[key] = true
	}
	if err := sc.Err(); err != nil {
		return usagef("--config: %v", err)
	}
	return nil
}

// finish fills defaults that depend on other settings and checks values.
func (c *config) finish(set map[string]bool) error {
	if c.configDir == "" {
		c.configDir = pki.DefaultDir()
	}
	if c.dataDir == "" {
		c.dataDir = filepath.Join(c.configDir, "data")
	}
	c.defaultTLS = !set["tls-cert"] && !set["tls-key"] && !set["tls-ca"]
	if c.tlsCert == "" {
		c.tlsCert = filepath.Join(c.configDir, pki.ServerFile)
	}
	if c.tlsKey == "" {
		c.tlsKey = filepath.Join(c.configDir, pki.ServerKeyFile)
	}
	if c.tlsCA == "" {
		c.tlsCA = filepath.Join(c.configDir, pki.CAFile)
	}
	if c.tlsCRL == "" && c.defaultTLS {
		c.tlsCRL = filepath.Join(c.configDir, pki.CRLFile)
		c.tlsCRLOptional = true
	}
	p, err := log.ParseSyncPolicy(c.sync)
	if err != nil {
		return usagef("--sync: %q is not always, interval or none", c.sync)
	}
	c.syncPolicy = p
	if c.traceSample < 0 || c.traceSample > 1 {
		return usagef("--trace-sample: %v is not between 0 and 1", c.traceSample)
	}
	if c.reloadInterval <= 0 {
		return usagef("--reload-interval: must be positive")
	}
	if c.shutdownTimeout <= 0 {
		return usagef("--shutdown-timeout: must be positive")
	}
	if err := c.logConfig(nil).Validate(); err != nil {
		return usagef("%s", flagNames(err.Error()))
	}
	return nil
}

// flagNames rewrites log.Config field names in a validation error as the
// flags that set them.
func flagNames(msg string) string {
	r := strings.NewReplacer(
		"MaxRecordBytes", "--max-record-bytes",
		"MaxStoreBytes", "--segment-bytes",
		"MaxIndexBytes", "--index-bytes",
		"SyncInterval", "--sync-interval",
		"RetentionBytes", "--retention-bytes",
		"RetentionAge", "--retention-age",
		"Dir", "--data-dir",
	)
	return r.Replace(msg)
}

func (c *config) logConfig(logger *zap.Logger) log.Config {
	lc := log.DefaultConfig(c.dataDir)
	lc.MaxRecordBytes = c.maxRecordBytes
	lc.MaxStoreBytes = c.segmentBytes
	lc.MaxIndexBytes = c.indexBytes
	lc.Sync = c.syncPolicy
	lc.SyncInterval = c.syncInterval
	lc.RetentionBytes = c.retentionBytes
	lc.RetentionAge = c.retentionAge
	lc.SlowSyncThreshold = c.slowFsync
	lc.Logger = logger
	return lc
}

// fields describes the effective configuration for the start log line.
// It holds paths, never key material.
func (c *config) fields() []zap.Field {
	return []zap.Field{
		zap.String("listen", c.listen),
		zap.String("http_listen", c.httpListen),
		zap.String("http_api_listen", c.httpAPIListen),
		zap.String("data_dir", c.dataDir),
		zap.String("tls_cert", c.tlsCert),
		zap.String("tls_ca", c.tlsCA),
		zap.String("tls_crl", c.tlsCRL),
		zap.String("acl_model", orDefault(c.aclModel)),
		zap.String("acl_policy", orDefault(c.aclPolicy)),
		zap.String("audit_log", c.auditLog),
		zap.String("quota_file", c.quotaFile),
		zap.String("sync", c.syncPolicy.String()),
		zap.Duration("sync_interval", c.syncInterval),
		zap.Int("max_record_bytes", c.maxRecordBytes),
		zap.Int64("segment_bytes", c.segmentBytes),
		zap.Int64("retention_bytes", c.retentionBytes),
		zap.Duration("retention_age", c.retentionAge),
		zap.Float64("trace_sample", c.traceSample),
		zap.String("trace_file", c.traceFile),
		zap.String("log_level", c.logLevel),
	}
}

func orDefault(path string) string {
	if path == "" {
		return "(embedded default)"
	}
	return path
}
