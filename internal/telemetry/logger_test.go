package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestNewLoggerJSON(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger("info", "", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hidden")
	l.Info("hello", zap.Duration("took", 1500*time.Millisecond), zap.Error(errors.New("boom")))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1 (debug filtered):\n%s", len(lines), buf.String())
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, lines[0])
	}
	if e["level"] != "info" || e["msg"] != "hello" || e["took"] != "1.5s" || e["error"] != "boom" {
		t.Errorf("entry %v", e)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z0700", e["ts"].(string)); err != nil {
		t.Errorf("ts %v is not ISO 8601: %v", e["ts"], err)
	}
	if c, _ := e["caller"].(string); !strings.Contains(c, "logger_test.go") {
		t.Errorf("caller %v, want logger_test.go:…", e["caller"])
	}
}

func TestNewLoggerConsole(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger("DEBUG", "console", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("shown", zap.Duration("took", time.Second))
	out := buf.String()
	if !strings.Contains(out, "DEBUG") || !strings.Contains(out, "shown") || !strings.Contains(out, `"took": "1s"`) {
		t.Errorf("console output %q", out)
	}
	if strings.HasPrefix(out, "{") {
		t.Errorf("console output is JSON: %q", out)
	}
}

func TestNewLoggerLevels(t *testing.T) {
	for level, enabled := range map[string][2]bool{ // debug, warn enabled
		"debug": {true, true}, "": {false, true}, "info": {false, true},
		"warn": {false, true}, "warning": {false, true}, "error": {false, false}, " Error ": {false, false},
	} {
		l, err := NewLogger(level, "json", &bytes.Buffer{})
		if err != nil {
			t.Errorf("NewLogger(%q): %v", level, err)
			continue
		}
		if got := [2]bool{l.Core().Enabled(zap.DebugLevel), l.Core().Enabled(zap.WarnLevel)}; got != enabled {
			t.Errorf("NewLogger(%q): debug, warn enabled = %v, want %v", level, got, enabled)
		}
	}
}

func TestNewLoggerErrors(t *testing.T) {
	for _, c := range []struct{ level, format, want string }{
		{"verbose", "json", `"verbose"`},
		{"fatal", "json", `"fatal"`},
		{"info", "xml", `"xml"`},
	} {
		_, err := NewLogger(c.level, c.format, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewLogger(%q, %q) = %v, want an error naming %s", c.level, c.format, err, c.want)
		}
	}
}
