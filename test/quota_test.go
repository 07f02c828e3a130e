package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	logv1 "github.com/logd/logd/api/v1"
)

// TestQuotasOverTheWire runs logd with --quota-file: alice over her
// produce rate gets ResourceExhausted with a retry delay while bob is
// unaffected, the refusals are logged and counted, and rewriting the file
// (then breaking it, then SIGHUP) changes the limits live.
func TestQuotasOverTheWire(t *testing.T) {
	dir := t.TempDir()
	quotaFile := filepath.Join(dir, "quota.json")
	writeAtomic(t, quotaFile, `{
		"principals": {"alice": {"produce": {"rate": 1024, "burst": 4096}}},
		"topics": {"alice/capped": {"max_bytes": 300}}
	}`)
	p := startLogd(t, dir, "", "--quota-file", quotaFile, "--reload-interval", "50ms")
	alice, bob := p.Client(t, "alice"), p.Client(t, "bob")
	big := strings.Repeat("a", 4096)

	produce(t, alice, "alice/q", big)
	err := produceErr(alice, "alice/q", big)
	st := wantCode(t, err, codes.ResourceExhausted)
	var retry time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay().AsDuration()
		}
	}
	// 4 KiB at 1 KiB/s, less what came back since the first call.
	if retry < 2*time.Second || retry > 4*time.Second {
		t.Errorf("retry delay %v, want about 4s (%v)", retry, err)
	}
	for range 20 {
		produce(t, bob, "bob/q", big)
	}
	// The topic cap, whoever produces (root has no rate limit): a 100-byte
	// record takes 136 bytes on disk, a 200-byte one 236.
	root := p.Client(t, "root")
	produce(t, root, "alice/capped", strings.Repeat("c", 100))
	if err := produceErr(root, "alice/capped", strings.Repeat("c", 200)); err == nil || !strings.Contains(err.Error(), "over its topic_bytes quota of 300") {
		t.Errorf("over the topic's cap: got %v, want TOPIC_FULL naming the cap", err)
	}
	// stderr reaches the test through a pipe: the lines may lag.
	for deadline := time.Now().Add(reloadTimeout); len(p.stderr.find("quota exceeded")) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("got %d \"quota exceeded\" log lines, want 2", len(p.stderr.find("quota exceeded")))
		}
	}
	pollMetrics(t, p.HTTPAddr, []expectation{
		{`logd_quota_exceeded_total{principal="alice",quota="produce_bytes"}`, eq(1)},
		{`logd_quota_exceeded_total{principal="root",quota="topic_bytes"}`, eq(1)},
		{`logd_quota_exceeded_total{principal="bob",quota="produce_bytes"}`, absent()},
	}, 10*time.Second)

	// Rewrite the file: no produce limit for alice any more.
	reloads := p.reloads("quotas", "reloaded", "file change")
	writeAtomic(t, quotaFile, `{"principals": {"alice": {"produce": {"rate": 0}, "streams": 1}}}`)
	p.waitReloads(t, "quotas", "reloaded", "file change", reloads+1)
	for range 5 {
		produce(t, alice, "alice/q", big)
	}

	// A broken file keeps the quotas in force, and says why.
	const failedMsg = "reload failed, keeping the previous one"
	failed := p.reloads("quotas", failedMsg, "")
	writeAtomic(t, quotaFile, `{"principals": {"alice": {"produce": {"rate": -5}}}}`)
	p.waitReloads(t, "quotas", failedMsg, "", failed+1)
	produce(t, alice, "alice/q", big)
	ctx, cancel := rpcCtx()
	defer cancel()
	s1, err := alice.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "alice/q"})
	if err == nil {
		_, err = s1.Recv()
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := rpcCtx()
	defer cancel2()
	s2, err := alice.ConsumeStream(ctx2, &logv1.ConsumeRequest{Topic: "alice/q"})
	if err == nil {
		_, err = s2.Recv()
	}
	wantCode(t, err, codes.ResourceExhausted) // streams: 1 still holds
	cancel()

	// Fixed, and SIGHUP: logd reloads at once (the poll may also see the
	// change; the signal's reload is reported as such either way).
	reloads = p.reloads("quotas", "reloaded", "signal")
	writeAtomic(t, quotaFile, `{"principals": {"alice": {"produce": {"rate": 10, "burst": 10}}}}`)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitReloads(t, "quotas", "reloaded", "signal", reloads+1)
	err = produceErr(alice, "alice/q", strings.Repeat("x", 11))
	if st := wantCode(t, err, codes.ResourceExhausted); !strings.Contains(st.Message(), "can never pass") {
		t.Errorf("11 bytes over a 10-byte burst: got %q, want it to say it can never pass", st.Message())
	}
	p.Stop(t)
}

// TestQuotaFileErrors: a bad --quota-file stops logd at start with exit
// status 2 and a message naming the file and the key.
func TestQuotaFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	writeAtomic(t, bad, `{"default": {"streams": -1}}`)
	for _, tt := range []struct{ path, want string }{
		{bad, "default.streams: -1 is negative"},
		{filepath.Join(dir, "missing.json"), "no such file"},
	} {
		code, stderr := runLogd(t, dir, "--quota-file", tt.path, "--listen", "127.0.0.1:0", "--http-listen", "", "--http-api-listen", "")
		if code != 2 || !strings.Contains(stderr, "--quota-file") || !strings.Contains(stderr, tt.want) {
			t.Errorf("--quota-file %s: got exit %d, stderr %q; want 2 and %q", tt.path, code, stderr, tt.want)
		}
	}
}

// produceErr produces value to topic and returns the error.
func produceErr(c logv1.LogClient, topic, value string) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	_, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(value)}})
	return err
}

// writeAtomic replaces path with content by renaming a finished file
// into place, as an operator should.
func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
