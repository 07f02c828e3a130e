package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/quota"
)

// withQuotas makes the server enforce the quota file text, and returns
// the Quotas for reloads.
func withQuotas(t testing.TB, text string) (serverOpt, *quota.Quotas) {
	t.Helper()
	q := quota.New(parseQuotas(t, text))
	return func(c *Config, _ *log.Config) { c.Quotas = q }, q
}

func parseQuotas(t testing.TB, text string) *quota.Config {
	t.Helper()
	cfg, err := quota.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// refusal checks that err is a quota refusal: ResourceExhausted with an
// ErrorInfo of reason and quota kind and a QuotaFailure on subject. It
// returns the retry delay of its RetryInfo, or -1 if it has none.
func refusal(t testing.TB, err error, reason string, kind quota.Kind, subject string) time.Duration {
	t.Helper()
	st := wantCode(t, err, codes.ResourceExhausted)
	var info *errdetails.ErrorInfo
	var qf *errdetails.QuotaFailure
	retry := time.Duration(-1)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.QuotaFailure:
			qf = d
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		}
	}
	if info == nil || info.GetReason() != reason || info.GetMetadata()["quota"] != string(kind) {
		t.Fatalf("got ErrorInfo %v (%v), want reason %s, quota %s", info, st.Message(), reason, kind)
	}
	if qf == nil || len(qf.GetViolations()) != 1 || qf.GetViolations()[0].GetSubject() != subject {
		t.Fatalf("got QuotaFailure %v, want one violation of %s", qf, subject)
	}
	return retry
}

// produceErr produces n bytes to topic and returns the error.
func produceErr(ctx context.Context, c logv1.LogClient, topic string, n int) error {
	_, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: make([]byte, n)}})
	return err
}

