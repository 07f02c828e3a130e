package server

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
)

// adminService implements logv1.AdminServer. The guard authorizes
// DescribeTopic and DeleteTopic (action admin on the topic, see
// methodActions) before they run; ListTopics shows what guard.visible
// lets it.
type adminService struct {
	logv1.UnimplementedAdminServer
	topics Topics
	guard  *guard
	tails  *tailCounter
}

var _ logv1.AdminServer = (*adminService)(nil)

func (a *adminService) ListTopics(ctx context.Context, req *logv1.ListTopicsRequest) (*logv1.ListTopicsResponse, error) {
	principal, ok := Principal(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no principal")
	}
	names, err := a.guard.visible(ctx, principal, req.GetPrefix(), listActions[logv1.Admin_ListTopics_FullMethodName], a.topics.Names())
	if err != nil {
		return nil, err
	}
	res := &logv1.ListTopicsResponse{Topics: make([]*logv1.TopicDescription, 0, len(names))}
	for _, name := range names {
		l, err := a.topics.Get(name)
		if err != nil {
			continue // deleted since Names
		}
		res.Topics = append(res.Topics, a.describe(name, l))
	}
	return res, nil
}

func (a *adminService) DescribeTopic(ctx context.Context, req *logv1.DescribeTopicRequest) (*logv1.DescribeTopicResponse, error) {
	topic := req.GetTopic()
	l, err := a.topics.Get(topic)
	if err != nil {
		return nil, toStatus(err, topic, nil)
	}
	return &logv1.DescribeTopicResponse{Topic: a.describe(topic, l)}, nil
}

func (a *adminService) DeleteTopic(ctx context.Context, req *logv1.DeleteTopicRequest) (*logv1.DeleteTopicResponse, error) {
	topic := req.GetTopic()
	l, err := a.topics.Get(topic)
	if err != nil {
		return nil, toStatus(err, topic, nil)
	}
	tails := a.tails.count(topic)
	st, err := a.topics.Delete(topic)
	if err != nil {
		return nil, toStatus(err, topic, nil)
	}
	d := description(topic, st, l.Config())
	d.TailConsumers = tails
	return &logv1.DeleteTopicResponse{Topic: d}, nil
}

// describe returns what DescribeTopic tells of topic's log l.
func (a *adminService) describe(topic string, l *log.Log) *logv1.TopicDescription {
	st := l.Stats()
	d := description(topic, st, l.Config())
	d.TailConsumers = a.tails.count(topic)
	if st.Next > st.Lowest {
		// Retention may remove the oldest record meanwhile: then the time
		// is left out.
		if r, err := l.Read(st.Lowest); err == nil {
			d.OldestRecordTime = timestamppb.New(r.Time)
		}
		if r, err := l.Read(st.Next - 1); err == nil {
			d.NewestRecordTime = timestamppb.New(r.Time)
		}
	}
	if err := l.Failure(); err != nil {
		d.Failure = err.Error()
	}
	return d
}

// description is a topic's description from its stats and config.
func description(topic string, st log.Stats, cfg log.Config) *logv1.TopicDescription {
	d := &logv1.TopicDescription{
		Name:         topic,
		LowestOffset: st.Lowest,
		NextOffset:   st.Next,
		Records:      st.Next - st.Lowest,
		SizeBytes:    uint64(max(st.Bytes, 0)),
		Segments:     uint32(st.Segments),
		Retention: &logv1.Retention{
			Bytes: uint64(max(cfg.RetentionBytes, 0)),
			Age:   durationpb.New(max(cfg.RetentionAge, 0)),
		},
		SyncPolicy:     cfg.Sync.String(),
		SegmentBytes:   uint64(cfg.MaxStoreBytes),
		MaxRecordBytes: uint64(cfg.MaxRecordBytes),
	}
	if st.Next > st.Lowest {
		h := st.Next - 1
		d.HighestOffset = &h
	}
	return d
}

// tailCounter is an Observer that also counts the open tail followers of
// each topic (ConsumeStreams and HTTP follows), for DescribeTopic, and
// passes every report on.
type tailCounter struct {
	Observer
	mu sync.Mutex
	n  map[string]uint32 // guarded by mu; no zero entries
}

func newTailCounter(o Observer) *tailCounter {
	return &tailCounter{Observer: o, n: map[string]uint32{}}
}

func (c *tailCounter) Following(topic string, delta int) {
	c.mu.Lock()
	if n := int64(c.n[topic]) + int64(delta); n > 0 {
		c.n[topic] = uint32(n)
	} else {
		delete(c.n, topic)
	}
	c.mu.Unlock()
	c.Observer.Following(topic, delta)
}

// count returns the open tail followers of topic.
func (c *tailCounter) count(topic string) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[topic]
}
