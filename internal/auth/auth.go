// Package auth decides who may do what: a casbin enforcer over
// (principal, topic, action), where the principal is a client
// certificate's CN and the action is produce, consume or admin.
//
// The model (configs/model.conf) matches topics with casbin's keyMatch, so
// "alice/*" covers every topic under "alice/" and never "alicex/...", and
// "*" covers every topic; it supports roles (g lines) and deny rules, which
// beat any allow. An Authorizer is safe for concurrent use.
package auth

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

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
	e *casbin.SyncedEnforcer
}

// Load reads the model and policy files; an empty path means the default
// embedded from configs/.
func Load(modelPath, policyPath string) (*Authorizer, error) {
	read := func(path, def string) (string, error) {
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
	m, err := read(modelPath, "model.conf")
	if err != nil {
		return nil, err
	}
	p, err := read(policyPath, "policy.csv")
	if err != nil {
		return nil, err
	}
	a, err := New(m, p)
	if err != nil {
		if policyPath == "" {
			policyPath = "embedded policy.csv"
		}
		return nil, fmt.Errorf("%s: %w", policyPath, err)
	}
	return a, nil
}

// New builds an Authorizer from the text of a casbin model and of a CSV
// policy. Policy lines are checked: "p, subject, topic, action, allow|deny"
// with action produce, consume, admin or *, and "g, principal, role".
func New(modelText, policyText string) (*Authorizer, error) {
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
	return &Authorizer{e: e}, nil
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
}

// Decide checks whether principal may do action on topic and says which
// rule decided.
func (a *Authorizer) Decide(principal, topic, action string) (Decision, error) {
	ok, rule, err := a.e.EnforceEx(principal, topic, action)
	if err != nil {
		return Decision{}, fmt.Errorf("auth: %w", err)
	}
	d := Decision{Allowed: ok}
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
