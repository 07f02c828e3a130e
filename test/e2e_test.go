package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/pki"
)

func TestFirstRunMakesCertificates(t *testing.T) {
	// A config dir that does not exist yet: logd makes it, the
	// certificates in it, and its default data dir <config dir>/data.
	configDir := filepath.Join(t.TempDir(), "logd")
	p := startLogd(t, configDir, "")

	if got := len(p.stderr.find("made certificates on first use")); got != 1 {
		t.Fatalf("got %d \"made certificates on first use\" lines, want 1", got)
	}
	files := map[string]os.FileMode{pki.CAFile: 0o644, pki.CAKeyFile: 0o600, pki.ServerFile: 0o644, pki.ServerKeyFile: 0o600}
	for _, cn := range pki.DefaultClients {
		cert, key := pki.ClientFiles(cn)
		files[cert], files[key] = 0o644, 0o600
	}
	for name, mode := range files {
		fi, err := os.Stat(filepath.Join(configDir, name))
		if err != nil {
			t.Fatalf("certificate file: %v", err)
		}
		if mode == 0o600 && fi.Mode().Perm() != mode {
			t.Errorf("%s: got mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	ca, err := os.ReadFile(filepath.Join(configDir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}

	// root may use the default topic, named or not.
	root := p.Client(t, "root")
	if off := produce(t, root, "", "first"); off != 0 {
		t.Fatalf("got offset %d, want 0", off)
	}
	if off := produce(t, root, "default", "second"); off != 1 {
		t.Fatalf("got offset %d, want 1", off)
	}
	for off, want := range []string{"first", "second"} {
		if got := string(consume(t, root, "", uint64(off)).GetValue()); got != want {
			t.Fatalf("offset %d: got %q, want %q", off, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(configDir, "data", "default")); err != nil {
		t.Fatalf("default data dir: %v", err)
	}

	hc := &http.Client{Timeout: rpcTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := hc.Get("http://" + p.HTTPAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: got %s (%q), want 200", path, res.Status, body)
		}
	}

	p.Stop(t)
	for _, l := range p.stderr.find("") {
		if !l.json {
			t.Errorf("stderr line %q is not JSON", l.raw)
		}
	}
	if len(p.stderr.find("logs closed")) != 1 {
		t.Errorf("no \"logs closed\" line after SIGTERM")
	}

	// A second start keeps the certificates and the data.
	p = startLogd(t, configDir, "")
	if got := len(p.stderr.find("made certificates on first use")); got != 0 {
		t.Fatalf("restart: got %d \"made certificates on first use\" lines, want 0", got)
	}
	if ca2, err := os.ReadFile(filepath.Join(configDir, pki.CAFile)); err != nil || !bytes.Equal(ca, ca2) {
		t.Fatalf("restart: CA certificate changed (err %v)", err)
	}
	root = p.Client(t, "root")
	if got := string(consume(t, root, "default", 1).GetValue()); got != "second" {
		t.Fatalf("after restart: got %q at offset 1, want %q", got, "second")
	}
	if off := produce(t, root, "", "third"); off != 2 {
		t.Fatalf("after restart: got offset %d, want 2", off)
	}
	p.Stop(t)
}

// Topics of the produce workloads: root's and alice's (alice may only use
// alice/...).
var workloadTopics = map[string][]string{
	"root":  {"load/a", "load/b"},
	"alice": {"alice/a", "alice/b"},
}

// streamWindow bounds the unacknowledged records of a pipelined producer.
const streamWindow = 64

// valueRE is the shape of every value the workloads write.
var valueRE = regexp.MustCompile(`^(round-\d+/(?:producer-\d+|probe))/seq-(\d+)$`)

func value(round int, who string, seq int) string {
	return fmt.Sprintf("round-%d/%s/seq-%d", round, who, seq)
}

// history is what logd told its clients: every acknowledged record, and
// per producer how many of its records were acknowledged and how many more
// may be in the log unacknowledged (in flight when logd died).
type history struct {
	mu        sync.Mutex
	acked     map[string]map[uint64]string // topic -> offset -> value
	producers map[string]*producerStats    // "round-R/producer-P" -> stats
}

type producerStats struct {
	topic      string
	acked      int
	maxUnacked int
}

func newHistory() *history {
	return &history{acked: map[string]map[uint64]string{}, producers: map[string]*producerStats{}}
}

// ack records an acknowledgement; an offset acknowledged twice is an
// error.
func (h *history) ack(producer, topic string, off uint64, v string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.acked[topic]
	if m == nil {
		m = map[uint64]string{}
		h.acked[topic] = m
	}
	if prev, ok := m[off]; ok {
		return fmt.Errorf("offset %d of %q acknowledged twice: for %q and for %q", off, topic, prev, v)
	}
	m[off] = v
	if ps := h.producers[producer]; ps != nil {
		ps.acked++
	}
	return nil
}

func (h *history) addProducer(producer, topic string, maxUnacked int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.producers[producer] = &producerStats{topic: topic, maxUnacked: maxUnacked}
}

func (h *history) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.acked {
		n += len(m)
	}
	return n
}

// runProducers starts 16 producers against p, as root and as alice on
// workloadTopics: 14 unary and 2 pipelined (ProduceStream), over one
// connection per principal. With rng, each producer's timing is random
// (see pacing); without, they produce flat out. Each runs until an RPC
// fails or ctx ends. The returned func waits for them, closes their
// connections and returns the error each one ended with.
func runProducers(ctx context.Context, t testing.TB, p *process, h *history, round int, rng *rand.Rand) (wait func() []error) {
	t.Helper()
	conns := map[string]*grpc.ClientConn{"root": p.Dial(t, p.configDir, "root"), "alice": p.Dial(t, p.configDir, "alice")}
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cn := "root"
		if i%2 == 1 {
			cn = "alice"
		}
		c := logv1.NewLogClient(conns[cn])
		topic := workloadTopics[cn][(i/2)%2]
		who := fmt.Sprintf("producer-%d", i)
		name := fmt.Sprintf("round-%d/%s", round, who)
		next := func(seq int) string { return value(round, who, seq) }
		ackFn := func(off uint64, v string) error { return h.ack(name, topic, off, v) }
		var pace *pacing
		if rng != nil {
			pace = &pacing{rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))}
		}
		wg.Add(1)
		if i >= n-2 {
			h.addProducer(name, topic, streamWindow)
			go func() {
				defer wg.Done()
				errs[i] = streamProducer(ctx, c, topic, next, ackFn, pace)
			}()
		} else {
			h.addProducer(name, topic, 1)
			go func() {
				defer wg.Done()
				errs[i] = unaryProducer(ctx, c, topic, next, ackFn, pace)
			}()
		}
	}
	return func() []error {
		wg.Wait()
		for _, conn := range conns {
			conn.Close()
		}
		return errs
	}
}

// pacing makes a producer's timing random: a delay of up to 100 ms
// before its first record and, before one record in eight, a pause of up
// to 5 ms, so that a kill finds the producers in ever different states.
// A nil *pacing produces flat out. Each producer has its own.
type pacing struct{ rng *rand.Rand }

func (p *pacing) start() {
	if p != nil {
		time.Sleep(time.Duration(p.rng.IntN(100)) * time.Millisecond)
	}
}

func (p *pacing) next() {
	if p != nil && p.rng.IntN(8) == 0 {
		time.Sleep(time.Duration(p.rng.IntN(5000)) * time.Microsecond)
	}
}

// unaryProducer produces next(0), next(1), ... with Produce until a call
// fails, and returns that error (or the ack's).
func unaryProducer(ctx context.Context, c logv1.LogClient, topic string, next func(int) string, ack func(uint64, string) error, pace *pacing) error {
	pace.start()
	for seq := 0; ; seq++ {
		pace.next()
		v := next(seq)
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		res, err := c.Produce(cctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(v)}})
		cancel()
		if err != nil {
			return err
		}
		if err := ack(res.GetOffset(), v); err != nil {
			return err
		}
	}
}

