package server

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
)

func adminClient(t testing.TB, ts *testServer, cn string) logv1.AdminClient {
	t.Helper()
	return logv1.NewAdminClient(dial(t, ts.addr, certDir, cn))
}

// withAudit sends the server's audit log to an observer.
func withAudit(logs **observer.ObservedLogs) serverOpt {
	return func(c *Config, _ *log.Config) {
		core, l := observer.New(zapcore.InfoLevel)
		c.Audit = zap.New(core)
		*logs = l
	}
}

// auditEntry is the part of an audit entry the tests compare.
type auditEntry struct{ principal, action, topic, decision, rule string }

// takeAudit returns the audit entries written since the last call.
func takeAudit(logs *observer.ObservedLogs) []auditEntry {
	var out []auditEntry
	for _, e := range logs.TakeAll() {
		m := e.ContextMap()
		out = append(out, auditEntry{
			principal: fmt.Sprint(m["principal"]), action: fmt.Sprint(m["action"]), topic: fmt.Sprint(m["topic"]),
			decision: fmt.Sprint(m["decision"]), rule: fmt.Sprint(m["rule"]),
		})
	}
	return out
}

// wantAudit checks that the audit log got exactly one entry since the
// last look: an admin action of principal on topic, allowed or not, by
// rule.
func wantAudit(t testing.TB, logs *observer.ObservedLogs, principal, topic string, allowed bool, rule string) {
	t.Helper()
	decision := "allow"
	if !allowed {
		decision = "deny"
	}
	want := []auditEntry{{principal, "admin", topic, decision, rule}}
	if got := takeAudit(logs); !slices.Equal(got, want) {
		t.Errorf("audit entries %v, want %v", got, want)
	}
}

func topicNames(ds []*logv1.TopicDescription) []string {
	var names []string
	for _, d := range ds {
		names = append(names, d.GetName())
	}
	return names
}

