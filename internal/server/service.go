package server

import (
	"context"
	"errors"
	"io"
	"time"

	"go.opencensus.io/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/quota"
)

// Topics is the storage the services need: a topic's log, created on
// first produce; and for the admin service the topics and their deletion.
type Topics interface {
	// Open returns a topic's log, creating the topic if it is new.
	Open(name string) (*log.Log, error)
	// Get returns an existing topic's log or an error wrapping
	// log.ErrTopicNotFound.
	Get(name string) (*log.Log, error)
	// Names returns the topics, sorted.
	Names() []string
	// Delete removes a topic (see log.Topics.Delete) and returns its
	// stats as it was closed.
	Delete(name string) (log.Stats, error)
}

var _ Topics = (*log.Topics)(nil)

var errShuttingDown = errors.New("server: shutting down")

// service implements logv1.LogServer.
type service struct {
	logv1.UnimplementedLogServer
	topics Topics
	window int
	obs    Observer
	quotas *quotaGuard
	// shutdown ends when the server shuts down: streams waiting for new
	// records then end with Unavailable.
	shutdown context.Context
}

var _ logv1.LogServer = (*service)(nil)

func toProto(r log.Record) *logv1.Record {
	return &logv1.Record{Value: r.Value, Offset: r.Offset, Time: timestamppb.New(r.Time)}
}

// streamedRecord is a ConsumeResponse, its Record and the Record's Time
// in one allocation, for a stream that sends one per record.
type streamedRecord struct {
	resp logv1.ConsumeResponse
	rec  logv1.Record
	time timestamppb.Timestamp
}

// newConsumeResponse returns the response that sends r, as toProto
// makes it.
func newConsumeResponse(r log.Record) *logv1.ConsumeResponse {
	m := &streamedRecord{}
	m.time.Seconds, m.time.Nanos = r.Time.Unix(), int32(r.Time.Nanosecond())
	m.rec.Value, m.rec.Offset, m.rec.Time = r.Value, r.Offset, &m.time
	m.resp.Record = &m.rec
	return &m.resp
}

func (s *service) Produce(ctx context.Context, req *logv1.ProduceRequest) (*logv1.ProduceResponse, error) {
	if req.GetRecord() == nil {
		return nil, status.Error(codes.InvalidArgument, "record is required")
	}
	first, err := s.produce(ctx, req.GetTopic(), [][]byte{req.GetRecord().GetValue()})
	if err != nil {
		return nil, err
	}
	return &logv1.ProduceResponse{Offset: first}, nil
}

// produce appends values to a topic (named as in a request: "" is the
// default), creating it if needed, and returns the first offset once the
// sync policy is met. Authorization is the caller's. It is shared by the
// gRPC and the HTTP API; its errors are statuses.
func (s *service) produce(ctx context.Context, topicName string, values [][]byte) (uint64, error) {
	topic, err := resolveTopic(topicName)
	if err != nil {
		return 0, err
	}
	callInfoFrom(ctx).setTopic(topic)
	l, err := s.topics.Open(topic)
	if err != nil {
		return 0, toStatus(err, topic, nil)
	}
	// A topic at its cap refuses the call before it takes tokens.
	if err := l.CheckCap(values, s.quotas.topicCap(topic)); err != nil {
		return 0, toStatus(s.quotas.topicFull(ctx, topic, err), topic, l)
	}
	if err := s.quotas.take(ctx, topic, quota.ProduceBytes, valueBytes(values)); err != nil {
		return 0, err
	}
	p, err := s.startAppend(ctx, l, topic, values)
	if err != nil {
		return 0, err
	}
	if err := s.ack(ctx, p); err != nil {
		return 0, err
	}
	return p.First, nil
}

// pending is an append on its way to its acknowledgement.
type pending struct {
	log.Pending
	topic   string
	records int
	bytes   int
	start   time.Time
}

// startAppend writes values to l under a span, unless they would take
// the topic over its quota, and returns the append to acknowledge once
// ack says so.
func (s *service) startAppend(ctx context.Context, l *log.Log, topic string, values [][]byte) (pending, error) {
	start := time.Now()
	span := childSpan(ctx, "log.append")
	defer span.End()
	p, err := l.StartAppendCapped(values, s.quotas.topicCap(topic))
	if err != nil {
		span.SetStatus(trace.Status{Code: trace.StatusCodeInternal, Message: err.Error()})
		return pending{}, toStatus(s.quotas.topicFull(ctx, topic, err), topic, l)
	}
	if span.IsRecordingEvents() {
		span.AddAttributes(trace.StringAttribute("topic", topic), trace.Int64Attribute("offset", int64(p.First)), trace.Int64Attribute("records", int64(len(values))))
	}
	return pending{Pending: p, topic: topic, records: len(values), bytes: valueBytes(values), start: start}, nil
}