// streamProducer produces next(0), next(1), ... on one ProduceStream,
// with up to streamWindow records unacknowledged, until the stream fails,
// and returns that error.
func streamProducer(ctx context.Context, c logv1.LogClient, topic string, next func(int) string, ack func(uint64, string) error, pace *pacing) error {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	pace.start()
	s, err := c.ProduceStream(ctx)
	if err != nil {
		return err
	}
	sent := make(chan string, streamWindow) // answers come in order
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 0; ; seq++ {
			pace.next()
			v := next(seq)
			select {
			case sent <- v:
			case <-ctx.Done():
				return
			}
			if s.Send(&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(v)}}) != nil {
				return // Recv has the status
			}
		}
	}()
	defer wg.Wait()
	defer cancel()
	for {
		res, err := s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("ProduceStream ended without an error")
			}
			return err
		}
		if err := ack(res.GetOffset(), <-sent); err != nil {
			return err
		}
	}
}

// checkCodes fails the test for any of errs (what each of who's callers
// ended with) whose status code is not one of want.
func checkCodes(t testing.TB, who string, errs []error, want ...codes.Code) {
	t.Helper()
	for i, err := range errs {
		if c := status.Code(err); !slices.Contains(want, c) {
			t.Errorf("%s %d ended with %v (%v), want one of %v", who, i, c, err, want)
		}
	}
}

