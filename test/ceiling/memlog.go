package main

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/logd/logd/api/v1"
)

// defaultTopic is the topic of requests that name none, as in logd.
const defaultTopic = "default"

// memLog holds every topic's records in memory. It is safe for
// concurrent use.
type memLog struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

func newMemLog() *memLog {
	return &memLog{topics: map[string]*topic{}}
}

// topic is one topic's records; a record's offset is its index.
type topic struct {
	mu      sync.Mutex
	records []*logv1.Record
	// wake is closed by the next append; nil while no reader waits.
	wake chan struct{}
}

// get returns a topic, or nil if no record was ever produced to it.
func (m *memLog) get(name string) *topic {
	if name == "" {
		name = defaultTopic
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.topics[name]
}

// open returns a topic, creating it if it is new.
func (m *memLog) open(name string) *topic {
	if t := m.get(name); t != nil {
		return t
	}
	if name == "" {
		name = defaultTopic
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.topics[name]
	if t == nil {
		t = &topic{}
		m.topics[name] = t
	}
	return t
}

// append adds a record holding value and returns its offset. The record
// is never changed afterwards, so readers share it without copying.
func (t *topic) append(value []byte) uint64 {
	now := timestamppb.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	off := uint64(len(t.records))
	t.records = append(t.records, &logv1.Record{Value: value, Offset: off, Time: now})
	if t.wake != nil {
		close(t.wake)
		t.wake = nil
	}
	return off
}

// read returns the record at off and the topic's next offset; the record
// is nil if off is past the end.
func (t *topic) read(off uint64) (*logv1.Record, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := uint64(len(t.records))
	if off >= next {
		return nil, next
	}
	return t.records[off], next
}

// from returns the records from off to the end, or, when there is none,
// a channel closed by the next append.
func (t *topic) from(off uint64) ([]*logv1.Record, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if off < uint64(len(t.records)) {
		// Records below len are never written again: the caller may
		// read them after the lock is released, even if append grows
		// the slice meanwhile.
		return t.records[off:len(t.records):len(t.records)], nil
	}
	if t.wake == nil {
		t.wake = make(chan struct{})
	}
	return nil, t.wake
}

// service implements log.v1.Log on a memLog.
type service struct {
	logv1.UnimplementedLogServer
	log *memLog
}

var _ logv1.LogServer = (*service)(nil)

func (s *service) Produce(ctx context.Context, req *logv1.ProduceRequest) (*logv1.ProduceResponse, error) {
	if req.GetRecord() == nil {
		return nil, status.Error(codes.InvalidArgument, "record is required")
	}
	off := s.log.open(req.GetTopic()).append(req.GetRecord().GetValue())
	return &logv1.ProduceResponse{Offset: off}, nil
}

func (s *service) Consume(ctx context.Context, req *logv1.ConsumeRequest) (*logv1.ConsumeResponse, error) {
	t := s.log.get(req.GetTopic())
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "topic %q not found", req.GetTopic())
	}
	rec, next := t.read(req.GetOffset())
	if rec == nil {
		return nil, status.Errorf(codes.OutOfRange, "offset %d is past the end (next offset %d)", req.GetOffset(), next)
	}
	return &logv1.ConsumeResponse{Record: rec}, nil
}

// ProduceStream appends each record as it arrives and answers at once:
// with nothing to wait for, there is nothing to pipeline.
func (s *service) ProduceStream(stream logv1.Log_ProduceStreamServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the client half-closed: the call ends cleanly
			}
			return err
		}
		if req.GetRecord() == nil {
			return status.Error(codes.InvalidArgument, "record is required")
		}
		off := s.log.open(req.GetTopic()).append(req.GetRecord().GetValue())
		if err := stream.Send(&logv1.ProduceResponse{Offset: off}); err != nil {
			return err
		}
	}
}

// ConsumeStream sends the records from the requested offset on, then
// sleeps until an append wakes it, until the client cancels.
func (s *service) ConsumeStream(req *logv1.ConsumeRequest, stream logv1.Log_ConsumeStreamServer) error {
	t := s.log.get(req.GetTopic())
	if t == nil {
		return status.Errorf(codes.NotFound, "topic %q not found", req.GetTopic())
	}
	ctx := stream.Context()
	off := req.GetOffset()
	for {
		recs, wake := t.from(off)
		if len(recs) == 0 {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		for _, r := range recs {
			if err := stream.Send(&logv1.ConsumeResponse{Record: r}); err != nil {
				return err
			}
		}
		off += uint64(len(recs))
	}
}
