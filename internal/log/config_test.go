package log

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	if err := DefaultConfig(dir).Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v, want nil", err)
	}
	// Zero fields take their defaults: a Config with only Dir is valid.
	if err := (Config{Dir: dir}).Validate(); err != nil {
		t.Fatalf("Config{Dir}.Validate() = %v, want nil", err)
	}
	c := Config{Dir: dir}.withDefaults()
	d := DefaultConfig(dir)
	if c.MaxStoreBytes != d.MaxStoreBytes || c.MaxIndexBytes != d.MaxIndexBytes || c.MaxRecordBytes != d.MaxRecordBytes ||
		c.SyncInterval != d.SyncInterval || c.SlowSyncThreshold != d.SlowSyncThreshold || c.RetentionCheck != d.RetentionCheck ||
		c.Sync != SyncAlways || c.Logger == nil || c.FS == nil || c.Now == nil {
		t.Fatalf("withDefaults = %+v, want the defaults of %+v with Logger, FS and Now set", c, d)
	}
	// Set fields are kept.
	c = Config{Dir: dir, MaxStoreBytes: 1 << 20, MaxRecordBytes: 10, Sync: SyncNone, RetentionAge: time.Hour}.withDefaults()
	if c.MaxStoreBytes != 1<<20 || c.MaxRecordBytes != 10 || c.Sync != SyncNone || c.RetentionAge != time.Hour {
		t.Fatalf("withDefaults changed set fields: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		field string // "" for a valid config
		edit  func(*Config)
	}{
		{name: "empty dir", field: "Dir", edit: func(c *Config) { c.Dir = "" }},
		{name: "negative record limit", field: "MaxRecordBytes", edit: func(c *Config) { c.MaxRecordBytes = -1 }},
		{name: "record limit over the frame limit", field: "MaxRecordBytes", edit: func(c *Config) {
			c.MaxRecordBytes = maxValueLen + 1
			c.MaxStoreBytes = 1 << 30
		}},
		{name: "record limit at the frame limit", edit: func(c *Config) {
			c.MaxRecordBytes = maxValueLen
			c.MaxStoreBytes = 1 << 30
		}},
		{name: "store smaller than a record", field: "MaxStoreBytes", edit: func(c *Config) {
			c.MaxRecordBytes = 100
			c.MaxStoreBytes = headerSize + 99
		}},
		{name: "store exactly one record", edit: func(c *Config) {
			c.MaxRecordBytes = 100
			c.MaxStoreBytes = headerSize + 100
		}},
		{name: "store smaller than the default record", field: "MaxStoreBytes", edit: func(c *Config) { c.MaxStoreBytes = 1 << 10 }},
		{name: "negative store", field: "MaxStoreBytes", edit: func(c *Config) { c.MaxStoreBytes = -1 }},
		{name: "store over 1 TiB", field: "MaxStoreBytes", edit: func(c *Config) { c.MaxStoreBytes = 1<<40 + 1 }},
		{name: "store 1 TiB", edit: func(c *Config) { c.MaxStoreBytes = 1 << 40 }},
		{name: "index smaller than an entry", field: "MaxIndexBytes", edit: func(c *Config) { c.MaxIndexBytes = entryWidth - 1 }},
		{name: "negative index", field: "MaxIndexBytes", edit: func(c *Config) { c.MaxIndexBytes = -12 }},
		{name: "index of one entry", edit: func(c *Config) { c.MaxIndexBytes = entryWidth }},
		{name: "index over 2^31 entries", field: "MaxIndexBytes", edit: func(c *Config) { c.MaxIndexBytes = entryWidth * (1<<31 + 1) }},
		{name: "index of 2^31 entries", edit: func(c *Config) { c.MaxIndexBytes = entryWidth * (1 << 31) }},
		{name: "unknown sync policy", field: "Sync", edit: func(c *Config) { c.Sync = SyncNone + 1 }},
		{name: "negative sync policy", field: "Sync", edit: func(c *Config) { c.Sync = -1 }},
		{name: "negative sync interval", field: "SyncInterval", edit: func(c *Config) { c.SyncInterval = -time.Second }},
		{name: "negative retention bytes", field: "RetentionBytes", edit: func(c *Config) { c.RetentionBytes = -1 }},
		{name: "negative retention age", field: "RetentionAge", edit: func(c *Config) { c.RetentionAge = -time.Minute }},
		{name: "negative retention check", field: "RetentionCheck", edit: func(c *Config) { c.RetentionCheck = -time.Millisecond }},
		{name: "negative slow sync threshold turns the warning off", edit: func(c *Config) { c.SlowSyncThreshold = -1 }},
		{name: "retention set", edit: func(c *Config) { c.RetentionBytes = 1; c.RetentionAge = time.Nanosecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %q, want it to name the field %s", err, tt.field)
			}
			// Open and OpenTopics refuse it the same way.
			if l, err := Open(cfg); !errors.Is(err, ErrInvalidConfig) {
				if l != nil {
					l.Close()
				}
				t.Fatalf("Open = %v, want ErrInvalidConfig", err)
			}
			if tp, err := OpenTopics(cfg); !errors.Is(err, ErrInvalidConfig) {
				if tp != nil {
					tp.Close()
				}
				t.Fatalf("OpenTopics = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestParseSyncPolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    SyncPolicy
		wantErr bool
	}{
		{in: "always", want: SyncAlways},
		{in: "interval", want: SyncInterval},
		{in: "none", want: SyncNone},
		{in: "ALWAYS", want: SyncAlways},
		{in: " Interval\n", want: SyncInterval},
		{in: "", wantErr: true},
		{in: "sometimes", wantErr: true},
		{in: "al ways", wantErr: true},
		{in: "0", wantErr: true},
		{in: "never", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSyncPolicy(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("ParseSyncPolicy(%q) = (%v, %v), want an error wrapping ErrInvalidConfig", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSyncPolicy(%q) = (%v, %v), want (%v, nil)", tt.in, got, err, tt.want)
			}
		})
	}
	// String and ParseSyncPolicy round-trip.
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		if got, err := ParseSyncPolicy(p.String()); err != nil || got != p {
			t.Errorf("ParseSyncPolicy(%q) = (%v, %v), want (%v, nil)", p.String(), got, err, p)
		}
	}
	if got, want := SyncPolicy(7).String(), "SyncPolicy(7)"; got != want {
		t.Errorf("SyncPolicy(7).String() = %q, want %q", got, want)
	}
}
