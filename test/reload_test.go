package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
)

// The policies of the reload tests. Both let root do anything, alice use
// alice/orders and bob use bob/x; after the reload, alice may no longer
// use alice/secret.
const (
	policyBefore = `p, role:admin, *, *, allow
g, root, role:admin
p, alice, alice/*, *, allow
p, bob, bob/*, *, allow
`
	denySecret  = "p, alice, alice/secret, *, deny"
	policyAfter = policyBefore + denySecret + "\n"
)

// writePolicy replaces the policy file by renaming a finished file into
// place, as an operator should.
func writePolicy(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// aclReload matches logd's line about a reload of the ACL policy: msg is
// "reloaded" or "reload failed, keeping the previous one".
func aclReload(msg string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg == msg && l.Source == "acl policy" }
}

// auditEntries returns the entries that have every field of want.
func auditEntries(entries []map[string]any, want map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range entries {
		if hasFields(e, want) {
			out = append(out, e)
		}
	}
	return out
}

// wantMode checks a file's permission bits.
func wantMode(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s: mode %v, want %v", path, got, want)
	}
}

// TestPolicyReloadUnderLoad changes the policy file while clients produce
// and consume, over gRPC and HTTP: alice, bob and root on topics both
// policies allow them (alice/orders, bob/x, alice/secret for root), and
// alice on alice/secret, which the new policy denies her.
//
// The grace, precisely: a request is sent after the reload when the test
// had read logd's "reloaded" line before sending it; logd logs that line
// once the new policy is in force. Every such request of alice on
// alice/secret must be denied; requests sent earlier may meet either
// policy. For alice's streams on alice/secret open across the reload: her
// ProduceStream gets no acknowledgement for a record sent after the line,
// and her followers (gRPC and HTTP) never deliver a record whose produce
// request was sent after the line, and end with PermissionDenied. Across
// the whole run, nothing that both policies allow fails, and every denial
// is in the audit log, naming the rule.
func TestPolicyReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	policy, auditLog := filepath.Join(dir, "policy.csv"), filepath.Join(dir, "audit.jsonl")
	writePolicy(t, policy, policyBefore)
	p := startLogd(t, dir, "", "--acl-policy", policy, "--audit-log", auditLog, "--reload-interval", "100ms")
	root, alice, bob := p.Client(t, "root"), p.Client(t, "alice"), p.Client(t, "bob")
	web := p.APIClient(t, "alice")
	for _, topic := range []string{"alice/secret", "alice/orders", "bob/x"} {
		produce(t, root, topic, "seed")
	}

	var (
		reported atomic.Bool // the test has read the "reloaded" line
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		// cutoff is the offset of root's first record on alice/secret
		// produced after the line: no follower of alice may deliver it
		// or any later one.
		cutoff atomic.Uint64
		// Counts: calls both policies allow that succeeded; alice's
		// calls on alice/secret that passed before the line, and those
		// denied after it; every denial she got there (for the audit);
		// records her followers of alice/orders got after the line.
		allowedOK, passedBefore, deniedAfter, denials atomic.Int64
		ordersAfter                                   [2]atomic.Int64 // gRPC, HTTP
	)
	cutoff.Store(math.MaxUint64)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	// streamCtx ends when the run stops.
	streamCtx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		go func() {
			defer cancel()
			select {
			case <-stop:
			case <-ctx.Done():
			}
		}()
		return ctx
	}
	unaryProduce := func(c logv1.LogClient, topic, value string) (uint64, error) {
		ctx, cancel := rpcCtx()
		defer cancel()
		res, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(value)}})
		return res.GetOffset(), err
	}

	// Both policies allow these: any error fails the test.
	wg.Go(func() {
		for i := 0; !stopped(); i++ {
			if _, err := unaryProduce(alice, "alice/orders", fmt.Sprint("a", i)); err != nil {
				t.Errorf("alice Produce alice/orders (allowed by both): %v", err)
				return
			}
			allowedOK.Add(1)
		}
	})
	wg.Go(func() {
		for i := 0; !stopped(); i++ {
			after := reported.Load()
			off, err := unaryProduce(root, "alice/secret", fmt.Sprint("r", i))
			if err != nil {
				t.Errorf("root Produce alice/secret (allowed by both): %v", err)
				return
			}
			allowedOK.Add(1)
			if after {
				cutoff.CompareAndSwap(math.MaxUint64, off)
			}
		}
	})
	wg.Go(func() {
		// Not cut off by stop: it closes its side and waits for the end.
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		defer cancel()
		s, err := bob.ProduceStream(ctx)
		for i := 0; err == nil && !stopped(); i++ {
			if err = s.Send(&logv1.ProduceRequest{Topic: "bob/x", Record: &logv1.Record{Value: []byte(fmt.Sprint("b", i))}}); err == nil {
				if _, err = s.Recv(); err == nil {
					allowedOK.Add(1)
				}
			}
		}
		if err == nil {
			if err = s.CloseSend(); err == nil {
				if _, err = s.Recv(); errors.Is(err, io.EOF) {
					err = nil
				}
			}
		}
		if err != nil {
			t.Errorf("bob ProduceStream bob/x (allowed by both): %v", err)
		}
	})
	wg.Go(func() {
		s, err := alice.ConsumeStream(streamCtx(), &logv1.ConsumeRequest{Topic: "alice/orders"})
		for want := uint64(0); err == nil; want++ {
			var res *logv1.ConsumeResponse
			if res, err = s.Recv(); err == nil {
				if got := res.GetRecord().GetOffset(); got != want {
					t.Errorf("alice ConsumeStream alice/orders: got offset %d, want %d", got, want)
					return
				}
				allowedOK.Add(1)
				if reported.Load() {
					ordersAfter[0].Add(1)
				}
			}
		}
		if !stopped() || status.Code(err) != codes.Canceled {
			t.Errorf("alice ConsumeStream alice/orders (allowed by both) ended: %v", err)
		}
	})
	ordersWeb := follow(t, p, web, "alice/orders", 0)
	wg.Go(func() {
		want := uint64(0)
		for m := range ordersWeb.lines {
			if m.Error != nil || m.Record == nil || m.Record.Offset == nil || *m.Record.Offset != want {
				t.Errorf("alice HTTP follow alice/orders (allowed by both): got %+v, want the record at %d", m, want)
				return
			}
			want++
			allowedOK.Add(1)
			if reported.Load() {
				ordersAfter[1].Add(1)
			}
		}
		if !stopped() {
			t.Errorf("alice HTTP follow alice/orders (allowed by both) ended: %v", ordersWeb.err)
		}
	})

	// Alice on alice/secret, which the new policy denies her.
	deniedCall := func(what string, call func() error) {
		for !stopped() {
			after := reported.Load()
			err := call()
			switch code := status.Code(err); {
			case err == nil && after:
				t.Errorf("alice %s alice/secret sent after the reload was reported: passed", what)
				return
			case err == nil:
				passedBefore.Add(1)
			case code == codes.PermissionDenied:
				denials.Add(1)
				if after {
					deniedAfter.Add(1)
				}
			default:
				t.Errorf("alice %s alice/secret: %v", what, err)
				return
			}
		}
	}
	wg.Go(func() {
		deniedCall("Produce", func() error { _, err := unaryProduce(alice, "alice/secret", "a"); return err })
	})
	wg.Go(func() {
		deniedCall("Consume", func() error {
			ctx, cancel := rpcCtx()
			defer cancel()
			_, err := alice.Consume(ctx, &logv1.ConsumeRequest{Topic: "alice/secret"})
			return err
		})
	})
	var streamEnds sync.Map // stream name → the error that ended it
	wg.Go(func() {
		s, err := alice.ProduceStream(streamCtx())
		for err == nil && !stopped() {
			after := reported.Load()
			if err = s.Send(&logv1.ProduceRequest{Topic: "alice/secret", Record: &logv1.Record{Value: []byte("s")}}); errors.Is(err, io.EOF) {
				_, err = s.Recv() // the stream ended: why
			} else if err == nil {
				if _, err = s.Recv(); err == nil && after {
					t.Errorf("alice ProduceStream alice/secret: a record sent after the reload was reported was acknowledged")
					break
				}
			}
		}
		streamEnds.Store("ProduceStream", err)
	})
	var grpcOffsets []uint64
	wg.Go(func() {
		s, err := alice.ConsumeStream(streamCtx(), &logv1.ConsumeRequest{Topic: "alice/secret"})
		for err == nil {
			var res *logv1.ConsumeResponse
			if res, err = s.Recv(); err == nil {
				grpcOffsets = append(grpcOffsets, res.GetRecord().GetOffset())
			}
		}
		streamEnds.Store("ConsumeStream", err)
	})
	secretWeb := follow(t, p, web, "alice/secret", 0)
	var webOffsets []uint64
	var webEnd *apiErr
	wg.Go(func() {
		for m := range secretWeb.lines {
			if m.Record != nil && m.Record.Offset != nil {
				webOffsets = append(webOffsets, *m.Record.Offset)
			}
			if m.Error != nil {
				webEnd = m.Error
			}
		}
	})

	// Load under the old policy, then the new one, rename into place.
	time.Sleep(time.Second)
	from := p.lines()
	writePolicy(t, policy, policyAfter)
	changed := time.Now()
	l, _ := p.waitLine(t, from, startTimeout, aclReload("reloaded"))
	reported.Store(true)
	t.Logf("policy file renamed → \"reloaded\" read: %v (trigger %q)", time.Since(changed), l.Trigger)
	if l.Trigger != "file change" {
		t.Errorf("reload trigger %q, want file change", l.Trigger)
	}
	time.Sleep(time.Second)
	close(stop)
	ordersWeb.cancel()
	secretWeb.cancel() // if the reload did not end it
	wg.Wait()
	for i, name := range []string{"ConsumeStream", "HTTP follow"} {
		if ordersAfter[i].Load() == 0 {
			t.Errorf("alice %s alice/orders got no record after the reload: it did not go on", name)
		}
	}

	// Alice's streams on alice/secret were cut off, and let nothing
	// through that was produced after the line.
	for _, name := range []string{"ProduceStream", "ConsumeStream"} {
		v, _ := streamEnds.Load(name)
		err, _ := v.(error)
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("alice %s alice/secret ended with %v, want PermissionDenied", name, err)
		} else {
			denials.Add(1)
		}
	}
	if webEnd == nil || webEnd.Code != "PERMISSION_DENIED" {
		t.Errorf("alice HTTP follow alice/secret ended with %+v, want PERMISSION_DENIED", webEnd)
	} else {
		denials.Add(1)
	}
	c := cutoff.Load()
	if c == math.MaxUint64 {
		t.Fatal("root produced nothing on alice/secret after the reload")
	}
	for name, offs := range map[string][]uint64{"ConsumeStream": grpcOffsets, "HTTP follow": webOffsets} {
		for _, off := range offs {
			if off >= c {
				t.Errorf("alice %s alice/secret delivered offset %d, produced after the reload was reported (from %d on)", name, off, c)
				break
			}
		}
	}
	t.Logf("allowed calls and records: %d; alice on alice/secret: %d passed before the line, %d denied after; cutoff %d; followers got %d (gRPC) and %d (HTTP) records",
		allowedOK.Load(), passedBefore.Load(), deniedAfter.Load(), c, len(grpcOffsets), len(webOffsets))
	if passedBefore.Load() == 0 || deniedAfter.Load() == 0 || allowedOK.Load() == 0 {
		t.Fatal("the load did not exercise both policies")
	}

	// The audit log, read while logd runs: every denial, with its rule,
	// and the reload.
	entries := readJSONLines[map[string]any](t, auditLog)
	denied := auditEntries(entries, map[string]any{"principal": "alice", "topic": "alice/secret", "decision": "deny", "rule": denySecret})
	if got, want := len(denied), int(denials.Load()); got != want {
		t.Errorf("audit log: %d denials of alice on alice/secret, want %d (one per denial answered)", got, want)
	}
	for _, action := range []string{"produce", "consume"} {
		if len(auditEntries(denied, map[string]any{"action": action})) == 0 {
			t.Errorf("audit log: no %s denial", action)
		}
	}
	if n := len(auditEntries(entries, map[string]any{"principal": "operator", "action": "reload", "source": "acl policy", "trigger": "file change", "result": "ok"})); n != 1 {
		t.Errorf("audit log: %d entries of the reload, want 1", n)
	}
	if n := len(auditEntries(entries, map[string]any{"decision": "deny", "principal": "bob"})); n != 0 {
		t.Errorf("audit log: %d denials of bob, who was allowed throughout", n)
	}
	wantMode(t, auditLog, 0o600)
	pollMetrics(t, p.HTTPAddr, []expectation{
		{`logd_config_reloads_total{result="ok",source="acl policy"}`, eq(1)},
		{`logd_config_reloads_total{result="error",source="acl policy"}`, absent()},
	}, metricsTimeout)
	p.Stop(t)
}

