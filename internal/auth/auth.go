// Package auth decides who may do what: a casbin enforcer over
// (principal, topic, action), where the principal is a client
// certificate's CN and the action is produce, consume or admin.
//
// The model (configs/model.conf) matches topics with casbin's keyMatch, so
// "alice/*" covers every topic under "alice/" and never "alicex/...", and
// "*" covers every topic; it supports roles (g lines) and deny rules, which
// beat any allow.
//
// An Authorizer can be reloaded while it serves: Reload builds a complete
// new enforcer from the files and swaps it in with one atomic pointer
// store, so a check sees either the old policy or the new one, never a mix;
// a file that does not parse leaves the old policy in force. Each policy
// swapped in gets the next generation number, which callers that cache a
// decision (streams) compare to know when to decide again.
//
// Each policy remembers its decisions (at most maxCachedDecisions at a
// time), so a repeated question costs a map lookup rather than a casbin
// evaluation; a reload starts the new policy with none, so no answer
// outlives the policy that gave it.
//
// An Authorizer is safe for concurrent use: Decide, Authorize and
// Generation may run during a Reload.
package auth

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

	"github.com/logd/logd/configs"
)

// Actions.
const (
	Produce = "produce"
	Consume = "consume"
	Admin   = "admin"
)

// ErrDenied is wrapped by the error Authorize returns for a denied call.
var ErrDenied = errors.New("auth: permission denied")

// Authorizer checks calls against a casbin model and policy.
type Authorizer struct {
	// source returns the model and policy text to (re)build from; name
	// (if not "") prefixes errors in them.
	source func() (modelText, policyText string, err error)
	name   string

	mu  sync.Mutex // serializes Reload: generations follow the files' order
	cur atomic.Pointer[policy]
}

// policy is one generation of the model and policy, never changed once
// built, and the decisions made under it.
type policy struct {
	e   *casbin.SyncedEnforcer
	gen uint64
	// replaced is closed when the next generation is swapped in.
	replaced chan struct{}
	// decisions remembers what e decided: the same question gets the same
	// answer from one policy, and a reload builds a new policy with an
	// empty cache, so a cached decision is never one of another policy.
	decisions decisionCache
}

// maxCachedDecisions bounds a policy's decision cache: clients name any
// topics they like, and each new one would add an entry. When the cache
// is full it is emptied, and fills again with what is asked now.
const maxCachedDecisions = 1 << 14

// request is one question to the policy.
type request struct{ principal, topic, action string }

// decisionCache maps requests to the decisions of one policy. It is safe
// for concurrent use.
type decisionCache struct {
	mu sync.RWMutex
	m  map[request]Decision
}

func (c *decisionCache) get(r request) (Decision, bool) {
	c.mu.RLock()
	d, ok := c.m[r]
	c.mu.RUnlock()
	return d, ok
}

func (c *decisionCache) put(r request, d Decision) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedDecisions {
		c.m = make(map[request]Decision)
	}
	c.m[r] = d
	c.mu.Unlock()
}

