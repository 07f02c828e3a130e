package log

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// SyncPolicy says when appended records are fsynced to disk.
type SyncPolicy int

const (
	// SyncAlways acknowledges an append only after fdatasync covers it.
	// Concurrent appenders share one fsync (group commit).
	SyncAlways SyncPolicy = iota
	// SyncInterval fsyncs at least every Config.SyncInterval. An append is
	// acknowledged once its bytes are handed to the OS, so a killed process
	// loses nothing acknowledged; a machine crash may lose the last interval.
	SyncInterval
	// SyncNone leaves fsync to the OS (and to segment roll-over and Close).
	// An append is acknowledged once its bytes are handed to the OS.
	SyncNone
)

// String returns the policy's name as ParseSyncPolicy accepts it.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy parses "always", "interval" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("%w: sync policy %q: want always, interval or none", ErrInvalidConfig, s)
}

// Config configures a Log (and, through Topics, every topic's log).
type Config struct {
	// Dir is the log's directory (for Topics: the data directory).
	Dir string

	// MaxStoreBytes is the size at which a segment's store rolls over.
	MaxStoreBytes int64
	// MaxIndexBytes is the size at which a segment's index rolls over;
	// each record takes 12 bytes. It also bounds the memory the active
	// segment's index takes.
	MaxIndexBytes int64
	// MaxRecordBytes is the largest value an append accepts.
	MaxRecordBytes int

	// Sync is the durability policy; SyncInterval is the period for
	// SyncInterval.
	Sync         SyncPolicy
	SyncInterval time.Duration
	// SlowSyncThreshold is how long an fsync may take before it is logged
	// as a warning. Zero means the default; negative turns the warning off.
	SlowSyncThreshold time.Duration

	// RetentionBytes, if positive, bounds the log's size on disk: the
	// oldest whole segments are removed while the total is over it.
	RetentionBytes int64
	// RetentionAge, if positive, removes whole segments whose newest record
	// is older than this.
	RetentionAge time.Duration
	// RetentionCheck is how often retention runs in the background (it
	// also runs on every roll-over). Zero means the default.
	RetentionCheck time.Duration

	// InitialOffset is the offset of the first record of a new log.
	InitialOffset uint64

	// Name names the log in OnSync calls (Topics sets it to the topic).
	Name string
	// OnSync, if set, is called after each fsync of the active segment
	// with how long it took and how many records it made durable (it may
	// be zero). It must be fast and safe for concurrent use.
	OnSync func(name string, d time.Duration, records uint64)

	// Logger receives lifecycle events (recovery, slow fsyncs, retention);
	// nil means no logging.
	Logger *zap.Logger
	// FS is the file system; nil means the operating system's.
	FS FS
	// Now is the clock for record times and retention; nil means time.Now.
	Now func() time.Time
}

// Defaults used by DefaultConfig and to fill zero fields.
const (
	DefaultMaxStoreBytes     = 64 << 20
	DefaultMaxIndexBytes     = 4 << 20
	DefaultMaxRecordBytes    = 1 << 20
	DefaultSyncInterval      = time.Second
	DefaultSlowSyncThreshold = time.Second
	DefaultRetentionCheck    = time.Minute
)

// DefaultConfig returns the defaults for a log in dir: 64 MiB segments,
// 1 MiB records, SyncAlways, no retention.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:               dir,
		MaxStoreBytes:     DefaultMaxStoreBytes,
		MaxIndexBytes:     DefaultMaxIndexBytes,
		MaxRecordBytes:    DefaultMaxRecordBytes,
		Sync:              SyncAlways,
		SyncInterval:      DefaultSyncInterval,
		SlowSyncThreshold: DefaultSlowSyncThreshold,
		RetentionCheck:    DefaultRetentionCheck,
	}
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Dir)
	if c.MaxStoreBytes == 0 {
		c.MaxStoreBytes = d.MaxStoreBytes
	}
	if c.MaxIndexBytes == 0 {
		c.MaxIndexBytes = d.MaxIndexBytes
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = d.MaxRecordBytes
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = d.SyncInterval
	}
	if c.SlowSyncThreshold == 0 {
		c.SlowSyncThreshold = d.SlowSyncThreshold
	}
	if c.RetentionCheck == 0 {
		c.RetentionCheck = d.RetentionCheck
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.FS == nil {
		c.FS = OSFS{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first bad field, after filling zero fields with
// their defaults. The error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Dir == "":
		return bad("Dir", "must not be empty")
	case c.MaxRecordBytes < 0 || c.MaxRecordBytes > maxValueLen:
		return bad("MaxRecordBytes", "%d is not in [1, %d]", c.MaxRecordBytes, maxValueLen)
	case c.MaxStoreBytes < headerSize+int64(c.MaxRecordBytes):
		return bad("MaxStoreBytes", "%d cannot hold one record of MaxRecordBytes (%d) plus its %d-byte header",
			c.MaxStoreBytes, c.MaxRecordBytes, headerSize)
	case c.MaxStoreBytes > 1<<40:
		return bad("MaxStoreBytes", "%d is over 1 TiB", c.MaxStoreBytes)
	case c.MaxIndexBytes < entryWidth:
		return bad("MaxIndexBytes", "%d cannot hold one %d-byte entry", c.MaxIndexBytes, entryWidth)
	case c.MaxIndexBytes/entryWidth > 1<<31:
		return bad("MaxIndexBytes", "%d holds more than 2^31 entries", c.MaxIndexBytes)
	case c.Sync < SyncAlways || c.Sync > SyncNone:
		return bad("Sync", "unknown policy %d", int(c.Sync))
	case c.SyncInterval < 0:
		return bad("SyncInterval", "%v is negative", c.SyncInterval)
	case c.RetentionBytes < 0:
		return bad("RetentionBytes", "%d is negative", c.RetentionBytes)
	case c.RetentionAge < 0:
		return bad("RetentionAge", "%v is negative", c.RetentionAge)
	case c.RetentionCheck < 0:
		return bad("RetentionCheck", "%v is negative", c.RetentionCheck)
	}
	return nil
}
