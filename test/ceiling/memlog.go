package main

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

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

// chunkSize is how many bytes of values a topic stores in one chunk; a
// larger value gets a chunk of its own.
const chunkSize = 1 << 20

// topic is one topic's records. Values are copied back to back into large
// chunks and indexed by offset without pointers, so that millions of
// records cost the garbage collector next to nothing: a ceiling should not
// pay for keeping what logd keeps on disk.
type topic struct {
	mu      sync.Mutex
	chunks  [][]byte // written up to len, never moved or rewritten
	records []record // a record's offset is its index
	// wake is closed by the next append; nil while no reader waits.
	wake chan struct{}
}

// record locates a value in its topic's chunks.
type record struct {
	chunk, pos, len int32
	time            int64 // Unix nanoseconds
}

// view is the records of a topic up to some offset. It stays valid as
// appends go on, because they never change what it covers.
type view struct {
	chunks  [][]byte
	records []record
}

// proto returns the record at off (< len(v.records)) as the API gives it;
// its value shares the topic's memory and must not be changed.
func (v view) proto(off uint64) *logv1.Record {
	r := v.records[off]
	value := v.chunks[r.chunk][r.pos : r.pos+r.len : r.pos+r.len]
	return &logv1.Record{Value: value, Offset: off, Time: timestamppb.New(time.Unix(0, r.time))}
}

// append adds a record holding a copy of value and returns its offset.
func (t *topic) append(value []byte) uint64 {
	now := time.Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.chunks)
	if n == 0 || len(t.chunks[n-1])+len(value) > cap(t.chunks[n-1]) {
		t.chunks = append(t.chunks, make([]byte, 0, max(chunkSize, len(value))))
		n++
	}
	c := t.chunks[n-1]
	t.chunks[n-1] = append(c, value...)
	off := uint64(len(t.records))
	t.records = append(t.records, record{chunk: int32(n - 1), pos: int32(len(c)), len: int32(len(value)), time: now})
	if t.wake != nil {
		close(t.wake)
		t.wake = nil
	}
	return off
}

// view returns the topic's records as they are now.
func (t *topic) view() view {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.viewLocked()
}

// viewLocked is view; t.mu is held.
func (t *topic) viewLocked() view {
	return view{chunks: t.chunks[:len(t.chunks):len(t.chunks)], records: t.records[:len(t.records):len(t.records)]}
}

// from returns the records up to the end, if there is one from off on,
// or else a channel closed by the next append.
func (t *topic) from(off uint64) (view, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if off < uint64(len(t.records)) {
		return t.viewLocked(), nil
	}
	if t.wake == nil {
		t.wake = make(chan struct{})
	}
	return view{}, t.wake
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
	v := t.view()
	if next := uint64(len(v.records)); req.GetOffset() >= next {
		return nil, status.Errorf(codes.OutOfRange, "offset %d is past the end (next offset %d)", req.GetOffset(), next)
	}
	return &logv1.ConsumeResponse{Record: v.proto(req.GetOffset())}, nil
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
		v, wake := t.from(off)
		if wake != nil {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		for ; off < uint64(len(v.records)); off++ {
			if err := stream.Send(&logv1.ConsumeResponse{Record: v.proto(off)}); err != nil {
				return err
			}
		}
	}
}