// childSpan starts a span named name under the call's span in ctx. If
// that one is not sampled, neither is its child (OpenCensus keeps the
// parent's decision), so childSpan starts none and returns nil, a span
// whose methods do nothing.
func childSpan(ctx context.Context, name string) *trace.Span {
	if p := trace.FromContext(ctx); p != nil && !p.SpanContext().IsSampled() {
		return nil
	}
	_, span := trace.StartSpan(ctx, name)
	return span
}

// valueBytes returns the bytes of values, as the byte quotas count them.
func valueBytes(values [][]byte) int {
	n := 0
	for _, v := range values {
		n += len(v)
	}
	return n
}

// ack waits, under a span, until the append meets the sync policy, and
// reports it.
func (s *service) ack(ctx context.Context, p pending) error {
	span := childSpan(ctx, "log.sync_wait")
	err := p.Wait()
	if span.IsRecordingEvents() {
		span.AddAttributes(trace.StringAttribute("topic", p.topic), trace.Int64Attribute("offset", int64(p.First)))
	}
	if err != nil {
		span.SetStatus(trace.Status{Code: trace.StatusCodeInternal, Message: err.Error()})
	}
	span.End()
	if err != nil {
		return toStatus(err, p.topic, nil)
	}
	callInfoFrom(ctx).touchedRange(p.First, p.First+uint64(p.records)-1, p.records)
	s.obs.Appended(ctx, p.topic, p.records, p.bytes, time.Since(p.start))
	return nil
}

func (s *service) Consume(ctx context.Context, req *logv1.ConsumeRequest) (*logv1.ConsumeResponse, error) {
	rec, err := s.read(ctx, req.GetTopic(), req.GetOffset())
	if err != nil {
		return nil, err
	}
	return &logv1.ConsumeResponse{Record: toProto(rec)}, nil
}

// read returns the record at off of an existing topic. Authorization is
// the caller's; errors are statuses. Shared by the gRPC and HTTP APIs.
func (s *service) read(ctx context.Context, topicName string, off uint64) (log.Record, error) {
	topic, err := resolveTopic(topicName)
	if err != nil {
		return log.Record{}, err
	}
	callInfoFrom(ctx).setTopic(topic)
	l, err := s.topics.Get(topic)
	if err != nil {
		return log.Record{}, toStatus(err, topic, nil)
	}
	span := childSpan(ctx, "log.read")
	if span.IsRecordingEvents() {
		span.AddAttributes(trace.StringAttribute("topic", topic), trace.Int64Attribute("offset", int64(off)))
	}
	rec, err := l.Read(off)
	if err != nil {
		span.SetStatus(trace.Status{Code: trace.StatusCodeOutOfRange, Message: err.Error()})
	}
	span.End()
	if err != nil {
		return log.Record{}, toStatus(err, topic, l)
	}
	if err := s.quotas.take(ctx, topic, quota.ConsumeBytes, len(rec.Value)); err != nil {
		return log.Record{}, err
	}
	callInfoFrom(ctx).touched(rec.Offset)
	s.obs.Read(ctx, topic, 1, len(rec.Value))
	return rec, nil
}

// ConsumeStream sends records from the requested offset on; at the end of
// the topic it sleeps until an append wakes it, and ends when the client
// cancels (or the server shuts down: Unavailable).
func (s *service) ConsumeStream(req *logv1.ConsumeRequest, stream logv1.Log_ConsumeStreamServer) error {
	return s.follow(stream.Context(), req.GetTopic(), req.GetOffset(), true, func(rec log.Record) error {
		return stream.Send(newConsumeResponse(rec))
	})
}

// follow sends the records of a topic from offset from on. At the end it
// returns nil, or with wait it sleeps until an append wakes it, until ctx
// ends or the server shuts down (Unavailable). Authorization is the
// caller's; errors are statuses, except send's, returned as they are.
// Shared by the gRPC and HTTP APIs.
func (s *service) follow(ctx context.Context, topicName string, from uint64, wait bool, send func(log.Record) error) error {
	topic, err := resolveTopic(topicName)
	if err != nil {
		return err
	}
	l, err := s.topics.Get(topic)
	if err != nil {
		return toStatus(err, topic, nil)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.shutdown, func() { cancel(errShuttingDown) })
	defer stop()

	ci := callInfoFrom(ctx)
	ci.setTopic(topic)
	s.obs.Following(topic, 1)
	defer s.obs.Following(topic, -1)
	sent := sentRecords{ctx: ctx, obs: s.obs, ci: ci, topic: topic}
	defer sent.report()
	r := l.NewReader(from)
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			sent.report()
			if !wait {
				return nil
			}
			if err := l.Wait(ctx, r.Offset()); err != nil {
				if cause := context.Cause(ctx); cause != nil {
					err = cause
				}
				return toStatus(err, topic, l)
			}
			continue
		}
		if err != nil {
			return toStatus(err, topic, l)
		}
		if err := s.quotas.wait(ctx, topic, quota.ConsumeBytes, len(rec.Value)); err != nil {
			return err
		}
		if err := send(rec); err != nil {
			return err
		}
		sent.add(rec.Offset, len(rec.Value))
	}
}

