package quota

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// wantErr, if set, is a part of the error message.
		wantErr string
	}{
		{name: "empty", in: ""},
		{name: "blank", in: " \n\t"},
		{name: "empty object", in: "{}"},
		{name: "example", in: readExample(t)},
		{name: "fractional request rate", in: `{"default":{"requests":{"rate":0.5}}}`},
		{name: "not JSON", in: "produce = 10", wantErr: "invalid character"},
		{name: "unknown key", in: `{"default":{"produce_rate":10}}`, wantErr: `unknown field "produce_rate"`},
		{name: "unknown top-level key", in: `{"defaults":{}}`, wantErr: `unknown field "defaults"`},
		{name: "two objects", in: `{} {}`, wantErr: "data after the JSON object"},
		{name: "negative rate", in: `{"default":{"produce":{"rate":-1}}}`, wantErr: "default.produce.rate: -1"},
		{name: "huge rate", in: `{"default":{"consume":{"rate":1e300}}}`, wantErr: "default.consume.rate: 1e+300 is over"},
		{name: "negative burst", in: `{"principals":{"alice":{"consume":{"rate":1,"burst":-2}}}}`, wantErr: `principals["alice"].consume.burst: -2 is negative`},
		{name: "burst without rate", in: `{"default":{"requests":{"burst":5}}}`, wantErr: "default.requests.burst: set without a rate"},
		{name: "negative streams", in: `{"default":{"streams":-1}}`, wantErr: "default.streams: -1 is negative"},
		{name: "empty principal", in: `{"principals":{"":{}}}`, wantErr: "empty principal name"},
		{name: "string rate", in: `{"default":{"produce":{"rate":"1MiB"}}}`, wantErr: "cannot unmarshal string"},
		{name: "star inside pattern", in: `{"topics":{"a*b":{"max_bytes":1}}}`, wantErr: `topics["a*b"]: '*' may only end a pattern`},
		{name: "two stars", in: `{"topics":{"a/**":{"max_bytes":1}}}`, wantErr: `'*' may only end a pattern`},
		{name: "negative max bytes", in: `{"topics":{"*":{"max_bytes":-5}}}`, wantErr: `topics["*"].max_bytes: -5 is negative`},
		{name: "empty pattern", in: `{"topics":{"":{"max_bytes":5}}}`, wantErr: "empty pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if c == nil {
					t.Fatal("Parse returned a nil Config")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%s) succeeded, want an error with %q", tt.in, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want ErrInvalid with %q", err, tt.wantErr)
			}
		})
	}
}

// readExample returns configs/quota.json, which must parse.
func readExample(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "quota.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoadFile(t *testing.T) {
	c, err := LoadFile("")
	if err != nil || c.TopicCap("x") != 0 || c.limitsFor("alice") != (effective{}) {
		t.Fatalf(`LoadFile(""): got %+v, %v; want no limits`, c, err)
	}
	path := filepath.Join(t.TempDir(), "q.json")
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing file: got %v, want an error naming it", err)
	}
	if err := os.WriteFile(path, []byte(`{"default":{"streams":"x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), path+": ") {
		t.Fatalf("bad file: got %v, want ErrInvalid prefixed with the path", err)
	}
}

func TestLimitsFor(t *testing.T) {
	c, err := Parse([]byte(`{
		"default": {
			"produce":  {"rate": 1000, "burst": 4000},
			"consume":  {"rate": 2.5},
			"requests": {"rate": 10, "burst": 20},
			"streams":  3
		},
		"principals": {
			"alice": {"produce": {"rate": 100}, "streams": 1},
			"root":  {"produce": {"rate": 0}, "requests": {"rate": 0}, "streams": 0}
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		principal string
		want      effective
	}{
		{"bob", effective{produce: Rate{1000, 4000}, consume: Rate{2.5, 3}, requests: Rate{10, 20}, streams: 3}},
		// An override replaces the whole rate, burst included (default:
		// one second's worth), and inherits what it leaves out.
		{"alice", effective{produce: Rate{100, 100}, consume: Rate{2.5, 3}, requests: Rate{10, 20}, streams: 1}},
		{"root", effective{consume: Rate{2.5, 3}}},
	}
	for _, tt := range tests {
		if got := c.limitsFor(tt.principal); got != tt.want {
			t.Errorf("limitsFor(%q) = %+v, want %+v", tt.principal, got, tt.want)
		}
	}
}

func TestTopicCap(t *testing.T) {
	c, err := Parse([]byte(`{"topics": {
		"*":              {"max_bytes": 1000},
		"alice/*":        {"max_bytes": 200},
		"alice/big/*":    {"max_bytes": 5000},
		"alice/big/free": {"max_bytes": 0},
		"bob/log":        {"max_bytes": 7}
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		topic string
		want  int64
	}{
		{"default", 1000},
		{"alice/orders", 200},
		{"alicex/orders", 1000}, // "alice/*" is not a prefix of "alicex/"
		{"alice/big/x", 5000},
		{"alice/big/free", 0}, // an exact name beats every pattern
		{"bob/log", 7},
		{"bob/log2", 1000},
	}
	for _, tt := range tests {
		if got := c.TopicCap(tt.topic); got != tt.want {
			t.Errorf("TopicCap(%q) = %d, want %d", tt.topic, got, tt.want)
		}
	}
	if got := (*Config)(nil).TopicCap("x"); got != 0 {
		t.Errorf("nil Config: TopicCap = %d, want 0", got)
	}
}
