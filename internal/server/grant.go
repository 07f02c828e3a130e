package server

import (
	"context"
	"sync"
	"sync/atomic"
)

// grant is an authorization that a stream keeps across its messages, for
// one principal, topic and action. It holds while the policy that allowed
// it is in force: check costs one atomic load (Authorizer.Generation)
// until the policy is reloaded, and then decides again under the new
// policy, through guard.decide like every other check, so a denial is
// counted and audited. Once refused, a grant stays refused. A grant is
// safe for concurrent use.
type grant struct {
	g                        *guard
	ctx                      context.Context // the call's: its span, for the audit log
	principal, topic, action string
	gen                      atomic.Uint64 // the generation of the policy that last allowed it

	mu     sync.Mutex // serializes the decisions after a reload
	denied error      // the status that refused it; final
}

// check returns nil while the grant holds, and the PermissionDenied
// status once a reloaded policy refuses it.
func (gr *grant) check() error {
	if gen, _ := gr.g.authz.Generation(); gen == gr.gen.Load() {
		return nil
	}
	return gr.recheck()
}

// recheck decides again under the policy in force.
func (gr *grant) recheck() error {
	gr.mu.Lock()
	defer gr.mu.Unlock()
	if gr.denied != nil {
		return gr.denied
	}
	if gen, _ := gr.g.authz.Generation(); gen == gr.gen.Load() {
		return nil // another goroutine decided already
	}
	gen, err := gr.g.decide(gr.ctx, gr.principal, gr.topic, gr.action)
	if err != nil {
		gr.denied = err
		return err
	}
	gr.gen.Store(gen)
	return nil
}

// cancelOnRevoke checks the grant again at each reload of the policy
// until ctx ends, and if the new policy refuses it, calls cancel with the
// denial as the cause: a stream waiting at the tail of its topic then ends
// at once, not at its next record. It returns at once; its goroutine ends
// with ctx.
func (gr *grant) cancelOnRevoke(ctx context.Context, cancel context.CancelCauseFunc) {
	go func() {
		for {
			// Take the channel before checking: a reload after the check
			// closes it.
			_, replaced := gr.g.authz.Generation()
			if err := gr.check(); err != nil {
				cancel(err)
				return
			}
			select {
			case <-replaced:
			case <-ctx.Done():
				return
			}
		}
	}()
}