// sentRecords counts the records a follow sent, and reports them to the
// call's log line and the Observer in batches: every reportEvery records,
// when the follow reaches the end of the topic (before it waits there),
// and when it ends. Counting each record costs a few additions, where
// reporting it costs a metrics recording.
type sentRecords struct {
	ctx   context.Context
	obs   Observer
	ci    *callInfo
	topic string

	first, last  uint64 // offsets of the records not yet reported
	count, bytes int
}

// reportEvery bounds the records a follow sends before reporting them.
const reportEvery = 256

func (s *sentRecords) add(off uint64, bytes int) {
	if s.count == 0 {
		s.first = off
	}
	s.last = off
	s.count++
	s.bytes += bytes
	if s.count >= reportEvery {
		s.report()
	}
}

// report reports the records counted since the last report.
func (s *sentRecords) report() {
	if s.count == 0 {
		return
	}
	s.ci.touchedRange(s.first, s.last, s.count)
	s.obs.Read(s.ctx, s.topic, s.count, s.bytes)
	s.count, s.bytes = 0, 0
}

// ack is an append waiting for its acknowledgement, or the error that
// ends a ProduceStream after the acknowledgements before it.
type ack struct {
	pending pending
	err     error
}

// ProduceStream pipelines: a goroutine reads and appends requests while
// this one waits for each append to meet the sync policy and answers, in
// order. One fsync thus covers every record written while the previous one
// ran. At most s.window records wait for acknowledgement at once.
func (s *service) ProduceStream(stream logv1.Log_ProduceStreamServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	acks := make(chan ack, s.window)
	defer func() {
		// Appends started and not answered (the stream failed, or the
		// server shuts down) are waited for all the same, so that they
		// are written (and readable) as any append is, unacknowledged.
		go func() {
			for a := range acks {
				if a.err == nil {
					_ = a.pending.Wait()
				}
			}
		}()
	}()
	go func() {
		defer close(acks)
		for {
			a := s.receive(ctx, stream)
			if errors.Is(a.err, io.EOF) {
				return
			}
			select {
			case acks <- a:
			case <-ctx.Done():
				return
			}
			if a.err != nil {
				return
			}
		}
	}()
	answer := func(a ack) error {
		if a.err != nil {
			return a.err
		}
		if err := s.ack(ctx, a.pending); err != nil {
			return err
		}
		return stream.Send(&logv1.ProduceResponse{Offset: a.pending.First})
	}
	for {
		select {
		case a, ok := <-acks:
			if !ok {
				return nil
			}
			if err := answer(a); err != nil {
				return err
			}
		case <-s.shutdown.Done():
			// Answer what was appended already, then end the stream: the
			// client resends the rest to another server or after restart.
			for {
				select {
				case a, ok := <-acks:
					if !ok {
						return toStatus(errShuttingDown, "", nil)
					}
					if err := answer(a); err != nil {
						return err
					}
				default:
					return toStatus(errShuttingDown, "", nil)
				}
			}
		}
	}
}

// receive reads one request of a ProduceStream and starts its append.
func (s *service) receive(ctx context.Context, stream logv1.Log_ProduceStreamServer) ack {
	req, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return ack{err: io.EOF}
		}
		return ack{err: toStatus(err, "", nil)}
	}
	topic, err := resolveTopic(req.GetTopic())
	if err != nil {
		return ack{err: err}
	}
	if req.GetRecord() == nil {
		return ack{err: status.Error(codes.InvalidArgument, "record is required")}
	}
	if s.shutdown.Err() != nil {
		return ack{err: toStatus(errShuttingDown, topic, nil)}
	}
	l, err := s.topics.Open(topic)
	if err != nil {
		return ack{err: toStatus(err, topic, nil)}
	}
	callInfoFrom(ctx).setTopic(topic)
	values := [][]byte{req.GetRecord().GetValue()}
	if err := l.CheckCap(values, s.quotas.topicCap(topic)); err != nil {
		return ack{err: toStatus(s.quotas.topicFull(ctx, topic, err), topic, l)}
	}
	if err := s.quotas.wait(ctx, topic, quota.ProduceBytes, valueBytes(values)); err != nil {
		return ack{err: err}
	}
	p, err := s.startAppend(ctx, l, topic, values)
	if err != nil {
		return ack{err: err}
	}
	return ack{pending: p}
}
