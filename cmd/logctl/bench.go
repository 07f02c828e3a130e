package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/logd/logd/api/client"
	logv1 "github.com/logd/logd/api/v1"
)

type benchOpts struct {
	topic       string
	records     int
	size        int
	concurrency int
	mode        string
	window      int
	consume     bool
}

const benchExample = `  # 100,000 records of 100 bytes over 4 pipelined streams
  logctl bench --topic bench --records 100000 --size 100 --concurrency 4
  # one unary Produce per record, 16 at a time, then read them back
  logctl bench --topic bench --mode unary --records 20000 --concurrency 16 --consume
  # as alice, who may only write her own topics
  logctl --as alice bench --topic alice/bench --records 10000`

func (a *app) benchCmd() *cobra.Command {
	o := &benchOpts{}
	c := &cobra.Command{
		Use:   "bench [--topic T] [--records N] [--size B] [--concurrency C] [--mode unary|stream] [--consume]",
		Short: "Measure produce (and consume) throughput and latency",
		Long: `Produce --records records of --size random bytes to a topic and report
records/s, MB/s (10^6 bytes) and the p50, p99, p99.9 and max latency.

--mode stream (the default) runs --concurrency ProduceStreams, each with up
to --window records in flight; a record's latency is from its Send to its
acknowledgement, so it includes waiting in the window. --mode unary runs
--concurrency workers, each making one Produce call at a time; latency is
per call. With --consume the records are then read back the same way
(unary Consume calls, or ConsumeStreams over a share of the offsets each;
for streams the latency is the wait for each record). The durability of
each acknowledgement is the server's --sync policy.`,
		Example: benchExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.bench(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVarP(&o.topic, "topic", "t", "bench", "`topic` to write")
	f.IntVarP(&o.records, "records", "n", 10000, "how many records to produce")
	f.IntVar(&o.size, "size", 100, "bytes per record")
	f.IntVarP(&o.concurrency, "concurrency", "c", 1, "concurrent streams or unary workers")
	f.StringVar(&o.mode, "mode", "stream", "`mode`: stream (ProduceStream) or unary (Produce calls)")
	f.IntVar(&o.window, "window", produceWindow, "records in flight per stream (stream mode)")
	f.BoolVar(&o.consume, "consume", false, "then read the records back and report that too")
	c.RegisterFlagCompletionFunc("mode", fixedCompletions("stream", "unary"))
	return c
}

// phase collects what the workers of one bench phase measured.
type phase struct {
	mu        sync.Mutex
	latencies []time.Duration
	lowest    uint64
	highest   uint64
	n         int
	err       error
	cancel    context.CancelFunc
	bar       *progressbar.ProgressBar
}

// add merges one worker's results.
func (p *phase) add(lat []time.Duration, lo, hi uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(lat) == 0 {
		return
	}
	if p.n == 0 || lo < p.lowest {
		p.lowest = lo
	}
	if p.n == 0 || hi > p.highest {
		p.highest = hi
	}
	p.n += len(lat)
	p.latencies = append(p.latencies, lat...)
}

// fail keeps the first error and stops the other workers.
func (p *phase) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.cancel()
}

func (p *phase) tick() {
	if p.bar != nil {
		p.bar.Add(1)
	}
}

func (a *app) bench(ctx context.Context, o *benchOpts) error {
	switch {
	case o.topic == "":
		return usagef("--topic must not be empty")
	case o.records < 1:
		return usagef("--records must be at least 1")
	case o.size < 0:
		return usagef("--size must not be negative")
	case o.concurrency < 1:
		return usagef("--concurrency must be at least 1")
	case o.window < 1:
		return usagef("--window must be at least 1")
	case o.mode != "stream" && o.mode != "unary":
		return usagef("--mode %q: want stream or unary", o.mode)
	}
	conc := min(o.concurrency, o.records)
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.Close()

	value := make([]byte, o.size)
	for i := range value {
		value[i] = byte('a' + rand.IntN(26))
	}

	fmt.Fprintf(a.stdout, "bench: %d records of %d B to %q, mode %s, concurrency %d\n", o.records, o.size, o.topic, o.mode, conc)
	prod, elapsed, err := a.runPhase(ctx, "producing", o.records, func(ctx context.Context, p *phase) {
		if o.mode == "unary" {
			a.produceUnary(ctx, c, o, conc, value, p)
		} else {
			a.produceStreams(ctx, c, o, conc, value, p)
		}
	})
	if err != nil {
		return err
	}
	a.report("produce", prod, elapsed, o.size)
	if !o.consume {
		return nil
	}

	total := int(prod.highest - prod.lowest + 1)
	if total != prod.n {
		fmt.Fprintf(a.stdout, "  (other clients wrote %d records in between; they are read too)\n", total-prod.n)
	}
	cons, elapsed, err := a.runPhase(ctx, "consuming", total, func(ctx context.Context, p *phase) {
		if o.mode == "unary" {
			a.consumeUnary(ctx, c, o.topic, prod.lowest, prod.highest, conc, p)
		} else {
			a.consumeStreams(ctx, c, o.topic, prod.lowest, prod.highest, conc, p)
		}
	})
	if err != nil {
		return err
	}
	a.report("consume", cons, elapsed, o.size)
	return nil
}

// runPhase runs work with a progress bar of total records when stderr is a
// terminal, and returns what it measured and how long it took.
func (a *app) runPhase(ctx context.Context, what string, total int, work func(context.Context, *phase)) (*phase, time.Duration, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &phase{cancel: cancel}
	if isTerminal(a.stderr) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("records"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	start := time.Now()
	work(wctx, p)
	elapsed := time.Since(start)
	if p.bar != nil {
		p.bar.Finish()
	}
	if p.err != nil {
		return nil, 0, a.callError(ctx, p.err, "")
	}
	if ctx.Err() != nil {
		return nil, 0, interruptedError{}
	}
	return p, elapsed, nil
}

// report prints records/s, MB/s and latency percentiles of a phase.
func (a *app) report(what string, p *phase, elapsed time.Duration, size int) {
	secs := elapsed.Seconds()
	fmt.Fprintf(a.stdout, "%s: %d records in %s: %.0f records/s, %.2f MB/s\n",
		what, p.n, elapsed.Round(time.Millisecond), float64(p.n)/secs, float64(p.n)*float64(size)/1e6/secs)
	lat := p.latencies
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	fmt.Fprintf(a.stdout, "  latency p50 %s  p99 %s  p99.9 %s  max %s\n",
		ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(percentile(lat, 0.999)), ms(lat[len(lat)-1]))
}

// percentile returns the q-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// shares splits n into k nearly equal parts.
func shares(n, k int) []int {
	s := make([]int, k)
	for i := range s {
		s[i] = n / k
		if i < n%k {
			s[i]++
		}
	}
	return s
}

func (a *app) produceUnary(ctx context.Context, c *client.Client, o *benchOpts, conc int, value []byte, p *phase) {
	var left atomic.Int64
	left.Store(int64(o.records))
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var lat []time.Duration
			lo, hi := uint64(math.MaxUint64), uint64(0)
			defer func() { p.add(lat, lo, hi) }()
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				start := time.Now()
				uctx, cancel := a.unary(ctx)
				off, err := c.Produce(uctx, o.topic, value)
				cancel()
				if err != nil {
					p.fail(err)
					return
				}
				lat = append(lat, time.Since(start))
				lo, hi = min(lo, off), max(hi, off)
				p.tick()
			}
		})
	}
	wg.Wait()
}