// TestAdminMatrix checks DescribeTopic and DeleteTopic for every
// principal of the default policy on its own topic, another tenant's and
// an unknown one, ListTopics per principal, and the audit entry each
// call writes.
func TestAdminMatrix(t *testing.T) {
	var audit *observer.ObservedLogs
	ts := startServer(t, withAudit(&audit))
	root := client(t, ts, "root")
	existing := []string{"alice/a", "alice/b", "bob/a", "other"}
	for _, topic := range existing {
		produce(t, root, topic, "seed")
	}
	takeAudit(audit) // produces are not audited

	const (
		rootRule  = "p, role:admin, *, *, allow"
		aliceRule = "p, alice, alice/*, admin, allow"
		bobRule   = "p, bob, bob/*, admin, allow"
	)
	type call struct {
		cn, topic string
		want      codes.Code
		rule      string // of the audit entry
	}
	describes := []call{
		{"root", "other", codes.OK, rootRule},
		{"root", "alice/a", codes.OK, rootRule},
		{"root", "unknown", codes.NotFound, rootRule},
		{"alice", "alice/a", codes.OK, aliceRule},
		{"alice", "bob/a", codes.PermissionDenied, ""},
		{"alice", "alice/unknown", codes.NotFound, aliceRule},
		{"alice", "bob/unknown", codes.PermissionDenied, ""},
		{"alice", "other", codes.PermissionDenied, ""},
		{"bob", "bob/a", codes.OK, bobRule},
		{"bob", "alice/a", codes.PermissionDenied, ""},
		{"bob", "bob/unknown", codes.NotFound, bobRule},
		{"nobody", "alice/a", codes.PermissionDenied, ""},
		{"nobody", "other", codes.PermissionDenied, ""},
		{"nobody", "nobody/unknown", codes.PermissionDenied, ""},
	}
	for _, c := range describes {
		t.Run("describe/"+c.cn+"/"+c.topic, func(t *testing.T) {
			res, err := adminClient(t, ts, c.cn).DescribeTopic(ctxT(t), &logv1.DescribeTopicRequest{Topic: c.topic})
			st := wantCode(t, err, c.want)
			switch c.want {
			case codes.OK:
				if d := res.GetTopic(); d.GetName() != c.topic || d.GetRecords() != 1 || d.GetNextOffset() != 1 {
					t.Errorf("got %v, want %s with 1 record", d, c.topic)
				}
			case codes.PermissionDenied:
				if want := fmt.Sprintf("%q may not admin topic %q", c.cn, c.topic); !contains(st.Message(), want) {
					t.Errorf("message %q does not say %s", st.Message(), want)
				}
			case codes.NotFound:
				if info := errorInfo(t, st); info.Reason != ReasonTopicNotFound || info.Metadata["topic"] != c.topic {
					t.Errorf("got details %v, want reason %s and the topic", info, ReasonTopicNotFound)
				}
			}
			wantAudit(t, audit, c.cn, c.topic, c.want != codes.PermissionDenied, c.rule)
		})
	}
	// Describing never creates a topic.
	if names := ts.topics.Names(); !slices.Equal(names, existing) {
		t.Fatalf("topics after the describes: %v, want %v", names, existing)
	}

	lists := []struct {
		cn, prefix string
		want       []string
		rule       string
	}{
		{"root", "", existing, rootRule},
		{"root", "alice/", []string{"alice/a", "alice/b"}, rootRule},
		{"alice", "", []string{"alice/a", "alice/b"}, aliceRule},
		{"alice", "bob/", nil, ""},
		{"bob", "", []string{"bob/a"}, bobRule},
		{"nobody", "", nil, ""},
	}
	for _, c := range lists {
		t.Run("list/"+c.cn+"/"+c.prefix, func(t *testing.T) {
			res, err := adminClient(t, ts, c.cn).ListTopics(ctxT(t), &logv1.ListTopicsRequest{Prefix: c.prefix})
			if err != nil {
				t.Fatalf("ListTopics: %v", err)
			}
			if got := topicNames(res.GetTopics()); !slices.Equal(got, c.want) {
				t.Errorf("got topics %v, want %v", got, c.want)
			}
			wantAudit(t, audit, c.cn, c.prefix+"*", true, c.rule)
		})
	}

	// Bad names are InvalidArgument for everyone, before the ACL.
	for _, cn := range []string{"root", "nobody"} {
		for _, topic := range []string{"", "a//b", "../x", "a b"} {
			t.Run(fmt.Sprintf("invalid/%s/%q", cn, topic), func(t *testing.T) {
				a := adminClient(t, ts, cn)
				_, err := a.DescribeTopic(ctxT(t), &logv1.DescribeTopicRequest{Topic: topic})
				wantCode(t, err, codes.InvalidArgument)
				_, err = a.DeleteTopic(ctxT(t), &logv1.DeleteTopicRequest{Topic: topic})
				st := wantCode(t, err, codes.InvalidArgument)
				if !contains(st.Message(), "topic") {
					t.Errorf("message %q does not name the topic rule", st.Message())
				}
			})
		}
	}
	takeAudit(audit)

	// Deletes: the refused ones first, so that every topic still exists
	// for them.
	deletes := []call{
		{"alice", "bob/a", codes.PermissionDenied, ""},
		{"alice", "other", codes.PermissionDenied, ""},
		{"bob", "alice/a", codes.PermissionDenied, ""},
		{"nobody", "alice/a", codes.PermissionDenied, ""},
		{"nobody", "nobody/unknown", codes.PermissionDenied, ""},
		{"alice", "alice/unknown", codes.NotFound, aliceRule},
		{"bob", "bob/unknown", codes.NotFound, bobRule},
		{"root", "unknown", codes.NotFound, rootRule},
		{"alice", "alice/a", codes.OK, aliceRule},
		{"alice", "alice/a", codes.NotFound, aliceRule}, // gone
		{"bob", "bob/a", codes.OK, bobRule},
		{"root", "other", codes.OK, rootRule},
	}
	for _, c := range deletes {
		t.Run("delete/"+c.cn+"/"+c.topic, func(t *testing.T) {
			res, err := adminClient(t, ts, c.cn).DeleteTopic(ctxT(t), &logv1.DeleteTopicRequest{Topic: c.topic})
			wantCode(t, err, c.want)
			if c.want == codes.OK && (res.GetTopic().GetName() != c.topic || res.GetTopic().GetRecords() != 1) {
				t.Errorf("got %v, want the deleted topic with its 1 record", res.GetTopic())
			}
			wantAudit(t, audit, c.cn, c.topic, c.want != codes.PermissionDenied, c.rule)
		})
	}
	if names, want := ts.topics.Names(), []string{"alice/b"}; !slices.Equal(names, want) {
		t.Fatalf("topics after the deletes: %v, want %v", names, want)
	}
	// A deleted topic comes back, empty, with the next produce.
	if off := produce(t, client(t, ts, "alice"), "alice/a", "again"); off != 0 {
		t.Fatalf("first produce to the recreated topic got offset %d, want 0", off)
	}
}

