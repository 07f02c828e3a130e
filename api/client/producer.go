package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	logv1 "github.com/logd/logd/api/v1"
)

// ErrProducerClosed is returned by Send after Close (unless the stream
// failed: then its error).
var ErrProducerClosed = errors.New("client: producer closed")

// Producer pipelines records over one ProduceStream with at most Window
// records awaiting their acknowledgement. The server answers in order, so
// the i-th Send gets the i-th answer. It is safe for concurrent use.
type Producer struct {
	topic  string
	stream logv1.Log_ProduceStreamClient
	cancel context.CancelFunc
	// slots holds a token per record awaiting its ack: Send blocks while
	// it is full.
	slots chan struct{}
	// done is closed when the receiving goroutine ends; err is then set.
	done chan struct{}
	err  error

	sendMu sync.Mutex // serializes stream.Send and CloseSend
	closed bool       // under sendMu

	mu      sync.Mutex // guards the fields below
	queue   []*Ack     // acks awaiting answers, in order of sending
	ended   bool       // the receiver took the queue for the last time
	sendErr error      // a send failure that broke the stream
	maxSeen int        // the most outstanding at once (for tests)

	closeErr error
	once     sync.Once
}

// Ack is the answer to one Send.
type Ack struct {
	done   chan struct{}
	offset uint64
	err    error
}

// Wait returns the record's offset once the server acknowledged it, or
// the stream's error. It returns ctx.Err() if ctx ends first; the record
// may then still be acknowledged.
func (a *Ack) Wait(ctx context.Context) (uint64, error) {
	select {
	case <-a.done:
		return a.offset, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// NewProducer opens a ProduceStream to topic ("" is the default topic)
// that lets at most window records (at least 1) await their
// acknowledgement. The stream lives until Close or until ctx ends.
func (c *Client) NewProducer(ctx context.Context, topic string, window int) (*Producer, error) {
	if window < 1 {
		return nil, fmt.Errorf("client: producer window %d: must be at least 1", window)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.log.ProduceStream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	p := &Producer{
		topic:  topic,
		stream: stream,
		cancel: cancel,
		slots:  make(chan struct{}, window),
		done:   make(chan struct{}),
	}
	go p.receive()
	return p, nil
}

// Window is the most records that may await their acknowledgement.
func (p *Producer) Window() int { return cap(p.slots) }

// receive matches each answer to the oldest outstanding Ack until the
// stream ends, then fails every Ack left with the stream's error.
func (p *Producer) receive() {
	defer close(p.done)
	var err error
	for {
		var resp *logv1.ProduceResponse
		resp, err = p.stream.Recv()
		if err != nil {
			break
		}
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.mu.Unlock()
			err = fmt.Errorf("client: producer: answer (offset %d) to no record", resp.GetOffset())
			p.cancel()
			break
		}
		a := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		a.offset = resp.GetOffset()
		close(a.done)
		<-p.slots
	}
	p.mu.Lock()
	if p.sendErr != nil {
		err = p.sendErr
	}
	left := p.queue
	p.queue = nil
	p.ended = true
	if errors.Is(err, io.EOF) {
		if len(left) > 0 {
			err = fmt.Errorf("client: producer: stream ended with %d records unacknowledged", len(left))
		} else {
			err = nil
		}
	}
	p.err = err
	p.mu.Unlock()
	for _, a := range left {
		a.err = err
		close(a.done)
		<-p.slots
	}
}

// Send writes a record to the stream and returns its Ack. It blocks while
// Window records await their acknowledgement, until ctx ends (ctx.Err())
// or the stream fails (its error).
func (p *Producer) Send(ctx context.Context, value []byte) (*Ack, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, p.streamErr()
	}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if p.closed {
		<-p.slots
		select {
		case <-p.done:
			return nil, p.streamErr()
		default:
			return nil, ErrProducerClosed
		}
	}
	a := &Ack{done: make(chan struct{})}
	p.mu.Lock()
	if p.ended {
		// The receiver is past its last look at the queue: nobody would
		// answer.
		p.mu.Unlock()
		<-p.done
		<-p.slots
		return nil, p.streamErr()
	}
	p.queue = append(p.queue, a)
	if n := len(p.queue); n > p.maxSeen {
		p.maxSeen = n
	}
	p.mu.Unlock()
	err := p.stream.Send(&logv1.ProduceRequest{Topic: p.topic, Record: &logv1.Record{Value: value}})
	if err != nil && !errors.Is(err, io.EOF) {
		// The stream is broken (io.EOF means the server ended it: the
		// receiver gets its status). Keep this error for every Ack.
		p.mu.Lock()
		p.sendErr = err
		p.mu.Unlock()
		p.cancel()
	}
	return a, nil
}

// streamErr is the error that ended the stream, once done is closed.
func (p *Producer) streamErr() error {
	if p.err != nil {
		return p.err
	}
	return ErrProducerClosed
}

// Close half-closes the stream, waits for every outstanding Ack and
// returns the first error of the stream, if any. It is safe to call more
// than once.
func (p *Producer) Close() error {
	p.once.Do(func() {
		p.sendMu.Lock()
		p.closed = true
		cerr := p.stream.CloseSend()
		p.sendMu.Unlock()
		<-p.done
		p.cancel()
		p.closeErr = p.err
		if p.closeErr == nil && cerr != nil && !errors.Is(cerr, io.EOF) {
			p.closeErr = cerr
		}
	})
	return p.closeErr
}

// outstanding returns the records awaiting acks now and the most at once.
func (p *Producer) outstanding() (now, most int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue), p.maxSeen
}