func TestQuotaProduceRateIsolation(t *testing.T) {
	// Alice hammers far over her produce rate while bob offers a steady
	// 200 KiB/s (open loop: a call every 20ms, whatever the latency), 40%
	// of his own rate and six times alice's: alice gets her rate and burst
	// and ResourceExhausted with a retry delay for the rest; bob gets
	// everything he offers, at the rate he offers it.
	const (
		size       = 4 << 10
		aliceRate  = 32 << 10
		aliceBurst = 32 << 10
		bobEvery   = 20 * time.Millisecond // 200 KiB/s
		window     = 2 * time.Second
	)
	opt, _ := withQuotas(t, `{"principals": {
		"alice": {"produce": {"rate": 32768, "burst": 32768}},
		"bob":   {"produce": {"rate": 524288, "burst": 262144}}
	}}`)
	ts := startServer(t, opt)
	alice, bob := client(t, ts, "alice"), client(t, ts, "bob")
	// Connect both before the clock starts.
	produceErr(ctxT(t), alice, "alice/warmup", 0)
	produceErr(ctxT(t), bob, "bob/warmup", 0)

	var (
		mu                sync.Mutex
		aliceOK           int
		aliceNo           []error
		bobOK, bobOffered int
		bobErrs           []error
		bobSlowest        time.Duration
		aliceEnd, bobEnd  time.Duration
	)
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < window {
				err := produceErr(ctxT(t), alice, "alice/t", size)
				mu.Lock()
				if err == nil {
					aliceOK++
					mu.Unlock()
					continue
				}
				aliceNo = append(aliceNo, err)
				mu.Unlock()
				// Not the retry delay: alice keeps offering far more
				// than her rate, without spinning the CPU.
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	var bobWG sync.WaitGroup
	tick := time.NewTicker(bobEvery)
	for ; time.Since(start) < window; <-tick.C {
		bobOffered++
		bobWG.Add(1)
		go func() {
			defer bobWG.Done()
			sent := time.Now()
			err := produceErr(ctxT(t), bob, "bob/t", size)
			mu.Lock()
			defer mu.Unlock()
			bobSlowest = max(bobSlowest, time.Since(sent))
			if err != nil {
				bobErrs = append(bobErrs, err)
				return
			}
			bobOK++
		}()
	}
	tick.Stop()
	bobWG.Wait()
	bobEnd = time.Since(start)
	wg.Wait()
	aliceEnd = time.Since(start)

	if len(bobErrs) > 0 {
		t.Fatalf("bob, within his quota, got %d errors: %v", len(bobErrs), bobErrs[0])
	}
	maxRetry, minRetry := time.Duration(0), time.Hour
	for _, err := range aliceNo {
		d := refusal(t, err, ReasonQuotaExceeded, quota.ProduceBytes, "principal:alice")
		maxRetry, minRetry = max(maxRetry, d), min(minRetry, d)
	}
	aliceBytes, bobBytes := float64(aliceOK*size), float64(bobOK*size)
	offered := float64(size) / bobEvery.Seconds()
	t.Logf("alice: %d accepted (%.0f B/s over %v), %d refused, retry delays %v..%v; bob: %d of %d accepted, %.0f B/s over %v (offered %.0f B/s), slowest call %v",
		aliceOK, aliceBytes/aliceEnd.Seconds(), aliceEnd.Round(time.Millisecond), len(aliceNo), minRetry, maxRetry,
		bobOK, bobOffered, bobBytes/bobEnd.Seconds(), bobEnd.Round(time.Millisecond), offered, bobSlowest.Round(time.Millisecond))

	// Every token alice got came in [start, start+aliceEnd]: at most the
	// burst and the rate over that time. Hammering, she gets most of it.
	if limit := aliceBurst + aliceRate*aliceEnd.Seconds(); aliceBytes > limit {
		t.Errorf("alice got %.0f bytes in %v, over her rate and burst: %.0f", aliceBytes, aliceEnd, limit)
	}
	if floor := aliceBurst + aliceRate*window.Seconds()/2; aliceBytes < floor {
		t.Errorf("alice got %.0f bytes in %v, want at least %.0f", aliceBytes, aliceEnd, floor)
	}
	if len(aliceNo) == 0 {
		t.Error("alice was never refused")
	}
	// A refused call takes no tokens, so a 4 KiB record never waits more
	// than 4 KiB's worth.
	if maxRetry > time.Second*size/aliceRate+time.Millisecond || minRetry <= 0 {
		t.Errorf("retry delays %v..%v, want within (0, %v]", minRetry, maxRetry, time.Second*size/aliceRate)
	}
	// Bob offered a call every 20ms for the window (fewer if the ticker
	// fell behind on a busy machine, never more) and got them all, by the
	// time the last answered.
	if bobOK != bobOffered || bobOffered < int(window/bobEvery)/2 {
		t.Errorf("bob got %d of %d calls accepted (want all, and at least %d offered)", bobOK, bobOffered, int(window/bobEvery)/2)
	}
	if got := bobBytes / bobEnd.Seconds(); got < offered/2 {
		t.Errorf("bob's accepted rate %.0f B/s, want near his offered %.0f B/s", got, offered)
	}
	// No record dropped or half-written: the topic holds what was acked.
	l, err := ts.topics.Get("alice/t")
	if err != nil {
		t.Fatal(err)
	}
	if next := l.NextOffset(); next != uint64(aliceOK) {
		t.Errorf("alice/t holds %d records, want the %d acknowledged", next, aliceOK)
	}
}

func TestQuotaProduceStreamPaced(t *testing.T) {
	// A ProduceStream over the rate is paced, not refused: 40 records of
	// 2 KiB with 8 KiB of burst at 64 KiB/s take at least 72/64 s.
	opt, _ := withQuotas(t, `{"default": {"produce": {"rate": 65536, "burst": 8192}}}`)
	ts := startServer(t, opt)
	alice := client(t, ts, "alice")
	stream, err := alice.ProduceStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 40, 2 << 10
	start := time.Now()
	go func() {
		for range n {
			if stream.Send(&logv1.ProduceRequest{Topic: "alice/s", Record: &logv1.Record{Value: make([]byte, size)}}) != nil {
				return
			}
		}
		// Larger than the burst: it can never pass, and ends the stream.
		stream.Send(&logv1.ProduceRequest{Topic: "alice/s", Record: &logv1.Record{Value: make([]byte, 8193)}})
		stream.CloseSend()
	}()
	for i := range n {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if res.GetOffset() != uint64(i) {
			t.Fatalf("got offset %d, want %d", res.GetOffset(), i)
		}
	}
	elapsed := time.Since(start)
	_, err = stream.Recv()
	if d := refusal(t, err, ReasonOverBurst, quota.ProduceBytes, "principal:alice"); d != -1 {
		t.Errorf("over-burst refusal has a retry delay %v; it can never pass", d)
	}
	if !strings.Contains(status.Convert(err).Message(), "can never pass") {
		t.Errorf("message %q does not say the record can never pass", status.Convert(err).Message())
	}
	t.Logf("%d records of %d bytes in %v (%.0f B/s)", n, size, elapsed, float64(n*size)/elapsed.Seconds())
	if min := time.Duration(float64(n*size-8192) / 65536 * float64(time.Second)); elapsed < min*9/10 {
		t.Errorf("the stream took %v, want at least %v: not paced", elapsed, min)
	}
}

func TestQuotaConsume(t *testing.T) {
	// 16 KiB/s with 4 KiB of burst; records of 3 KiB.
	opt, _ := withQuotas(t, `{"default": {"consume": {"rate": 16384, "burst": 4096}}}`)
	ts := startServer(t, opt)
	alice := client(t, ts, "alice")
	const n, size = 6, 3 << 10
	for range n {
		if err := produceErr(ctxT(t), alice, "alice/c", size); err != nil {
			t.Fatal(err)
		}
	}
	if err := produceErr(ctxT(t), alice, "alice/c", 5000); err != nil { // over the burst
		t.Fatal(err)
	}

	// Unary: refused at once, with the delay until 2 KiB more come.
	if _, err := alice.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/c", Offset: 0}); err != nil {
		t.Fatal(err)
	}
	_, err := alice.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/c", Offset: 1})
	if d := refusal(t, err, ReasonQuotaExceeded, quota.ConsumeBytes, "principal:alice"); d <= 0 || d > 125*time.Millisecond {
		t.Errorf("retry delay %v, want within (0, 125ms]", d)
	}
	_, err = alice.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/c", Offset: n})
	refusal(t, err, ReasonOverBurst, quota.ConsumeBytes, "principal:alice")

	// A ConsumeStream is paced: 18 KiB at 16 KiB/s from a nearly empty
	// bucket take about a second; then the record over the burst ends it.
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := alice.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "alice/c"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		res, err := stream.Recv()
		if err != nil || res.GetRecord().GetOffset() != uint64(i) {
			t.Fatalf("record %d: got %v, %v", i, res, err)
		}
	}
	elapsed := time.Since(start)
	_, err = stream.Recv()
	refusal(t, err, ReasonOverBurst, quota.ConsumeBytes, "principal:alice")
	t.Logf("%d records of %d bytes streamed in %v", n, size, elapsed)
	if min := time.Duration(float64(n*size-4096) / 16384 * float64(time.Second)); elapsed < min*9/10 {
		t.Errorf("the stream took %v, want at least %v: not paced", elapsed, min)
	}
}