// len returns the number of cached decisions.
func (c *decisionCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// Load reads the model and policy files; an empty path means the default
// embedded from configs/, which never changes. Reload reads the same
// files again.
func Load(modelPath, policyPath string) (*Authorizer, error) {
	a := &Authorizer{source: func() (string, string, error) {
		m, err := readConfig(modelPath, "model.conf")
		if err != nil {
			return "", "", err
		}
		p, err := readConfig(policyPath, "policy.csv")
		if err != nil {
			return "", "", err
		}
		return m, p, nil
	}}
	a.name = policyPath
	if a.name == "" {
		a.name = "embedded policy.csv"
	}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// readConfig reads path, or the embedded file def if path is "".
func readConfig(path, def string) (string, error) {
	var b []byte
	var err error
	if path == "" {
		b, err = configs.FS.ReadFile(def)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	return string(b), nil
}

// New builds an Authorizer from the text of a casbin model and of a CSV
// policy. Policy lines are checked: "p, subject, topic, action, allow|deny"
// with action produce, consume, admin or *, and "g, principal, role".
// Reload rebuilds it from the same text.
func New(modelText, policyText string) (*Authorizer, error) {
	a := &Authorizer{source: func() (string, string, error) { return modelText, policyText, nil }}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload builds a new enforcer from the files the Authorizer was loaded
// from and swaps it in whole, with the next generation number. If a file
// cannot be read or does not parse, it returns why and the current policy
// stays in force. Checks running meanwhile use the old policy; those
// starting after Reload returns use the new one.
func (a *Authorizer) Reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, p, err := a.source()
	if err != nil {
		return err
	}
	e, err := build(m, p)
	if err != nil {
		if a.name != "" {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		return err
	}
	next := &policy{e: e, gen: 1, replaced: make(chan struct{})}
	old := a.cur.Load()
	if old != nil {
		next.gen = old.gen + 1
	}
	a.cur.Store(next)
	if old != nil {
		close(old.replaced)
	}
	return nil
}

// Generation returns the generation of the policy in force (1 for the
// first, one more at each successful Reload) and a channel closed when a
// Reload replaces it. It is one atomic load: cheap enough to call per
// message.
func (a *Authorizer) Generation() (uint64, <-chan struct{}) {
	p := a.cur.Load()
	return p.gen, p.replaced
}

// build makes an enforcer from a model and a policy text, checking every
// policy line.
func build(modelText, policyText string) (*casbin.SyncedEnforcer, error) {
	m, err := model.NewModelFromString(modelText)
	if err != nil {
		return nil, fmt.Errorf("auth: model: %w", err)
	}
	e, err := casbin.NewSyncedEnforcer(m)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	e.EnableAutoSave(false)
	sc := bufio.NewScanner(strings.NewReader(policyText))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkRule(line); err != nil {
			return nil, fmt.Errorf("auth: policy line %d: %w", n, err)
		}
		if err := persist.LoadPolicyLine(line, e.GetModel()); err != nil {
			return nil, fmt.Errorf("auth: policy line %d: %w", n, err)
		}
	}
	if err := e.BuildRoleLinks(); err != nil {
		return nil, fmt.Errorf("auth: roles: %w", err)
	}
	return e, nil
}

func checkRule(line string) error {
	f := strings.Split(line, ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	switch f[0] {
	case "p":
		if len(f) != 5 {
			return fmt.Errorf("%q: want p, subject, topic, action, allow|deny", line)
		}
		switch f[3] {
		case Produce, Consume, Admin, "*":
		default:
			return fmt.Errorf("%q: action %q is not produce, consume, admin or *", line, f[3])
		}
		if f[4] != "allow" && f[4] != "deny" {
			return fmt.Errorf("%q: effect %q is not allow or deny", line, f[4])
		}
		if f[1] == "" || f[2] == "" {
			return fmt.Errorf("%q: empty subject or topic", line)
		}
	case "g":
		if len(f) != 3 || f[1] == "" || f[2] == "" {
			return fmt.Errorf("%q: want g, principal, role", line)
		}
	default:
		return fmt.Errorf("%q: rule type %q is not p or g", line, f[0])
	}
	return nil
}

// Decision is the outcome of one check.
type Decision struct {
	Allowed bool
	// Rule is the policy line that decided, as "p, sub, topic, action,
	// effect"; empty when no rule matched (nothing allows: a denial).
	Rule string
	// Generation is the generation of the policy that decided (see
	// Authorizer.Generation).
	Generation uint64
}

// Decide checks whether principal may do action on topic against the
// policy in force, and says which rule and which generation decided. A
// policy remembers its decisions, so asking again costs a map lookup.
func (a *Authorizer) Decide(principal, topic, action string) (Decision, error) {
	p := a.cur.Load()
	r := request{principal, topic, action}
	if d, ok := p.decisions.get(r); ok {
		return d, nil
	}
	d, err := p.decide(r)
	if err != nil {
		return Decision{}, err
	}
	p.decisions.put(r, d)
	return d, nil
}

// decide asks the enforcer.
func (p *policy) decide(r request) (Decision, error) {
	ok, rule, err := p.e.EnforceEx(r.principal, r.topic, r.action)
	if err != nil {
		return Decision{}, fmt.Errorf("auth: %w", err)
	}
	d := Decision{Allowed: ok, Generation: p.gen}
	if len(rule) > 0 {
		d.Rule = "p, " + strings.Join(rule, ", ")
	}
	return d, nil
}

// Authorize returns nil if principal may do action on topic, and an error
// wrapping ErrDenied that says what was refused otherwise.
func (a *Authorizer) Authorize(principal, topic, action string) error {
	d, err := a.Decide(principal, topic, action)
	if err != nil {
		return err
	}
	return d.Err(principal, topic, action)
}

// Err is nil for an allowed decision and an error wrapping ErrDenied that
// says what was refused otherwise.
func (d Decision) Err(principal, topic, action string) error {
	if d.Allowed {
		return nil
	}
	return fmt.Errorf("%w: %q may not %s topic %q", ErrDenied, principal, action, topic)
}