func (a *app) produceStreams(ctx context.Context, c *client.Client, o *benchOpts, conc int, value []byte, p *phase) {
	var wg sync.WaitGroup
	for _, n := range shares(o.records, conc) {
		wg.Go(func() {
			pr, err := c.NewProducer(ctx, o.topic, o.window)
			if err != nil {
				p.fail(err)
				return
			}
			type sent struct {
				ack *client.Ack
				at  time.Time
			}
			acks := make(chan sent, o.window)
			waited := make(chan struct{})
			go func() {
				defer close(waited)
				lat := make([]time.Duration, 0, n)
				lo, hi := uint64(math.MaxUint64), uint64(0)
				defer func() { p.add(lat, lo, hi) }()
				for s := range acks {
					off, err := s.ack.Wait(ctx)
					if err != nil {
						p.fail(err)
						return
					}
					lat = append(lat, time.Since(s.at))
					lo, hi = min(lo, off), max(hi, off)
					p.tick()
				}
			}()
			for range n {
				at := time.Now()
				ack, err := pr.Send(ctx, value)
				if err != nil {
					p.fail(err)
					break
				}
				select {
				case acks <- sent{ack, at}:
					continue
				case <-ctx.Done():
				}
				break
			}
			close(acks)
			<-waited
			if err := pr.Close(); err != nil {
				p.fail(err)
			}
		})
	}
	wg.Wait()
}

func (a *app) consumeUnary(ctx context.Context, c *client.Client, topic string, lo, hi uint64, conc int, p *phase) {
	var next atomic.Uint64
	next.Store(lo)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var lat []time.Duration
			first, last := uint64(math.MaxUint64), uint64(0)
			defer func() { p.add(lat, first, last) }()
			for ctx.Err() == nil {
				off := next.Add(1) - 1
				if off > hi {
					return
				}
				start := time.Now()
				uctx, cancel := a.unary(ctx)
				_, err := c.Consume(uctx, topic, off)
				cancel()
				if err != nil {
					p.fail(err)
					return
				}
				lat = append(lat, time.Since(start))
				first, last = min(first, off), max(last, off)
				p.tick()
			}
		})
	}
	wg.Wait()
}

func (a *app) consumeStreams(ctx context.Context, c *client.Client, topic string, lo, hi uint64, conc int, p *phase) {
	total := int(hi - lo + 1)
	conc = min(conc, total)
	var wg sync.WaitGroup
	start := lo
	for _, n := range shares(total, conc) {
		from := start
		start += uint64(n)
		wg.Go(func() {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.Log().ConsumeStream(sctx, &logv1.ConsumeRequest{Topic: topic, Offset: from})
			if err != nil {
				p.fail(err)
				return
			}
			lat := make([]time.Duration, 0, n)
			defer func() { p.add(lat, from, from+uint64(n)-1) }()
			for range n {
				t := time.Now()
				if _, err := stream.Recv(); err != nil {
					if err == io.EOF {
						err = fmt.Errorf("stream from offset %d ended early", from)
					}
					p.fail(err)
					return
				}
				lat = append(lat, time.Since(t))
				p.tick()
			}
		})
	}
	wg.Wait()
}