// TestAdminDescribe checks what DescribeTopic says of a topic.
func TestAdminDescribe(t *testing.T) {
	ts := startServer(t, func(_ *Config, l *log.Config) {
		l.MaxStoreBytes = 4 << 10
		l.MaxRecordBytes = 1 << 10
		l.RetentionBytes = 1 << 20
		l.RetentionAge = 36 * time.Hour
	})
	c := client(t, ts, "alice")
	a := adminClient(t, ts, "alice")
	// A topic with no record yet (made as a first produce would).
	if _, err := ts.topics.Open("alice/empty"); err != nil {
		t.Fatal(err)
	}

	before := time.Now().Add(-time.Second)
	const n = 40
	for i := range n {
		produce(t, c, "alice/d", fmt.Sprintf("%0200d", i))
	}
	after := time.Now().Add(time.Second)
	res, err := a.DescribeTopic(ctxT(t), &logv1.DescribeTopicRequest{Topic: "alice/d"})
	if err != nil {
		t.Fatal(err)
	}
	d := res.GetTopic()
	st, _ := ts.topics.Get("alice/d")
	stats := st.Stats()
	switch {
	case d.GetName() != "alice/d", d.GetLowestOffset() != 0, d.HighestOffset == nil || d.GetHighestOffset() != n-1,
		d.GetNextOffset() != n, d.GetRecords() != n:
		t.Errorf("offsets: got %v, want 0..%d", d, n-1)
	case d.GetSegments() != uint32(stats.Segments) || d.GetSegments() < 2, d.GetSizeBytes() != uint64(stats.Bytes):
		t.Errorf("size: got %d segments, %d bytes; want %d, %d (more than one segment)", d.GetSegments(), d.GetSizeBytes(), stats.Segments, stats.Bytes)
	case d.GetRetention().GetBytes() != 1<<20, d.GetRetention().GetAge().AsDuration() != 36*time.Hour:
		t.Errorf("retention: got %v, want 1 MiB and 36h", d.GetRetention())
	case d.GetSyncPolicy() != "always", d.GetSegmentBytes() != 4<<10, d.GetMaxRecordBytes() != 1<<10:
		t.Errorf("settings: got sync %q, segment %d, max record %d", d.GetSyncPolicy(), d.GetSegmentBytes(), d.GetMaxRecordBytes())
	case d.GetFailure() != "", d.GetTailConsumers() != 0:
		t.Errorf("got failure %q and %d tail consumers, want none", d.GetFailure(), d.GetTailConsumers())
	}
	oldest, newest := d.GetOldestRecordTime().AsTime(), d.GetNewestRecordTime().AsTime()
	if oldest.Before(before) || newest.After(after) || newest.Before(oldest) {
		t.Errorf("record times %v .. %v, want within %v .. %v, oldest first", oldest, newest, before, after)
	}

	// An empty topic: no highest offset and no record times.
	res, err = a.DescribeTopic(ctxT(t), &logv1.DescribeTopicRequest{Topic: "alice/empty"})
	if err != nil {
		t.Fatal(err)
	}
	if d := res.GetTopic(); d.HighestOffset != nil || d.GetRecords() != 0 || d.GetNextOffset() != 0 ||
		d.GetOldestRecordTime() != nil || d.GetNewestRecordTime() != nil || d.GetSegments() != 1 {
		t.Errorf("got %v, want an empty topic: no highest offset, no record times, one segment", d)
	}
}