func TestQuotaRequests(t *testing.T) {
	opt, _ := withQuotas(t, `{"principals": {"alice": {"requests": {"rate": 2, "burst": 3}}}}`)
	ts := startServer(t, opt)
	conn := dial(t, ts.addr, certDir, "alice")
	alice, health := logv1.NewLogClient(conn), healthpb.NewHealthClient(conn)
	for range 3 {
		// Health checks are not log.v1 calls: they do not count.
		if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		// Any log.v1 call counts, whatever it answers.
		_, err := alice.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/none"})
		wantCode(t, err, codes.NotFound)
	}
	_, err := alice.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/none"})
	if d := refusal(t, err, ReasonQuotaExceeded, quota.Requests, "principal:alice"); d <= 0 || d > 500*time.Millisecond {
		t.Errorf("retry delay %v, want within (0, 500ms]", d)
	}
	// Before authorization: a call alice may not make counts as well.
	_, err = alice.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: "bob/x"})
	refusal(t, err, ReasonQuotaExceeded, quota.Requests, "principal:alice")
	// Opening a stream is a request too.
	stream, err := alice.ConsumeStream(ctxT(t), &logv1.ConsumeRequest{Topic: "alice/none"})
	if err == nil {
		_, err = stream.Recv()
	}
	refusal(t, err, ReasonQuotaExceeded, quota.Requests, "principal:alice")

	bob := client(t, ts, "bob")
	for range 20 {
		produce(t, bob, "bob/r", "x")
	}
}

