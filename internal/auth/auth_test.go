package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// writeFile replaces path's contents (Reload is called explicitly: no
// watcher sees the file half-written).
func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadFiles writes the default model and policy to files and loads them.
func loadFiles(t testing.TB, policy string) (*Authorizer, string) {
	t.Helper()
	dir := t.TempDir()
	mp, pp := filepath.Join(dir, "model.conf"), filepath.Join(dir, "policy.csv")
	writeFile(t, mp, defaultModel(t))
	writeFile(t, pp, policy)
	a, err := Load(mp, pp)
	if err != nil {
		t.Fatal(err)
	}
	return a, pp
}

func wantDecision(t testing.TB, a *Authorizer, principal, topic, action string, allowed bool, gen uint64) {
	t.Helper()
	d, err := a.Decide(principal, topic, action)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed != allowed || d.Generation != gen {
		t.Fatalf("Decide(%s, %s, %s) = %+v, want allowed=%v at generation %d", principal, topic, action, d, allowed, gen)
	}
}

func TestReload(t *testing.T) {
	a, pp := loadFiles(t, "p, alice, alice/*, *, allow\n")
	gen, replaced := a.Generation()
	if gen != 1 {
		t.Fatalf("first generation %d, want 1", gen)
	}
	wantDecision(t, a, "alice", "alice/x", Produce, true, 1)
	wantDecision(t, a, "bob", "bob/x", Produce, false, 1)

	// A new policy is swapped in whole, with the next generation.
	writeFile(t, pp, "p, bob, bob/*, *, allow\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-replaced:
	default:
		t.Fatal("the replaced channel of generation 1 is still open after a reload")
	}
	gen, replaced = a.Generation()
	if gen != 2 {
		t.Fatalf("generation %d after a reload, want 2", gen)
	}
	wantDecision(t, a, "alice", "alice/x", Produce, false, 2)
	wantDecision(t, a, "bob", "bob/x", Produce, true, 2)

	// A broken file, or a missing one, keeps the policy and its generation.
	for _, bad := range []string{"p, bob, bob/*, *, allow\np, alice, alice/*, write, allow\n", ""} {
		if bad == "" {
			os.Remove(pp)
		} else {
			writeFile(t, pp, bad)
		}
		err := a.Reload()
		if err == nil || !strings.Contains(err.Error(), pp) {
			t.Fatalf("Reload of %q: got %v, want an error naming %s", bad, err, pp)
		}
		if g, _ := a.Generation(); g != 2 {
			t.Fatalf("generation %d after a failed reload, want 2", g)
		}
		select {
		case <-replaced:
			t.Fatal("a failed reload closed the replaced channel")
		default:
		}
		wantDecision(t, a, "alice", "alice/x", Produce, false, 2)
		wantDecision(t, a, "bob", "bob/x", Consume, true, 2)
	}

	// The embedded default reloads too (it never changes).
	def, err := Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := def.Reload(); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, def, "alice", "alice/x", Produce, true, 2)
}

// Two policies that swap alice's and bob's rights on shared/*, through a
// role, a deny rule and a grant: a check against a half-loaded policy
// would see both or neither allowed, or a decision that does not match
// its generation.
const (
	policyA = `p, role:writer, shared/*, produce, allow
g, alice, role:writer
p, bob, shared/*, produce, deny
p, bob, bob/*, *, allow
`
	policyB = `p, role:writer, shared/*, produce, allow
g, bob, role:writer
p, alice, shared/*, produce, deny
p, alice, alice/*, *, allow
`
)

