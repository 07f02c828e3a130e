package e2e

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	logv1 "github.com/logd/logd/api/v1"
)

// streamWindowBytes is the HTTP/2 flow-control window the load tests'
// clients grant each stream. Setting it turns off gRPC's BDP estimation,
// which would otherwise let a stream's window grow to 16 MiB: a consumer
// that never reads then holds at most this much unread in the client.
const streamWindowBytes = 64 << 10

// topicTotals sums, over every topic, the open ConsumeStreams and the
// bytes on disk, as logd's Admin API tells them (the
// logd_topic_tail_consumers and logd_topic_size_bytes gauges).
func topicTotals(t testing.TB, admin logv1.AdminClient) (tails int, bytes uint64) {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	res, err := admin.ListTopics(ctx, &logv1.ListTopicsRequest{})
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	for _, d := range res.GetTopics() {
		tails += int(d.GetTailConsumers())
		bytes += d.GetSizeBytes()
	}
	return tails, bytes
}

// waitTailConsumers waits until logd counts n open ConsumeStreams.
func waitTailConsumers(t testing.TB, admin logv1.AdminClient, n int) {
	t.Helper()
	deadline := time.Now().Add(streamTimeout)
	for {
		got, _ := topicTotals(t, admin)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logd counts %d open ConsumeStreams after %v, want %d", got, streamTimeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bulk writes records of size bytes to each of topics, on a
// ProduceStream per topic (see streamProducer), until ctx ends. The
// returned func waits for the streams' ends and returns the bytes
// acknowledged per topic and the errors the streams ended with.
func bulk(ctx context.Context, c logv1.LogClient, topics []string, size int) (wait func() (map[string]int, []error)) {
	v := strings.Repeat("x", size)
	var mu sync.Mutex
	acked := map[string]int{}
	errs := make([]error, len(topics))
	var wg sync.WaitGroup
	for i, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = streamProducer(ctx, c, topic, func(int) string { return v }, func(uint64, string) error {
				mu.Lock()
				defer mu.Unlock()
				acked[topic] += size
				return nil
			}, nil)
		}()
	}
	return func() (map[string]int, []error) {
		wg.Wait()
		return acked, errs
	}
}

