package telemetry

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestAuditLogger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, closeLog, err := NewAuditLogger(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("audit", zap.String("principal", "alice"), zap.String("decision", "deny"))
	// Readable at once, before any Sync or Close: a tail sees it.
	lines := readJSONLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("got %d lines before close, want 1", len(lines))
	}
	e := lines[0]
	if e["msg"] != "audit" || e["principal"] != "alice" || e["decision"] != "deny" {
		t.Fatalf("entry %v", e)
	}
	if _, ok := e["level"]; ok {
		t.Errorf("entry %v has a level", e)
	}
	if ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", e["time"].(string)); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("time %v: %v, want now in ISO 8601", e["time"], err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode %v, want 0600", mode)
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}

	// A second run appends.
	l, closeLog, err = NewAuditLogger(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("audit", zap.String("principal", "bob"))
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	if lines := readJSONLines(t, path); len(lines) != 2 || lines[1]["principal"] != "bob" {
		t.Fatalf("after a second run: %v, want alice's line then bob's", lines)
	}

	if l, closeLog, err := NewAuditLogger(""); l != nil || err != nil || closeLog() != nil {
		t.Fatalf(`NewAuditLogger(""): got %v, %v; want off (a nil logger)`, l, err)
	}
	if _, _, err := NewAuditLogger(filepath.Join(t.TempDir(), "missing", "audit.jsonl")); err == nil {
		t.Fatal("an audit log in a missing directory was accepted")
	}
}
