package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/logd/logd/api/client"
	logv1 "github.com/logd/logd/api/v1"
)

// workload is one kind of load the harness puts on a server.
type workload struct {
	name  string // short, for flags and file names
	title string // for the table
	// prefill is true for workloads that read a topic written before.
	prefill bool
	// run runs one trial against c on topic for about d (a consume trial
	// reads the pre-filled topic once, or stops after d if d > 0). It
	// checks the offsets and records the server returns.
	run func(ctx context.Context, c *client.Client, topic string, d time.Duration, o *options) (trial, error)
}

// trial is what one run of a workload measured.
type trial struct {
	records int
	elapsed time.Duration
	latency []time.Duration
	cpu     cpuUsage // the server's CPU time over the trial
}

func (t trial) rate() float64 {
	if t.elapsed <= 0 {
		return 0
	}
	return float64(t.records) / t.elapsed.Seconds()
}

// workloads are the workloads of issue 7, in the order they run.
var workloads = []*workload{
	{name: "unary-1", title: "unary Produce, 1 caller", run: unary(1)},
	{name: "unary-16", title: "unary Produce, 16 callers", run: unary(16)},
	{name: "stream", title: "pipelined ProduceStream", run: stream},
	{name: "consume", title: "ConsumeStream from offset 0", prefill: true, run: consume},
}

// latencyNote says what the latency of each workload is.
const latencyNote = `unary Produce: per call. ProduceStream: per record, from its Send to its
acknowledgement, with up to -window records in flight on one stream (as
api/client's Producer keeps them). ConsumeStream: the gap between
consecutive records received (for the first, from opening the stream).`

// unary returns a workload of callers goroutines sharing one connection,
// each making one Produce call at a time; latency is per call.
func unary(callers int) func(context.Context, *client.Client, string, time.Duration, *options) (trial, error) {
	return func(ctx context.Context, c *client.Client, topic string, d time.Duration, o *options) (trial, error) {
		value := make([]byte, o.size)
		lats := make([][]time.Duration, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		start := time.Now()
		until := start.Add(d)
		for i := range callers {
			wg.Go(func() {
				lat := make([]time.Duration, 0, 4096)
				defer func() { lats[i] = lat }()
				last := int64(-1)
				for time.Now().Before(until) {
					t := time.Now()
					off, err := c.Produce(ctx, topic, value)
					if err != nil {
						errs[i] = err
						return
					}
					lat = append(lat, time.Since(t))
					// One caller's appends are ordered.
					if int64(off) <= last {
						errs[i] = fmt.Errorf("produce: offset %d after offset %d", off, last)
						return
					}
					last = int64(off)
				}
			})
		}
		wg.Wait()
		tr := trial{elapsed: time.Since(start)}
		for _, l := range lats {
			tr.latency = append(tr.latency, l...)
		}
		tr.records = len(tr.latency)
		return tr, errors.Join(errs...)
	}
}

// stream sends records over one ProduceStream for d, with up to o.window
// of them awaiting their acknowledgement; latency is per record, from
// Send to its ack. The trial ends when the last ack is in.
func stream(ctx context.Context, c *client.Client, topic string, d time.Duration, o *options) (trial, error) {
	value := make([]byte, o.size)
	start := time.Now()
	until := start.Add(d)
	lat, err := produce(ctx, c, topic, o.window, func() ([]byte, bool) {
		return value, time.Now().Before(until)
	})
	return trial{records: len(lat), elapsed: time.Since(start), latency: lat}, err
}

// produce sends the values next returns over one ProduceStream with a
// window of window records, until next says no more, and returns each
// acknowledged record's latency from Send to ack. It checks that offsets
// follow one another.
func produce(ctx context.Context, c *client.Client, topic string, window int, next func() ([]byte, bool)) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := c.NewProducer(ctx, topic, window)
	if err != nil {
		return nil, err
	}
	type sent struct {
		ack *client.Ack
		at  time.Time
	}
	acks := make(chan sent, window)
	var lat []time.Duration
	var ackErr error
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		prev := int64(-1)
		for s := range acks {
			off, err := s.ack.Wait(ctx)
			if err == nil && prev >= 0 && int64(off) != prev+1 {
				err = fmt.Errorf("produce stream: offset %d after offset %d", off, prev)
			}
			if err != nil {
				ackErr = err
				cancel()
				return
			}
			lat = append(lat, time.Since(s.at))
			prev = int64(off)
		}
	}()
	var sendErr error
	for {
		v, more := next()
		if !more {
			break
		}
		at := time.Now()
		a, err := p.Send(ctx, v)
		if err != nil {
			sendErr = err
			break
		}
		select {
		case acks <- sent{a, at}:
			continue
		case <-acked:
		}
		break
	}
	close(acks)
	<-acked
	closeErr := p.Close()
	if ackErr != nil {
		return lat, ackErr
	}
	return lat, errors.Join(sendErr, closeErr)
}

// prefill writes o.consumeRecords records to topic for the consume
// workload.
func prefill(ctx context.Context, c *client.Client, topic string, o *options) error {
	value := make([]byte, o.size)
	n := 0
	lat, err := produce(ctx, c, topic, o.window, func() ([]byte, bool) {
		n++
		return value, n <= o.consumeRecords
	})
	if err == nil && len(lat) != o.consumeRecords {
		err = fmt.Errorf("prefill: %d records acknowledged, want %d", len(lat), o.consumeRecords)
	}
	return err
}

// consume reads the pre-filled topic from offset 0 over one ConsumeStream
// (stopping after d if d > 0); latency is the gap between records.
func consume(ctx context.Context, c *client.Client, topic string, d time.Duration, o *options) (trial, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	st, err := c.Log().ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic, Offset: 0})
	if err != nil {
		return trial{}, err
	}
	tr := trial{latency: make([]time.Duration, 0, o.consumeRecords)}
	prev := start
	for i := range o.consumeRecords {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("consume stream ended after %d records", i)
		}
		if err != nil {
			return tr, err
		}
		now := time.Now()
		tr.latency = append(tr.latency, now.Sub(prev))
		prev = now
		if r := resp.GetRecord(); r.GetOffset() != uint64(i) || len(r.GetValue()) != o.size {
			return tr, fmt.Errorf("consume: record %d: got offset %d with %d bytes, want offset %d with %d", i, r.GetOffset(), len(r.GetValue()), i, o.size)
		}
		if d > 0 && now.Sub(start) >= d {
			break
		}
	}
	tr.records = len(tr.latency)
	tr.elapsed = time.Since(start)
	return tr, nil
}