func TestReloadIsAtomic(t *testing.T) {
	a, pp := loadFiles(t, policyA)
	const reloads = 200
	// Generation 1 is A; each reload flips: odd generations are A.
	want := func(gen uint64, principal string) (bool, string) {
		isA := gen%2 == 1
		if (principal == "alice") == isA {
			return true, "p, role:writer, shared/*, produce, allow"
		}
		return false, "p, " + principal + ", shared/*, produce, deny"
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var seen [2]atomic.Int64 // decisions made under A and under B
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				before, _ := a.Generation()
				var allowed [2]bool
				for i, who := range []string{"alice", "bob"} {
					d, err := a.Decide(who, "shared/x", Produce)
					if err != nil {
						errs <- err
						return
					}
					if ok, rule := want(d.Generation, who); d.Allowed != ok || d.Rule != rule {
						errs <- fmt.Errorf("%s at generation %d: got %+v, want allowed=%v by %q", who, d.Generation, d, ok, rule)
						return
					}
					allowed[i] = d.Allowed
				}
				if after, _ := a.Generation(); after == before {
					if allowed[0] == allowed[1] {
						errs <- fmt.Errorf("generation %d: alice allowed=%v and bob allowed=%v, want exactly one", before, allowed[0], allowed[1])
						return
					}
					seen[before%2].Add(1)
				}
			}
		}()
	}
	for i := range reloads {
		p := policyB
		if i%2 == 1 {
			p = policyA
		}
		writeFile(t, pp, p)
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if g, _ := a.Generation(); g != reloads+1 {
		t.Fatalf("generation %d after %d reloads, want %d", g, reloads, reloads+1)
	}
	if seen[0].Load() == 0 || seen[1].Load() == 0 {
		t.Fatalf("consistent pairs under B: %d, under A: %d; want both checked", seen[0].Load(), seen[1].Load())
	}
}

// Decisions are remembered per policy: asked again they are the same, a
// reload forgets them, and the cache stays bounded however many topics
// are named.
func TestDecisionCache(t *testing.T) {
	a, pp := loadFiles(t, "p, alice, alice/*, *, allow\np, alice, alice/secret, *, deny\n")
	for range 2 {
		wantDecision(t, a, "alice", "alice/x", Produce, true, 1)
		wantDecision(t, a, "alice", "alice/secret", Produce, false, 1)
		wantDecision(t, a, "bob", "alice/x", Produce, false, 1)
	}
	if d, _ := a.Decide("alice", "alice/secret", Consume); d.Rule != "p, alice, alice/secret, *, deny" {
		t.Errorf("cached denial names rule %q", d.Rule)
	}
	if n := a.cur.Load().decisions.len(); n != 4 {
		t.Errorf("%d decisions cached, want 4", n)
	}

	writeFile(t, pp, "p, bob, alice/*, produce, allow\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := a.cur.Load().decisions.len(); n != 0 {
		t.Errorf("%d decisions cached by a new policy, want 0", n)
	}
	wantDecision(t, a, "alice", "alice/x", Produce, false, 2)
	wantDecision(t, a, "bob", "alice/x", Produce, true, 2)

	for i := range maxCachedDecisions + 10 {
		topic := fmt.Sprintf("alice/%d", i)
		if d, _ := a.Decide("bob", topic, Produce); !d.Allowed {
			t.Fatalf("bob may not produce %s", topic)
		}
		if d, _ := a.Decide("bob", topic, Consume); d.Allowed {
			t.Fatalf("bob may consume %s", topic)
		}
	}
	if n := a.cur.Load().decisions.len(); n > maxCachedDecisions {
		t.Errorf("%d decisions cached, want at most %d", n, maxCachedDecisions)
	}
}

// One decision of the default policy: "casbin" asks the enforcer each
// time (the baseline), "cached" is Decide.
func BenchmarkDecide(b *testing.B) {
	a, err := Load("", "")
	if err != nil {
		b.Fatal(err)
	}
	r := request{"alice", "alice/orders", Produce}
	for _, tc := range []struct {
		name   string
		decide func() (Decision, error)
	}{
		{"casbin", func() (Decision, error) { return a.cur.Load().decide(r) }},
		{"cached", func() (Decision, error) { return a.Decide(r.principal, r.topic, r.action) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, err := tc.decide(); err != nil || !d.Allowed {
					b.Fatal(d, err)
				}
			}
		})
	}
}