func TestQuotaStreams(t *testing.T) {
	opt, _ := withQuotas(t, `{"default": {"streams": 2}}`)
	ts := startServer(t, opt)
	alice := client(t, ts, "alice")
	produce(t, alice, "alice/f", "x")

	// follow opens a ConsumeStream and waits until the server sends the
	// first record: the stream is then counted.
	follow := func() (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(ctxT(t))
		stream, err := alice.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: "alice/f"})
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	stop1, err := follow()
	if err != nil {
		t.Fatal(err)
	}
	stop2, err := follow()
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	_, err = follow()
	if d := refusal(t, err, ReasonQuotaExceeded, quota.Streams, "principal:alice"); d != -1 {
		t.Errorf("streams refusal has a retry delay %v; only ending a stream helps", d)
	}
	// A ProduceStream counts too.
	ps, err := alice.ProduceStream(ctxT(t))
	if err == nil {
		_, err = ps.Recv()
	}
	refusal(t, err, ReasonQuotaExceeded, quota.Streams, "principal:alice")
	// Other principals have their own count; unary calls are not streams.
	bob := client(t, ts, "bob")
	produce(t, bob, "bob/f", "x")
	produce(t, alice, "alice/f", "y")

	// Once a stream ends, another may open.
	stop1()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stop, err := follow()
		if err == nil {
			stop()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream ended, yet a new one still gets %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQuotaTopicBytes(t *testing.T) {
	// 100-byte records take 136 bytes on disk (frame and index entry):
	// alice's topics hold 5 each; "alice/big" none (exempt); bob's none.
	opt, _ := withQuotas(t, `{"topics": {"alice/*": {"max_bytes": 720}, "alice/big": {"max_bytes": 0}}}`)
	ts := startServer(t, opt)
	alice, bob := client(t, ts, "alice"), client(t, ts, "bob")
	for i := range 5 {
		if err := produceErr(ctxT(t), alice, "alice/t", 100); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	err := produceErr(ctxT(t), alice, "alice/t", 100)
	if d := refusal(t, err, ReasonTopicFull, quota.TopicBytes, "topic:alice/t"); d != -1 {
		t.Errorf("topic refusal has a retry delay %v, with no retention configured", d)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, `topic "alice/t" from 680 to 816 bytes`) || !strings.Contains(msg, "720") {
		t.Errorf("message %q does not give the sizes and the cap", msg)
	}
	// A smaller record still fits; the refusal wrote nothing.
	if err := produceErr(ctxT(t), alice, "alice/t", 0); err != nil {
		t.Errorf("a 0-byte record (36 bytes on disk): %v", err)
	}
	l, err := ts.topics.Get("alice/t")
	if err != nil {
		t.Fatal(err)
	}
	if next, size := l.NextOffset(), l.Stats().Bytes; next != 6 || size != 716 {
		t.Errorf("alice/t holds %d records, %d bytes; want 6, 716", next, size)
	}

	// A stream ends at the cap, after acknowledging what fit.
	stream, err := alice.ProduceStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		if err := stream.Send(&logv1.ProduceRequest{Topic: "alice/s", Record: &logv1.Record{Value: make([]byte, 100)}}); err != nil {
			break
		}
	}
	acked := 0
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
		acked++
	}
	if acked != 5 {
		t.Errorf("the stream acknowledged %d records, want 5", acked)
	}
	refusal(t, err, ReasonTopicFull, quota.TopicBytes, "topic:alice/s")

	for range 10 {
		if err := produceErr(ctxT(t), alice, "alice/big", 100); err != nil {
			t.Fatalf("alice/big is exempt: %v", err)
		}
		if err := produceErr(ctxT(t), bob, "bob/t", 100); err != nil {
			t.Fatalf("bob/t has no cap: %v", err)
		}
	}
}