// verify checks, against logd p, everything the clients were told:
//   - every acknowledged record reads back at its offset with its value,
//     with Consume and with a ConsumeStream scan of the whole topic;
//   - no value is in a topic twice, every value is one a producer sent,
//     and each producer's records are in the log in the order it sent
//     them with no gap, at most maxUnacked beyond those acknowledged;
//   - a new record gets the next offset, past every acknowledged one (it
//     is recorded in h as acknowledged, by "round-R/probe").
//
// It returns the values it scanned, per topic, indexed by offset (its own
// probes are produced after the scan).
func verify(t testing.TB, p *process, h *history, round int, rng *rand.Rand) map[string][]string {
	t.Helper()
	root := p.Client(t, "root")
	h.mu.Lock()
	defer h.mu.Unlock()
	scanned := map[string][]string{}
	topics := make([]string, 0, len(h.acked))
	for topic := range h.acked {
		topics = append(topics, topic)
	}
	slices.Sort(topics)
	for _, topic := range topics {
		acked := h.acked[topic]
		var highest uint64
		for off := range acked {
			highest = max(highest, off)
		}
		next := nextOffset(t, root, topic)
		if next <= highest {
			t.Fatalf("%q: got next offset %d, want past the highest acknowledged offset %d", topic, next, highest)
		}

		// Scan the whole topic.
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		s, err := root.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic})
		if err != nil {
			cancel()
			t.Fatalf("%q: ConsumeStream: %v", topic, err)
		}
		at := map[string]uint64{}   // value -> offset
		lastSeq := map[string]int{} // producer -> last seq seen
		counts := map[string]int{}  // producer -> records seen
		for off := uint64(0); off < next; off++ {
			res, err := s.Recv()
			if err != nil {
				cancel()
				t.Fatalf("%q: scan at offset %d of %d: %v", topic, off, next, err)
			}
			r := res.GetRecord()
			v := string(r.GetValue())
			if r.GetOffset() != off {
				cancel()
				t.Fatalf("%q: scan: got offset %d, want %d", topic, r.GetOffset(), off)
			}
			if want, ok := acked[off]; ok && v != want {
				t.Errorf("%q offset %d: got %q, want acknowledged %q", topic, off, v, want)
			}
			if prev, dup := at[v]; dup {
				t.Errorf("%q: value %q at offsets %d and %d, want once", topic, v, prev, off)
			}
			at[v] = off
			scanned[topic] = append(scanned[topic], v)
			m := valueRE.FindStringSubmatch(v)
			if m == nil {
				t.Errorf("%q offset %d: got value %q, not one a producer sent", topic, off, v)
				continue
			}
			seq, _ := strconv.Atoi(m[2])
			last, seen := lastSeq[m[1]]
			if !seen {
				last = -1
			}
			if seq != last+1 {
				t.Errorf("%q offset %d: got %q after seq %d of the same producer, want seq %d", topic, off, v, last, last+1)
			}
			lastSeq[m[1]] = seq
			counts[m[1]]++
		}
		cancel()
		for name, ps := range h.producers {
			if ps.topic != topic {
				continue
			}
			if got := counts[name]; got < ps.acked || got > ps.acked+ps.maxUnacked {
				t.Errorf("%q: %s has %d records in the log, want %d acknowledged + at most %d unacknowledged",
					topic, name, got, ps.acked, ps.maxUnacked)
			}
		}

		// Consume, one call each: the highest acknowledged record and a
		// sample of about 50 others (the scan read them all).
		offs := []uint64{highest}
		for off := range acked {
			if rng.IntN(len(acked)) < 50 {
				offs = append(offs, off)
			}
		}
		for _, off := range offs {
			if got := string(consume(t, root, topic, off).GetValue()); got != acked[off] {
				t.Errorf("%q offset %d: Consume got %q, want acknowledged %q", topic, off, got, acked[off])
			}
		}

		// New records go on past the end.
		cn := "root"
		if strings.HasPrefix(topic, "alice/") {
			cn = "alice"
		}
		v := value(round, "probe", 0)
		off := produce(t, p.Client(t, cn), topic, v)
		if off != next {
			t.Fatalf("%q: new record got offset %d, want %d (past the highest acknowledged %d)", topic, off, next, highest)
		}
		acked[off] = v
	}
	if t.Failed() {
		t.FailNow()
	}
	return scanned
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("long: SIGKILLs logd under load, several rounds")
	}
	for _, policy := range []string{"always", "none"} {
		t.Run("sync="+policy, func(t *testing.T) {
			t.Parallel()
			crashRounds(t, policy, 20)
		})
	}
}