// TestPolicyReloadSignalAndBrokenFile: with file polling out of the way
// (an hour apart), SIGHUP reloads the policy at once; a policy file that
// does not parse is refused, logged with the reason, and the old policy
// stays in force; both are in the audit log and the reload counter.
func TestPolicyReloadSignalAndBrokenFile(t *testing.T) {
	dir := t.TempDir()
	policy, auditLog := filepath.Join(dir, "policy.csv"), filepath.Join(dir, "audit.jsonl")
	writePolicy(t, policy, policyBefore)
	p := startLogd(t, dir, "", "--acl-policy", policy, "--audit-log", auditLog, "--reload-interval", "1h")
	alice := p.Client(t, "alice")
	produce(t, alice, "alice/secret", "before")
	hup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// A broken file: refused, logged, the old policy kept.
	writePolicy(t, policy, policyAfter+"p, alice, alice/*, write, allow\n")
	from := p.lines()
	hup()
	l, from := p.waitLine(t, from, rpcTimeout, aclReload("reload failed, keeping the previous one"))
	if l.Trigger != "signal" || !strings.Contains(l.Error, policy) || !strings.Contains(l.Error, `line 6`) || !strings.Contains(l.Error, `action "write"`) {
		t.Errorf("failed reload line %s: want trigger signal and an error naming the file, line 6 and the action", l.raw)
	}
	produce(t, alice, "alice/secret", "kept") // the old policy allows it

	// The fixed file: SIGHUP reloads it at once.
	writePolicy(t, policy, policyAfter)
	sent := time.Now()
	hup()
	l, _ = p.waitLine(t, from, rpcTimeout, aclReload("reloaded"))
	t.Logf("SIGHUP → \"reloaded\" read: %v", time.Since(sent))
	if l.Trigger != "signal" {
		t.Errorf("reload line %s: want trigger signal", l.raw)
	}
	ctx, cancel := rpcCtx()
	defer cancel()
	_, err := alice.Produce(ctx, &logv1.ProduceRequest{Topic: "alice/secret", Record: &logv1.Record{Value: []byte("after")}})
	wantCode(t, err, codes.PermissionDenied)
	produce(t, alice, "alice/orders", "still") // allowed by both

	pollMetrics(t, p.HTTPAddr, []expectation{
		{`logd_config_reloads_total{result="ok",source="acl policy"}`, eq(1)},
		{`logd_config_reloads_total{result="error",source="acl policy"}`, eq(1)},
	}, metricsTimeout)
	p.Stop(t)

	entries := readJSONLines[map[string]any](t, auditLog)
	reloads := auditEntries(entries, map[string]any{"principal": "operator", "action": "reload", "source": "acl policy", "trigger": "signal"})
	if len(reloads) != 2 || reloads[0]["result"] != "failed" || !strings.Contains(fmt.Sprint(reloads[0]["error"]), "line 6") || reloads[1]["result"] != "ok" {
		t.Errorf("audit log reload entries %v: want the failed one (with its error), then the good one", reloads)
	}
	denied := auditEntries(entries, map[string]any{"principal": "alice", "action": "produce", "topic": "alice/secret", "decision": "deny", "rule": denySecret})
	if len(denied) != 1 {
		t.Errorf("audit log: %d denials of alice's produce on alice/secret, want 1: %v", len(denied), entries)
	}
	for _, e := range entries {
		if _, err := time.Parse("2006-01-02T15:04:05.000Z0700", fmt.Sprint(e["time"])); err != nil {
			t.Errorf("audit entry %v: time: %v", e, err)
		}
	}
	wantMode(t, auditLog, 0o600)
}