func TestQuotaReload(t *testing.T) {
	opt, q := withQuotas(t, `{"default": {"produce": {"rate": 1024, "burst": 4096}}}`)
	ts := startServer(t, opt)
	alice := client(t, ts, "alice")
	if err := produceErr(ctxT(t), alice, "alice/r", 4096); err != nil {
		t.Fatal(err)
	}
	refusal(t, produceErr(ctxT(t), alice, "alice/r", 4096), ReasonQuotaExceeded, quota.ProduceBytes, "principal:alice")

	// A bigger burst at the same rate hands out no fresh tokens.
	q.Set(parseQuotas(t, `{"default": {"produce": {"rate": 1024, "burst": 65536}, "streams": 1}}`))
	d := refusal(t, produceErr(ctxT(t), alice, "alice/r", 4096), ReasonQuotaExceeded, quota.ProduceBytes, "principal:alice")
	if d < 3*time.Second {
		t.Errorf("after the reload, retry delay %v, want about 4s: the bucket was refilled", d)
	}
	// The new streams cap is in force.
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	s1, err := alice.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Send(&logv1.ProduceRequest{Topic: "alice/r", Record: &logv1.Record{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Recv(); err != nil {
		t.Fatal(err)
	}
	s2, err := alice.ProduceStream(ctxT(t))
	if err == nil {
		_, err = s2.Recv()
	}
	refusal(t, err, ReasonQuotaExceeded, quota.Streams, "principal:alice")

	// No produce limit: it passes.
	q.Set(parseQuotas(t, `{"default": {"produce": {"rate": 0}}}`))
	if err := produceErr(ctxT(t), alice, "alice/r", 60000); err != nil {
		t.Errorf("with no produce limit: %v", err)
	}
}

func TestQuotaHTTP(t *testing.T) {
	opt, _ := withQuotas(t, `{
		"principals": {"alice": {"produce": {"rate": 1000, "burst": 1000}, "streams": 1}},
		"topics": {"alice/full": {"max_bytes": 100}}
	}`)
	api := startAPI(t, opt)
	c := httpClient(t, "", "alice")
	url := topicURL(api.url, "alice/h")
	body := recordBody(strings.Repeat("x", 1000))
	callJSON(t, c, "POST", url, body, 200, nil)

	req, err := httpRequest(t, "POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Code    string            `json:"code"`
		Details map[string]string `json:"details"`
	}
	decodeBody(t, res, &answer)
	if res.StatusCode != 429 || answer.Code != ReasonQuotaExceeded || answer.Details["quota"] != "produce_bytes" {
		t.Errorf("over the rate: got %d %+v, want 429 QUOTA_EXCEEDED produce_bytes", res.StatusCode, answer)
	}
	if ra := res.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1 (second, rounded up)", ra)
	}

	code, b := call(t, c, "POST", url, recordBody(strings.Repeat("x", 1001)))
	if code != 413 || !strings.Contains(string(b), ReasonOverBurst) {
		t.Errorf("over the burst: got %d %s, want 413 %s", code, b, ReasonOverBurst)
	}
	time.Sleep(time.Second) // the bucket refills
	code, b = call(t, c, "POST", topicURL(api.url, "alice/full"), recordBody(strings.Repeat("x", 100)))
	if code != 507 || !strings.Contains(string(b), ReasonTopicFull) {
		t.Errorf("over the topic's cap: got %d %s, want 507 %s", code, b, ReasonTopicFull)
	}

	// A record listing is a stream.
	sc, _, stop := openFollow(t, c, url)
	defer stop()
	nextLine(t, sc)
	code, b = call(t, c, "GET", url, "")
	if code != 429 || !strings.Contains(string(b), `"quota":"streams"`) {
		t.Errorf("a second stream: got %d %s, want 429 with quota streams", code, b)
	}
}

func TestQuotaHitsAreSampledInTheLog(t *testing.T) {
	// A flood of refusals logs a few lines a second per principal and
	// quota, and drops the call lines of the rest; the metric counts all.
	core, logs := observer.New(zapcore.InfoLevel)
	rec := newRecorder()
	opt, _ := withQuotas(t, `{"default": {"requests": {"rate": 0.1, "burst": 1}}}`)
	ts := startServer(t, opt, func(c *Config, _ *log.Config) {
		c.Logger = zap.New(core)
		c.Observer = rec
	})
	alice := client(t, ts, "alice")
	produce(t, alice, "alice/l", "x")
	const flood = 40
	for range flood {
		wantCode(t, produceErr(ctxT(t), alice, "alice/l", 1), codes.ResourceExhausted)
	}
	hits := logs.FilterMessage("quota exceeded")
	if n := hits.Len(); n < 1 || n > 4 {
		t.Fatalf("%d refusals logged %d lines, want 3 (4 if a second passed)", flood, n)
	}
	first := hits.All()[0].ContextMap()
	for k, want := range map[string]any{"principal": "alice", "quota": "requests", "limit": 0.1, "burst": int64(1)} {
		if first[k] != want {
			t.Errorf("quota line %s = %v (%T), want %v", k, first[k], first[k], want)
		}
	}
	if _, ok := first["retry_after"]; !ok {
		t.Errorf("quota line has no retry_after: %v", first)
	}
	refused := 0
	for _, e := range waitLines(t, logs, "Produce", 1+hits.Len()) {
		if e.ContextMap()["grpc.code"] == "ResourceExhausted" {
			refused++
		}
	}
	if refused != hits.Len() {
		t.Errorf("%d call lines of refused calls, want %d: one per logged refusal", refused, hits.Len())
	}
	if n := len(rec.quotaHits()); n != flood {
		t.Errorf("the observer got %d refusals, want %d", n, flood)
	}
	// A second later, the next one is logged with the count of the rest.
	time.Sleep(reportWait)
	wantCode(t, produceErr(ctxT(t), alice, "alice/l", 1), codes.ResourceExhausted)
	all := logs.FilterMessage("quota exceeded").All()
	last := all[len(all)-1].ContextMap()
	if got, want := last["suppressed"], int64(flood-hits.Len()); got != want {
		t.Errorf("suppressed = %v, want %d", got, want)
	}
}

// reportWait is longer than quota's report interval (a second).
const reportWait = 1100 * time.Millisecond

func httpRequest(t testing.TB, method, url, body string) (*http.Request, error) {
	t.Helper()
	return http.NewRequestWithContext(ctxT(t), method, url, strings.NewReader(body))
}

func decodeBody(t testing.TB, res *http.Response, v any) {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
}
