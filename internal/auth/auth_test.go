package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logd/logd/configs"
)

func defaultModel(t testing.TB) string {
	t.Helper()
	b, err := configs.FS.ReadFile("model.conf")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDefaultPolicy(t *testing.T) {
	a, err := Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		principal, topic, action string
		allow                    bool
	}{
		{"root", "default", Produce, true},
		{"root", "bob/x", Consume, true},
		{"root", "anything/at/all", Admin, true},
		{"alice", "alice/orders", Produce, true},
		{"alice", "alice/orders/2026", Consume, true},
		{"alice", "alice/orders", Admin, true},
		{"alice", "bob/x", Admin, false},
		{"alice", "alicex/orders", Admin, false},
		{"bob", "bob/x", Admin, true},
		{"nobody", "nobody/x", Admin, false},
		{"alice", "alice", Produce, false},
		{"alice", "alicex/orders", Produce, false},
		{"alice", "alicex", Consume, false},
		{"alice", "bob/x", Consume, false},
		{"alice", "default", Produce, false},
		{"bob", "bob/x", Produce, true},
		{"bob", "alice/x", Produce, false},
		{"nobody", "nobody/x", Produce, false},
		{"nobody", "default", Consume, false},
		{"stranger", "alice/x", Consume, false},
		{"role:admin", "x", Produce, true}, // the role itself, as casbin has it
	}
	for _, tt := range tests {
		err := a.Authorize(tt.principal, tt.topic, tt.action)
		if tt.allow && err != nil {
			t.Errorf("%s %s %s: got %v, want allowed", tt.principal, tt.action, tt.topic, err)
		}
		if !tt.allow {
			if !errors.Is(err, ErrDenied) {
				t.Errorf("%s %s %s: got %v, want ErrDenied", tt.principal, tt.action, tt.topic, err)
				continue
			}
			want := `"` + tt.principal + `" may not ` + tt.action + ` topic "` + tt.topic + `"`
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got message %q, want it to contain %q", err, want)
			}
		}
	}
}

func TestRolesAndDeny(t *testing.T) {
	policy := `
# readers may consume everything under shared/, but not shared/secret/*
p, role:reader, shared/*, consume, allow
p, role:reader, shared/secret/*, consume, deny
g, carol, role:reader
p, dave, *, *, allow
p, dave, audit/*, *, deny
`
	a, err := New(defaultModel(t), policy)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		principal, topic, action string
		allow                    bool
	}{
		{"carol", "shared/news", Consume, true},
		{"carol", "shared/news", Produce, false},
		{"carol", "shared/secret/keys", Consume, false},
		{"erin", "shared/news", Consume, false},
		{"dave", "anything", Produce, true},
		{"dave", "audit/log", Consume, false},
		{"dave", "audit/log", Admin, false},
	}
	for _, tt := range tests {
		err := a.Authorize(tt.principal, tt.topic, tt.action)
		if got := err == nil; got != tt.allow {
			t.Errorf("%s %s %s: got allowed=%v (%v), want %v", tt.principal, tt.action, tt.topic, got, err, tt.allow)
		}
	}
}

func TestBadPolicy(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"unknown action", "p, alice, alice/*, write, allow", `action "write"`},
		{"bad effect", "p, alice, alice/*, produce, maybe", `effect "maybe"`},
		{"too few fields", "p, alice, alice/*", "want p, subject, topic, action"},
		{"bad role line", "g, alice", "want g, principal, role"},
		{"unknown type", "x, alice, bob", `rule type "x"`},
		{"line number", "# ok\np, a, a/*, produce, allow\np, b", "line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(defaultModel(t), tt.policy)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New("[nonsense", ""); err == nil {
		t.Fatal("a broken model was accepted")
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	mp, pp := filepath.Join(dir, "model.conf"), filepath.Join(dir, "policy.csv")
	if err := os.WriteFile(mp, []byte(defaultModel(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pp, []byte("p, zed, zed/*, produce, allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Load(mp, pp)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Authorize("zed", "zed/a", Produce); err != nil {
		t.Fatalf("got %v, want allowed by the file's policy", err)
	}
	if err := a.Authorize("root", "zed/a", Produce); err == nil {
		t.Fatal("root allowed although the file's policy does not name it")
	}
	if _, err := Load(mp, filepath.Join(dir, "missing.csv")); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Fatalf("got %v, want an error naming the missing file", err)
	}
}

func TestDecideNamesTheRule(t *testing.T) {
	a, err := New(defaultModel(t), "p, role:admin, *, *, allow\ng, root, role:admin\np, alice, alice/*, produce, allow\np, alice, alice/secret, *, deny\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		principal, topic, action string
		allowed                  bool
		rule                     string
	}{
		{"root", "x", Admin, true, "p, role:admin, *, *, allow"},
		{"alice", "alice/a", Produce, true, "p, alice, alice/*, produce, allow"},
		{"alice", "alice/secret", Produce, false, "p, alice, alice/secret, *, deny"},
		{"alice", "alice/a", Consume, false, ""},
		{"bob", "x", Produce, false, ""},
	} {
		d, err := a.Decide(tt.principal, tt.topic, tt.action)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tt.allowed || d.Rule != tt.rule {
			t.Errorf("Decide(%s, %s, %s) = %+v, want allowed=%v rule %q", tt.principal, tt.topic, tt.action, d, tt.allowed, tt.rule)
		}
	}
}