// crashRounds runs rounds of: producers with random timing on logd,
// SIGKILL after a random 100-600 ms, restart on the same data dir, verify
// everything acknowledged in every round so far.
func crashRounds(t *testing.T, policy string, rounds int) {
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	configDir, dataDir := t.TempDir(), t.TempDir()
	// Small segments, so that crashes also hit roll-overs.
	flags := []string{"--sync", policy, "--segment-bytes", "65536", "--max-record-bytes", "1024"}
	h := newHistory()
	p := startLogd(t, configDir, dataDir, flags...)
	for round := range rounds {
		wait := runProducers(context.Background(), t, p, h, round, rng)
		delay := time.Duration(100+rng.IntN(500)) * time.Millisecond
		time.Sleep(delay)
		p.Kill(t)
		checkCodes(t, "producer", wait(), codes.Unavailable, codes.Canceled)
		t.Logf("round %d: killed after %v; %d records acknowledged in all", round, delay, h.total())

		p = startLogd(t, configDir, dataDir, flags...)
		verify(t, p, h, round, rng)
	}
	if h.total() == 0 {
		t.Fatal("no record was acknowledged in any round")
	}
	p.Stop(t)
}

func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	configDir, dataDir := t.TempDir(), t.TempDir()
	h := newHistory()
	p := startLogd(t, configDir, dataDir, "--shutdown-timeout", "5s")
	// The topics exist before their followers start.
	root := p.Client(t, "root")
	topics := append(slices.Clone(workloadTopics["root"]), workloadTopics["alice"]...)
	for _, topic := range topics {
		v := value(0, "probe", 0)
		if err := h.ack("round-0/probe", topic, produce(t, root, topic, v), v); err != nil {
			t.Fatal(err)
		}
	}

	// Under load: the 16 gRPC producers, a gRPC follower of each topic
	// from its first record, a producer and a follower over the JSON API.
	var followers []*grpcFollower
	for _, topic := range topics {
		followers = append(followers, followGRPC(root, topic))
	}
	httpFollower := follow(t, p, p.APIClient(t, "root"), topics[0], 0)
	const httpTopic = "load/http"
	httpName := "round-0/producer-16"
	h.addProducer(httpName, httpTopic, 1)
	httpErr := make(chan error, 1)
	go func() {
		httpErr <- httpProducer(p.APIClient(t, "root"), p.apiURL(recordsPath(httpTopic)),
			func(seq int) string { return value(0, "producer-16", seq) },
			func(off uint64, v string) error { return h.ack(httpName, httpTopic, off, v) })
	}()
	wait := runProducers(context.Background(), t, p, h, 0, rng)
	time.Sleep(time.Duration(300+rng.IntN(300)) * time.Millisecond)

	took := p.Stop(t) // exit status 0
	checkCodes(t, "producer", wait(), codes.Unavailable)
	var followErrs []error
	for _, f := range followers {
		followErrs = append(followErrs, f.wait())
	}
	checkCodes(t, "follower", followErrs, codes.Unavailable)
	if err := <-httpErr; !cleanHTTPEnd(err) {
		t.Errorf("HTTP producer ended with %v, want 503 UNAVAILABLE or the connection closed or refused", err)
	} else {
		t.Logf("HTTP producer ended with %v", err)
	}
	httpLines, err := httpFollower.end(t)
	if err != nil {
		t.Errorf("HTTP follower: got %v, want a clean end of the stream", err)
	}
	if n := len(httpLines); n > 0 && httpLines[n-1].Error != nil {
		if e := httpLines[n-1].Error; e.Code != "UNAVAILABLE" {
			t.Errorf("HTTP follower: last line %+v, want error UNAVAILABLE", e)
		}
		httpLines = httpLines[:n-1]
	}
	t.Logf("stopped in %v; %d records acknowledged", took, h.total())
	if h.total() < 100 {
		t.Fatalf("%d records acknowledged before SIGTERM, want at least 100: no load", h.total())
	}
	for _, msg := range []string{"shutting down", "logs closed"} {
		if len(p.stderr.find(msg)) != 1 {
			t.Errorf("no %q line after SIGTERM", msg)
		}
	}

	p = startLogd(t, configDir, dataDir)
	// A clean stop leaves nothing to repair.
	for _, l := range p.stderr.find("log opened after recovery") {
		t.Errorf("after a graceful stop: %s", l.raw)
	}
	scanned := verify(t, p, h, 1, rng)
	// Every record a follower was sent is in the log at its offset:
	// followers see only records that are there to stay.
	seen := 0
	checkSeen := func(who, topic string, i int, off uint64, v string) {
		t.Helper()
		if off != uint64(i) {
			t.Fatalf("%s of %q: record %d has offset %d, want %d", who, topic, i, off, i)
		}
		if log := scanned[topic]; off >= uint64(len(log)) || log[off] != v {
			t.Fatalf("%s of %q was sent %q at offset %d; after restart the topic holds %d records, not that one", who, topic, v, off, len(log))
		}
		seen++
	}
	for _, f := range followers {
		for i, r := range f.records {
			checkSeen("gRPC follower", f.topic, i, r.GetOffset(), string(r.GetValue()))
		}
	}
	for i, m := range httpLines {
		if m.Record == nil || m.Record.Offset == nil {
			t.Fatalf("HTTP follower line %d: got %+v, want a record", i, m)
		}
		checkSeen("HTTP follower", topics[0], i, *m.Record.Offset, string(m.Record.Value))
	}
	t.Logf("followers were sent %d records, all in the log after restart", seen)
	p.Stop(t)
}