// TestSlowConsumers opens 100 ConsumeStreams that never read (they never
// call Recv, so HTTP/2 flow control stops logd's sends) on the topics 16
// producers write to, and checks that the producers go on as fast as
// without them and that logd's memory stays bounded: a consumer that does
// not read must cost logd its flow-control windows, not a buffer that
// grows with what is produced. Phases without and with the consumers
// alternate, so that a machine loaded by something else slows both alike.
func TestSlowConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("long: phases of production with and without slow consumers")
	}
	const (
		consumers = 100
		conns     = 10 // consumers' connections, consumers/conns streams each
		cycles    = 5  // of a phase without and a phase with the consumers
		phase     = time.Second
		bulkBytes = 8 << 10 // records of the bulk producers, besides the 16
		// Tolerances for a loaded 2-core machine. Producers that slow
		// consumers hold up would all but stop. Go's heap target is twice
		// the live heap, so RSS swings by tens of MiB with garbage
		// collection; memory that grew with the records produced would
		// need consumers times the bytes written (checked to be over 4 x
		// maxGrowth below), far above the bound.
		minRateRatio = 0.5
		maxGrowth    = 80 * mib // peak with consumers over peak without
	)
	p := startLogdBin(t, plainLogd(t), t.TempDir(), t.TempDir(), "--sync", "none", "--shutdown-timeout", "5s")
	sampler := p.sampleRSS(t, 50*time.Millisecond)
	root := p.Client(t, "root")
	admin := logv1.NewAdminClient(p.Dial(t, p.configDir, "root"))
	topics := append(slices.Clone(workloadTopics["root"]), workloadTopics["alice"]...)

	h := newHistory()
	ctx, stopProducers := context.WithCancel(context.Background())
	defer stopProducers()
	wait := runProducers(ctx, t, p, h, 0, nil)
	waitBulk := bulk(ctx, p.Client(t, "root"), topics, bulkBytes)
	// rate measures the 16 producers' acknowledgements a second over one
	// phase, and returns the RSS samples of the phase.
	rate := func() (float64, []uint64) {
		i := sampler.mark()
		n, start := h.total(), time.Now()
		time.Sleep(phase)
		return float64(h.total()-n) / time.Since(start).Seconds(), sampler.since(t, i)
	}
	consumerConns := make([]logv1.LogClient, conns)
	for i := range consumerConns {
		consumerConns[i] = logv1.NewLogClient(p.Dial(t, p.configDir, "root", grpc.WithInitialWindowSize(streamWindowBytes)))
	}
	time.Sleep(500 * time.Millisecond) // the producers get going

	var without, with []float64
	var rssWithout, rssWith []uint64
	var withBytes uint64 // written to each topic while consumers were held up, summed
	for cycle := range cycles {
		r, samples := rate()
		without = append(without, r)
		rssWithout = append(rssWithout, samples...)

		// Half of them from the first record, half from the tail.
		tails := map[string]uint64{}
		for _, topic := range topics {
			tails[topic] = nextOffset(t, root, topic)
		}
		cctx, closeConsumers := context.WithCancel(context.Background())
		streams := make([]logv1.Log_ConsumeStreamClient, consumers)
		for i := range streams {
			topic := topics[i%len(topics)]
			var from uint64
			if i%2 == 1 {
				from = tails[topic]
			}
			s, err := consumerConns[i%conns].ConsumeStream(cctx, &logv1.ConsumeRequest{Topic: topic, Offset: from})
			if err != nil {
				t.Fatalf("ConsumeStream %d: %v", i, err)
			}
			streams[i] = s
		}
		waitTailConsumers(t, admin, consumers)
		_, before := topicTotals(t, admin)
		r, samples = rate()
		_, after := topicTotals(t, admin)
		withBytes += after - before
		with = append(with, r)
		rssWith = append(rssWith, samples...)

		if cycle == cycles-1 {
			// The consumers were held up, not dropped: one that reads now
			// gets the records from its start on, in order.
			for want := range uint64(100) {
				res, err := streams[0].Recv()
				if err != nil {
					t.Fatalf("consumer 0, once it reads: %v", err)
				}
				if got := res.GetRecord().GetOffset(); got != want {
					t.Fatalf("consumer 0, once it reads: got offset %d, want %d", got, want)
				}
			}
		}
		// Canceling frees a stream whether or not it was read; logd
		// ends its side.
		closeConsumers()
		waitTailConsumers(t, admin, 0)
	}
	stopProducers()
	checkCodes(t, "producer", wait(), codes.Canceled)
	bulkAcked, bulkErrs := waitBulk()
	checkCodes(t, "bulk producer", bulkErrs, codes.Canceled)

	// Each phase with consumers against the one without just before it:
	// the two saw about the same load from elsewhere.
	ratios := make([]float64, cycles)
	for i := range ratios {
		ratios[i] = with[i] / without[i]
	}
	ratio := median(ratios)
	t.Logf("producers: %.0f records/s without slow consumers (phases %.0f), %.0f with %d (phases %.0f): median ratio %.2f (%.2f)",
		median(without), without, median(with), consumers, with, ratio, ratios)
	pWithout, pWith := peak(rssWithout), peak(rssWith)
	// Had logd kept for each consumer what was written to its topic while
	// it did not read, it would have needed this much more memory.
	unbounded := withBytes * consumers / uint64(len(topics))
	t.Logf("logd RSS: peak %s without slow consumers, %s with; %s written to the topics while they did not read "+
		"(kept for each consumer, %s); bulk producers acknowledged %v bytes",
		inMiB(pWithout), inMiB(pWith), inMiB(withBytes), inMiB(unbounded), bulkAcked)
	if ratio < minRateRatio {
		t.Errorf("producers ran at %.0f%% of their rate without %d slow consumers when they were there, want at least %.0f%%",
			100*ratio, consumers, 100*minRateRatio)
	}
	if pWith > pWithout+maxGrowth {
		t.Errorf("logd RSS peaked at %s with %d slow consumers, %s without: want at most %s more",
			inMiB(pWith), consumers, inMiB(pWithout), inMiB(maxGrowth))
	}
	if unbounded < 4*maxGrowth {
		t.Errorf("only %s was written while the consumers did not read: too little to tell a bounded logd from one that buffers", inMiB(withBytes))
	}
}