// TestAdminDeleteUnderLoad deletes a topic while a ConsumeStream follows
// it, a ProduceStream and unary producers write to it: the follower ends
// with NotFound (TOPIC_DELETED), producers see OK or that NotFound, the
// server keeps serving, and the producers' later records make a new
// topic from offset 0 whose every record reads back.
func TestAdminDeleteUnderLoad(t *testing.T) {
	ts := startServer(t)
	const topic = "alice/busy"
	c := client(t, ts, "alice")
	a := adminClient(t, ts, "alice")
	for i := range 10 {
		produce(t, c, topic, fmt.Sprint(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	follow, err := c.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	// The follower is at the tail once DescribeTopic counts it.
	for {
		res, err := a.DescribeTopic(ctxT(t), &logv1.DescribeTopicRequest{Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetTopic().GetTailConsumers() == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("DescribeTopic never counted the ConsumeStream")
		}
		time.Sleep(5 * time.Millisecond)
	}

	okDeleted := func(err error) bool {
		st, _ := status.FromError(err)
		if st.Code() != codes.NotFound {
			return false
		}
		info := errorInfo(t, st)
		return info.Reason == ReasonTopicDeleted && info.Metadata["topic"] == topic
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt() // before cancel, also when the test fails
	var produced atomic.Int64
	for i := range 3 {
		wg.Go(func() {
			pc := client(t, ts, "alice")
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := pc.Produce(ctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte("u")}})
				if err != nil && !okDeleted(err) {
					t.Errorf("unary producer %d: %v, want OK or NotFound (TOPIC_DELETED)", i, err)
					return
				}
				produced.Add(1)
			}
		})
	}
	wg.Go(func() {
		// One ProduceStream after another: a stream ends when the topic
		// is deleted under it.
		for {
			s, err := c.ProduceStream(ctx)
			if err != nil {
				t.Errorf("ProduceStream: %v", err)
				return
			}
			for {
				select {
				case <-stop:
					s.CloseSend()
					for {
						if _, err := s.Recv(); err != nil {
							if err != io.EOF && !okDeleted(err) {
								t.Errorf("ProduceStream at its end: %v", err)
							}
							return
						}
					}
				default:
				}
				if err := s.Send(&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte("s")}}); err != nil {
					_, err = s.Recv()
					if !okDeleted(err) {
						t.Errorf("ProduceStream: %v, want NotFound (TOPIC_DELETED)", err)
						return
					}
					break
				}
				if _, err := s.Recv(); err != nil {
					if !okDeleted(err) {
						t.Errorf("ProduceStream: %v, want NotFound (TOPIC_DELETED)", err)
						return
					}
					break
				}
			}
		}
	})

	// Let the producers run, then delete.
	for start := produced.Load(); produced.Load() < start+50; {
		time.Sleep(time.Millisecond)
	}
	res, err := a.DeleteTopic(ctxT(t), &logv1.DeleteTopicRequest{Topic: topic})
	if err != nil {
		t.Fatalf("DeleteTopic under load: %v", err)
	}
	if d := res.GetTopic(); d.GetRecords() < 10 || d.GetTailConsumers() != 1 {
		t.Errorf("DeleteTopic said %v, want at least the 10 first records and 1 tail consumer", d)
	}

	// The follower ends with NotFound; before that it saw good records.
	var seen uint64
	for {
		r, err := follow.Recv()
		if err != nil {
			if !okDeleted(err) {
				t.Fatalf("follower: got %v after %d records, want NotFound (TOPIC_DELETED)", err, seen)
			}
			break
		}
		if r.GetRecord().GetOffset() != seen {
			t.Fatalf("follower got offset %d, want %d", r.GetRecord().GetOffset(), seen)
		}
		seen++
	}
	if seen < 10 {
		t.Errorf("follower saw %d records before the delete, want at least 10", seen)
	}

	for start := produced.Load(); produced.Load() < start+50; {
		time.Sleep(time.Millisecond)
	}
	halt()

	// The recreated topic starts at 0 and every record reads back.
	d, err := a.DescribeTopic(ctxT(t), &logv1.DescribeTopicRequest{Topic: topic})
	if err != nil {
		t.Fatalf("DescribeTopic of the recreated topic: %v", err)
	}
	if lo, next := d.GetTopic().GetLowestOffset(), d.GetTopic().GetNextOffset(); lo != 0 || next == 0 {
		t.Fatalf("recreated topic holds [%d, %d), want [0, n) with n > 0", lo, next)
	}
	s, err := c.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	for off := range d.GetTopic().GetNextOffset() {
		r, err := s.Recv()
		if err != nil || r.GetRecord().GetOffset() != off {
			t.Fatalf("recreated topic at %d: got %v, %v", off, r, err)
		}
		if v := string(r.GetRecord().GetValue()); v != "u" && v != "s" {
			t.Fatalf("recreated topic at %d: value %q, want one the producers wrote after the delete", off, v)
		}
	}
}