// grpcFollower follows a topic on a ConsumeStream from offset 0, keeping
// what it is sent, until the stream fails.
type grpcFollower struct {
	topic   string
	records []*logv1.Record // set before done is closed
	err     error
	done    chan struct{}
}

func followGRPC(c logv1.LogClient, topic string) *grpcFollower {
	f := &grpcFollower{topic: topic, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		defer cancel()
		s, err := c.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic})
		if err != nil {
			f.err = err
			return
		}
		for {
			res, err := s.Recv()
			if err != nil {
				f.err = err
				return
			}
			f.records = append(f.records, res.GetRecord())
		}
	}()
	return f
}

// wait waits for the end of the stream and returns its error.
func (f *grpcFollower) wait() error {
	<-f.done
	return f.err
}

// httpStatusError is an answer of the JSON API other than 200.
type httpStatusError struct {
	status int
	body   apiErr
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("HTTP %d: %+v", e.status, e.body)
}

// httpProducer POSTs next(0), next(1), ... one record a request to url
// until a request fails, and returns that error: an *httpStatusError, or
// the transport's.
func httpProducer(c *http.Client, url string, next func(int) string, ack func(uint64, string) error) error {
	for seq := 0; ; seq++ {
		v := next(seq)
		res, err := c.Post(url, "application/json", strings.NewReader(jsonRecord(v)))
		if err != nil {
			return err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			e := &httpStatusError{status: res.StatusCode}
			if err := json.Unmarshal(body, &e.body); err != nil {
				return fmt.Errorf("HTTP %d, body %q: %w", res.StatusCode, body, err)
			}
			return e
		}
		var m apiMsg
		if err := json.Unmarshal(body, &m); err != nil || m.Offset == nil {
			return fmt.Errorf("answer %q: no offset (%v)", body, err)
		}
		if err := ack(*m.Offset, v); err != nil {
			return err
		}
	}
}