// median returns the median of xs (not empty).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestThousandStreams serves 1,000 streams at once on one logd: 500
// ConsumeStreams following 10 topics from their first record and 500
// ProduceStreams writing to them, over a handful of connections (10, as
// a few busy clients would) and over a connection each (1,000
// mutual-TLS connections, the costlier case for logd). Every stream is
// served (each producer's records are acknowledged, each follower gets
// every record of its topic in order), and logd's RSS stays within the
// bound the README states (Operating logd, Memory): the peak measured on
// the 2-core VM with a margin.
func TestThousandStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("long: 1,000 streams")
	}
	for _, tc := range []struct {
		conns  int
		maxRSS uint64
	}{
		{conns: 10, maxRSS: 224 * mib},
		{conns: 1000, maxRSS: 288 * mib},
	} {
		t.Run(fmt.Sprintf("conns=%d", tc.conns), func(t *testing.T) { thousandStreams(t, tc.conns, tc.maxRSS) })
	}
}

func thousandStreams(t *testing.T, conns int, maxRSS uint64) {
	const (
		streams = 1000
		topicsN = 10
		records = 3 // per producer; the first before all streams are open
	)
	p := startLogdBin(t, plainLogd(t), t.TempDir(), t.TempDir(), "--shutdown-timeout", "5s")
	root := p.Client(t, "root")
	topics := make([]string, topicsN)
	for i := range topics {
		topics[i] = fmt.Sprintf("many/%d", i)
		produce(t, root, topics[i], "seed")
	}
	sampler := p.sampleRSS(t, 50*time.Millisecond)
	idle := sampler.mark()
	idleGoroutines, _ := p.goroutines(t)
	clients := make([]logv1.LogClient, conns)
	for i := range clients {
		clients[i] = logv1.NewLogClient(p.Dial(t, p.configDir, "root"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()
	var (
		opened sync.WaitGroup                       // each stream, once served (or failed)
		done   sync.WaitGroup                       // each stream, at its end
		start  = make(chan struct{})                // all are open: go on
		mu     sync.Mutex                           // guards errs and acked
		errs   []error                              // of the streams that failed
		acked  = make([]map[uint64]string, topicsN) // topic -> offset -> value
		got    = make([][]*logv1.Record, streams/2) // follower -> records
	)
	for i := range acked {
		acked[i] = map[uint64]string{0: "seed"}
	}
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	failed := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(errs)
	}
	for i := range streams {
		c, n := clients[i%conns], i/2
		topic := n % topicsN
		opened.Add(1)
		done.Add(1)
		if i%2 == 0 {
			go func() {
				defer done.Done()
				recs, err := followN(ctx, c, topics[topic], 1+streams/2/topicsN*records, opened.Done, start)
				if err != nil {
					fail(fmt.Errorf("follower %d of %q, after %d records: %w", n, topics[topic], len(recs), err))
				}
				got[n] = recs
			}()
			continue
		}
		go func() {
			defer done.Done()
			err := produceN(ctx, c, topics[topic], fmt.Sprintf("producer-%d", n), records, opened.Done, start, func(off uint64, v string) {
				mu.Lock()
				defer mu.Unlock()
				acked[topic][off] = v
			})
			if err != nil {
				fail(fmt.Errorf("producer %d of %q: %w", n, topics[topic], err))
			}
		}()
	}
	opened.Wait()
	if errs := failed(); len(errs) > 0 {
		cancel()
		done.Wait()
		t.Fatalf("%d of %d streams failed before all were open; the first: %v", len(errs), streams, errs[0])
	}
	waitTailConsumers(t, logv1.NewAdminClient(p.Dial(t, p.configDir, "root")), streams/2)
	openGoroutines, _ := p.goroutines(t)
	allOpen := sampler.since(t, idle)
	close(start)
	done.Wait()
	if errs := failed(); len(errs) > 0 {
		t.Fatalf("%d of %d streams failed; the first: %v", len(errs), streams, errs[0])
	}
	samples := sampler.since(t, idle)

	// Every follower got every record of its topic, in order.
	for f, recs := range got {
		topic := f % topicsN
		want := acked[topic]
		if len(recs) != len(want) {
			t.Fatalf("follower %d of %q: got %d records, want %d", f, topics[topic], len(recs), len(want))
		}
		for off, r := range recs {
			if r.GetOffset() != uint64(off) || string(r.GetValue()) != want[uint64(off)] {
				t.Fatalf("follower %d of %q: record %d is %q at offset %d, want %q at %d",
					f, topics[topic], off, r.GetValue(), r.GetOffset(), want[uint64(off)], off)
			}
		}
	}
	pk := peak(samples)
	t.Logf("%d streams over %d connections: logd RSS %s idle, peak %s with all open, peak %s in all; goroutines %d idle, %d with all open",
		streams, conns, inMiB(samples[0]), inMiB(peak(allOpen)), inMiB(pk), idleGoroutines, openGoroutines)
	if pk > maxRSS {
		t.Errorf("logd RSS peaked at %s with %d streams, want at most %s", inMiB(pk), streams, inMiB(maxRSS))
	}
}

// followN follows topic from offset 0 on a ConsumeStream of c. It calls
// opened once it has the first record (or has failed), then waits for
// start, and reads until it has n records. It returns the records and
// the error that stopped it short.
func followN(ctx context.Context, c logv1.LogClient, topic string, n int, opened func(), start <-chan struct{}) ([]*logv1.Record, error) {
	opened = sync.OnceFunc(opened)
	defer opened()
	s, err := c.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic})
	if err != nil {
		return nil, err
	}
	var recs []*logv1.Record
	for len(recs) < n {
		res, err := s.Recv()
		if err != nil {
			return recs, err
		}
		recs = append(recs, res.GetRecord())
		if len(recs) == 1 {
			opened()
			select {
			case <-start:
			case <-ctx.Done():
				return recs, ctx.Err()
			}
		}
	}
	return recs, nil
}

// produceN writes n records named "<name>/<seq>" to topic on one
// ProduceStream of c, each acknowledged before the next. It calls opened
// once the first is acknowledged (or it has failed), and waits for start
// before the others.
func produceN(ctx context.Context, c logv1.LogClient, topic, name string, n int, opened func(), start <-chan struct{}, ack func(uint64, string)) error {
	opened = sync.OnceFunc(opened)
	defer opened()
	s, err := c.ProduceStream(ctx)
	if err != nil {
		return err
	}
	for seq := range n {
		if seq == 1 {
			opened()
			select {
			case <-start:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		v := fmt.Sprintf("%s/%d", name, seq)
		if err := s.Send(&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(v)}}); err != nil {
			_, err = s.Recv() // the status
			return err
		}
		res, err := s.Recv()
		if err != nil {
			return err
		}
		ack(res.GetOffset(), v)
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	if _, err := s.Recv(); err != io.EOF {
		return fmt.Errorf("after the last answer: got %v, want EOF", err)
	}
	return nil
}