// cleanHTTPEnd reports whether err is how a JSON API client may see logd
// stop: 503 UNAVAILABLE, or its connection closed or refused (no
// timeout).
func cleanHTTPEnd(err error) bool {
	var se *httpStatusError
	if errors.As(err, &se) {
		return se.status == http.StatusServiceUnavailable && se.body.Code == "UNAVAILABLE"
	}
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Timeout() {
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "server closed idle connection")
}

func TestACLOverTheWire(t *testing.T) {
	configDir := t.TempDir()
	p := startLogd(t, configDir, t.TempDir())
	root := p.Client(t, "root")
	for _, topic := range []string{"bob/x", "alice/x", "default"} {
		produce(t, root, topic, "seed")
	}
	alice, bob, nobody := p.Client(t, "alice"), p.Client(t, "bob"), p.Client(t, "nobody")
	produce(t, alice, "alice/x", "mine")
	if got := string(consume(t, bob, "bob/x", 0).GetValue()); got != "seed" {
		t.Fatalf("bob reads bob/x: got %q, want %q", got, "seed")
	}

	// denied checks that every log.v1 method is refused to c on topic
	// with PermissionDenied naming the principal, the action and the
	// topic.
	denied := func(t *testing.T, c logv1.LogClient, cn, topic string) {
		t.Helper()
		msg := func(action string) string { return fmt.Sprintf("%q may not %s topic %q", cn, action, topic) }
		check := func(method string, err error, action string) {
			t.Helper()
			st, _ := status.FromError(err)
			if st.Code() != codes.PermissionDenied {
				t.Errorf("%s %s %q: got %v (%v), want PermissionDenied", cn, method, topic, st.Code(), err)
			} else if !strings.Contains(st.Message(), msg(action)) {
				t.Errorf("%s %s %q: got message %q, want it to say %s", cn, method, topic, st.Message(), msg(action))
			}
		}
		ctx, cancel := rpcCtx()
		defer cancel()
		rec := &logv1.Record{Value: []byte("x")}
		_, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: rec})
		check("Produce", err, "produce")
		_, err = c.Consume(ctx, &logv1.ConsumeRequest{Topic: topic})
		check("Consume", err, "consume")
		cs, err := c.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic})
		if err == nil {
			_, err = cs.Recv()
		}
		check("ConsumeStream", err, "consume")
		ps, err := c.ProduceStream(ctx)
		if err == nil {
			err = ps.Send(&logv1.ProduceRequest{Topic: topic, Record: rec})
		}
		if err == nil || errors.Is(err, io.EOF) {
			_, err = ps.Recv()
		}
		check("ProduceStream", err, "produce")
	}
	t.Run("alice on bob's topic", func(t *testing.T) { denied(t, alice, "alice", "bob/x") })
	t.Run("alice on a look-alike prefix", func(t *testing.T) { denied(t, alice, "alice", "alicex/x") })
	t.Run("nobody", func(t *testing.T) {
		for _, topic := range []string{"default", "alice/x", "bob/x", "nobody/x"} {
			denied(t, nobody, "nobody", topic)
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		other := t.TempDir()
		if err := pki.Generate(other, "root"); err != nil {
			t.Fatal(err)
		}
		c := logv1.NewLogClient(p.Dial(t, other, "root"))
		ctx, cancel := rpcCtx()
		defer cancel()
		_, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "default", Record: &logv1.Record{Value: []byte("x")}})
		if code := status.Code(err); code != codes.Unavailable {
			t.Fatalf("got %v (%v), want Unavailable: the handshake refused", code, err)
		}
	})
	// Nothing denied was written, and logd still serves.
	if got := nextOffset(t, root, "bob/x"); got != 1 {
		t.Fatalf("bob/x: got next offset %d, want 1", got)
	}
	if got := nextOffset(t, root, "default"); got != 1 {
		t.Fatalf("default: got next offset %d, want 1", got)
	}
	p.Stop(t)
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // in the one line of stderr
	}{
		{[]string{"--sync", "sometimes"}, []string{"--sync", `"sometimes"`}},
		{[]string{"--bogus"}, []string{"-bogus"}},
		{[]string{"--tls-cert", "/nonexistent"}, []string{"/nonexistent"}},
		{[]string{"--max-record-bytes", "2048", "--segment-bytes", "1024"}, []string{"--segment-bytes"}},
		{[]string{"extra"}, []string{`"extra"`}},
		{[]string{"--audit-log", "/nonexistent/audit.jsonl"}, []string{"--audit-log", "/nonexistent/audit.jsonl"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			configDir := t.TempDir()
			args := append([]string{"--config-dir", configDir, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, tc.args...)
			code, stderr := runLogd(t, configDir, args...)
			if code != 2 {
				t.Fatalf("got exit status %d, want 2; stderr:\n%s", code, stderr)
			}
			line, ok := strings.CutSuffix(stderr, "\n")
			if !ok || strings.Contains(line, "\n") || !strings.HasPrefix(line, "logd: ") {
				t.Fatalf("got stderr %q, want one line \"logd: ...\"", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("got %q, want it to name %s", line, w)
				}
			}
			// A bad flag makes nothing.
			if entries, err := os.ReadDir(configDir); err != nil || len(entries) != 0 {
				t.Errorf("config dir after a bad flag: got %d entries (err %v), want none", len(entries), err)
			}
		})
	}
}

func TestConsumeStreamFollowsOverTheWire(t *testing.T) {
	p := startLogd(t, t.TempDir(), t.TempDir(), "--shutdown-timeout", "20s")
	alice := p.Client(t, "alice")
	const topic = "alice/follow"
	produce(t, alice, topic, "start")

	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()
	s, err := alice.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	// Once the first record is in, the stream waits at the tail.
	if res, err := s.Recv(); err != nil || string(res.GetRecord().GetValue()) != "start" {
		t.Fatalf("got %v, %v; want record 0", res, err)
	}

	// Concurrent producers, each on its own connection.
	const producers, each = 4, 50
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for i := range producers {
		c := p.Client(t, "alice")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range each {
				v := value(0, fmt.Sprintf("producer-%d", i), seq)
				ctx, cancel := rpcCtx()
				res, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(v)}})
				cancel()
				if err != nil {
					t.Errorf("produce %q: %v", v, err)
					return
				}
				mu.Lock()
				acked[res.GetOffset()] = v
				mu.Unlock()
			}
		}()
	}
	var got []*logv1.Record
	received := make(chan error, 1)
	go func() {
		for range producers * each {
			res, err := s.Recv()
			if err != nil {
				received <- fmt.Errorf("after %d records: %w", len(got), err)
				return
			}
			got = append(got, res.GetRecord())
		}
		received <- nil
	}()
	wg.Wait()
	// Everything is produced: the follower must have it all soon.
	select {
	case err := <-received:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(rpcTimeout):
		cancel()
		<-received
		t.Fatalf("follower got %d records within %v of the last produce, want %d", len(got), rpcTimeout, producers*each)
	}
	if t.Failed() {
		t.FailNow()
	}
	lastSeq := map[string]int{}
	for i, r := range got {
		want := uint64(i + 1)
		if r.GetOffset() != want {
			t.Fatalf("record %d: got offset %d, want %d", i, r.GetOffset(), want)
		}
		v := string(r.GetValue())
		if acked[want] != v {
			t.Fatalf("offset %d: got %q, want %q as acknowledged", want, v, acked[want])
		}
		m := valueRE.FindStringSubmatch(v)
		seq, _ := strconv.Atoi(m[2])
		if last, ok := lastSeq[m[1]]; ok && seq != last+1 || !ok && seq != 0 {
			t.Fatalf("offset %d: got %q, out of its producer's order", want, v)
		}
		lastSeq[m[1]] = seq
	}

	// Canceling ends the stream with Canceled.
	cancel()
	_, err = s.Recv()
	wantCode(t, err, codes.Canceled)

	// A graceful stop ends a follower at the tail with Unavailable at
	// once, not after --shutdown-timeout.
	ctx2, cancel2 := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel2()
	tail := uint64(producers*each + 1)
	s2, err := alice.ConsumeStream(ctx2, &logv1.ConsumeRequest{Topic: topic, Offset: tail})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, alice, topic, "last")
	if res, err := s2.Recv(); err != nil || res.GetRecord().GetOffset() != tail {
		t.Fatalf("got %v, %v; want record %d", res, err, tail)
	}
	recvErr := make(chan error, 1)
	go func() {
		_, err := s2.Recv()
		recvErr <- err
	}()
	if took := p.Stop(t); took > 10*time.Second {
		t.Errorf("SIGTERM with a follower: stopped in %v, want well under --shutdown-timeout 20s", took)
	}
	wantCode(t, <-recvErr, codes.Unavailable)
}
