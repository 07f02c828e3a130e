package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/log/faultfs"
)

// Storage faults, injected with faultfs under the logs of a server that
// clients reach over mutual TLS (gRPC and the HTTP API): the status each
// fault gets, that every acknowledged record stays readable, and that
// appends go on once the fault is gone (after a failed fsync: once logd
// restarts). Helpers carry the prefix "storage".

// storageEnv is a server whose logs live in dir on a faultfs.FS, with the
// records it acknowledged.
type storageEnv struct {
	dir  string
	ffs  *faultfs.FS
	opts []serverOpt
	api  *apiServer

	mu    sync.Mutex
	acked map[string]map[uint64]string // topic → offset → value; guarded by mu
}

// startStorage starts a server with sync policy, its logs on a fresh
// faultfs.FS, records of at most 1 KiB and segments of three, changed by
// edit.
func startStorage(t *testing.T, policy log.SyncPolicy, edit func(*log.Config)) *storageEnv {
	t.Helper()
	e := &storageEnv{dir: t.TempDir(), ffs: faultfs.New(nil), acked: map[string]map[uint64]string{}}
	e.opts = []serverOpt{func(_ *Config, l *log.Config) {
		l.Dir = e.dir
		l.FS = e.ffs
		l.Sync = policy
		l.MaxRecordBytes = 1 << 10
		l.MaxStoreBytes = 3 * (24 + 1<<10)
		if edit != nil {
			edit(l)
		}
	}}
	e.api = startAPI(t, e.opts...)
	return e
}

// restart shuts the server down, closes its logs (a restart of logd),
// and starts a new one on the same data. With powerLoss, the data not
// fsynced is lost in between (see faultfs.FS.DropUnsynced).
func (e *storageEnv) restart(t *testing.T, powerLoss bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.api.srv.Shutdown(ctx)
	if err := e.api.topics.Close(); err != nil {
		t.Logf("close topics: %v", err)
	}
	if powerLoss {
		if err := e.ffs.DropUnsynced(); err != nil {
			t.Fatal(err)
		}
	}
	e.api = startAPI(t, e.opts...)
}

func (e *storageEnv) client(t *testing.T, cn string) logv1.LogClient {
	t.Helper()
	return client(t, e.api.testServer, cn)
}

// produce produces value to topic and records it if acknowledged.
func (e *storageEnv) produce(c logv1.LogClient, topic, value string) (uint64, error) {
	res, err := c.Produce(context.Background(), &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(value)}})
	if err != nil {
		return 0, err
	}
	e.record(topic, res.GetOffset(), value)
	return res.GetOffset(), nil
}

func (e *storageEnv) record(topic string, off uint64, value string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.acked[topic] == nil {
		e.acked[topic] = map[uint64]string{}
	}
	e.acked[topic][off] = value
}

// mustProduce produces value to topic, which must be acknowledged at
// offset want.
func (e *storageEnv) mustProduce(t *testing.T, c logv1.LogClient, topic, value string, want uint64) {
	t.Helper()
	if off, err := e.produce(c, topic, value); err != nil || off != want {
		t.Fatalf("Produce %q to %q = (%d, %v), want (%d, nil)", value, topic, off, err, want)
	}
}

// httpProduce produces value to topic over the HTTP API as cn and
// returns the status code and the answer.
func (e *storageEnv) httpProduce(t *testing.T, cn, topic, value string) (int, apiAnswer, errorBody) {
	t.Helper()
	code, b := call(t, httpClient(t, "", cn), "POST", topicURL(e.api.url, topic), recordBody(value))
	var ans apiAnswer
	var fail errorBody
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &ans); err != nil || ans.Offset == nil {
			t.Fatalf("HTTP produce: answer %q: %v", b, err)
		}
		e.record(topic, *ans.Offset, value)
	} else if err := json.Unmarshal(b, &fail); err != nil {
		t.Fatalf("HTTP produce: error answer %q: %v", b, err)
	}
	return code, ans, fail
}

// describe returns topic's description, asked of the Admin API by root.
func (e *storageEnv) describe(t *testing.T, topic string) *logv1.TopicDescription {
	t.Helper()
	res, err := adminClient(t, e.api.testServer, "root").DescribeTopic(ctxT(t), &logv1.DescribeTopicRequest{Topic: topic})
	if err != nil {
		t.Fatalf("DescribeTopic(%q): %v", topic, err)
	}
	return res.GetTopic()
}

// check reads topic back as root both ways: Consume of every
// acknowledged record, and a ConsumeStream from the lowest offset to the
// next, whose offsets must be contiguous and agree. It returns the next
// offset.
func (e *storageEnv) check(t *testing.T, topic string) uint64 {
	t.Helper()
	d := e.describe(t, topic)
	c := e.client(t, "root")
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := c.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic, Offset: d.GetLowestOffset()})
	if err != nil {
		t.Fatal(err)
	}
	streamed := map[uint64]string{}
	for want := d.GetLowestOffset(); want < d.GetNextOffset(); want++ {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("ConsumeStream at offset %d: %v", want, err)
		}
		if got := res.GetRecord().GetOffset(); got != want {
			t.Fatalf("ConsumeStream sent offset %d, want %d", got, want)
		}
		streamed[want] = string(res.GetRecord().GetValue())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for off, v := range e.acked[topic] {
		res, err := c.Consume(ctxT(t), &logv1.ConsumeRequest{Topic: topic, Offset: off})
		if err != nil {
			t.Fatalf("Consume(%q, %d) of an acknowledged record: %v", topic, off, err)
		}
		if got := string(res.GetRecord().GetValue()); got != v || streamed[off] != v {
			t.Fatalf("offset %d: Consume %q, ConsumeStream %q, want the acknowledged %q", off, got, streamed[off], v)
		}
	}
	return d.GetNextOffset()
}

// storageWantStatus checks that err is a status with code, an ErrorInfo
// of reason naming topic, and a message holding text.
func storageWantStatus(t *testing.T, err error, code codes.Code, reason, topic, text string) {
	t.Helper()
	st := wantCode(t, err, code)
	info := errorInfo(t, st)
	if info.GetReason() != reason || info.GetMetadata()["topic"] != topic {
		t.Fatalf("got ErrorInfo %v, want reason %s, topic %q", info, reason, topic)
	}
	if !strings.Contains(st.Message(), text) {
		t.Fatalf("message %q does not say %q", st.Message(), text)
	}
}

// TestStorageWriteFaults fails store writes, leaving part of a frame in
// the file: a full disk is ResourceExhausted (DISK_FULL; HTTP 507), an
// I/O error Unavailable (IO_ERROR; HTTP 503), for Produce, ProduceStream
// and the HTTP API. The log does not fail (DescribeTopic shows no
// failure), reads go on, and once the fault is gone produces go on at the
// next offset, also after a restart.
func TestStorageWriteFaults(t *testing.T) {
	cases := []struct {
		name     string
		errno    syscall.Errno
		code     codes.Code
		reason   string
		httpCode int
	}{
		{"disk full", syscall.ENOSPC, codes.ResourceExhausted, ReasonDiskFull, http.StatusInsufficientStorage},
		{"I/O error", syscall.EIO, codes.Unavailable, ReasonIOError, http.StatusServiceUnavailable},
	}
	const topic = "alice/orders"
	for _, policy := range []log.SyncPolicy{log.SyncAlways, log.SyncNone} {
		for _, tc := range cases {
			t.Run(policy.String()+"/"+tc.name, func(t *testing.T) {
				e := startStorage(t, policy, nil)
				alice := e.client(t, "alice")
				for i := range 4 {
					e.mustProduce(t, alice, topic, fmt.Sprint("before ", i), uint64(i))
				}
				e.ffs.Add(faultfs.Rule{Op: faultfs.Write, Suffix: ".store", Err: tc.errno, Short: -1})
				text := tc.errno.Error()

				_, err := e.produce(alice, topic, "refused")
				storageWantStatus(t, err, tc.code, tc.reason, topic, text)

				stream, err := alice.ProduceStream(ctxT(t))
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte("refused")}}); err != nil {
					t.Fatal(err)
				}
				_, err = stream.Recv()
				storageWantStatus(t, err, tc.code, tc.reason, topic, text)

				code, _, body := e.httpProduce(t, "alice", topic, "refused")
				if code != tc.httpCode || body.Code != tc.reason || !strings.Contains(body.Message, text) {
					t.Fatalf("HTTP produce: got %d %+v, want %d %s", code, body, tc.httpCode, tc.reason)
				}
				if f := e.describe(t, topic).GetFailure(); f != "" {
					t.Fatalf("DescribeTopic failure = %q after a write fault, want none", f)
				}
				if got := e.check(t, topic); got != 4 {
					t.Fatalf("next offset = %d with the fault in place, want 4", got)
				}

				e.ffs.Heal()
				e.mustProduce(t, alice, topic, "after 0", 4)
				if code, ans, body := e.httpProduce(t, "alice", topic, "after 1"); code != http.StatusOK || *ans.Offset != 5 {
					t.Fatalf("HTTP produce once the fault is gone: got %d %+v %+v, want offset 5", code, ans, body)
				}
				e.restart(t, false)
				if got := e.check(t, topic); got != 6 {
					t.Fatalf("next offset after restart = %d, want 6", got)
				}
				e.mustProduce(t, e.client(t, "alice"), topic, "after restart", 6)
			})
		}
	}
}

// TestStorageDiskFullAtRollOver fills the disk under concurrent producers
// of several topics, in tiny segments, so that it fills at any place: a
// store, the index written at a roll-over, the next segment's store.
// Every call either is acknowledged or fails with
// ResourceExhausted (DISK_FULL), never FailedPrecondition: no log fails.
// Once space returns, every producer goes on; after a restart (with
// SyncAlways, a power loss) every acknowledged record is there.
func TestStorageDiskFullAtRollOver(t *testing.T) {
	const producers = 6
	for _, policy := range []log.SyncPolicy{log.SyncAlways, log.SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			e := startStorage(t, policy, func(l *log.Config) {
				l.MaxRecordBytes = 100
				l.MaxStoreBytes = 3 * (24 + 100)
			})
			e.ffs.Fill(6000)
			c := e.client(t, "root")
			topic := func(p int) string { return fmt.Sprint("t", p%3) }
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					full := 0
					for i := 0; full < 3; i++ {
						if i > 500 {
							t.Errorf("producer %d: the disk never filled", p)
							return
						}
						_, err := e.produce(c, topic(p), fmt.Sprintf("p%d-%d-%s", p, i, strings.Repeat("x", i%60)))
						if err == nil {
							continue
						}
						if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "no space left") {
							t.Errorf("producer %d: got %v, want ResourceExhausted (disk full)", p, err)
							return
						}
						full++
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			e.ffs.Heal()
			for p := range producers {
				wg.Go(func() {
					for i := range 4 {
						if _, err := e.produce(c, topic(p), fmt.Sprintf("p%d-after-%d", p, i)); err != nil {
							t.Errorf("producer %d once space returned: %v", p, err)
						}
					}
				})
			}
			wg.Wait()
			next := map[string]uint64{}
			for p := range 3 {
				if f := e.describe(t, topic(p)).GetFailure(); f != "" {
					t.Fatalf("topic %s failed: %s", topic(p), f)
				}
				next[topic(p)] = e.check(t, topic(p))
			}
			e.restart(t, policy == log.SyncAlways)
			for p := range 3 {
				if got := e.check(t, topic(p)); got != next[topic(p)] {
					t.Fatalf("topic %s: next offset %d after restart, want %d", topic(p), got, next[topic(p)])
				}
			}
		})
	}
}

// TestStorageFsyncFails fails an fsync of a topic's store under
// concurrent producers: every producer waiting on it, and every produce
// after it, fails with FailedPrecondition (LOG_FAILED; HTTP 503), even
// once fsyncs pass again; the records stay readable; DescribeTopic shows
// the failure; other topics and the health service are unaffected (see
// the README: one topic's failure does not make logd unready). After a
// restart (with SyncAlways, after a power loss too) the topic holds every
// acknowledged record and takes produces at the next offset.
func TestStorageFsyncFails(t *testing.T) {
	const (
		topic     = "alice/orders"
		producers = 8
	)
	for _, tc := range []struct {
		policy log.SyncPolicy
		errno  syscall.Errno
	}{
		{log.SyncAlways, syscall.EIO},
		// Where fsync reports a full disk (thin provisioning, NFS) the
		// data may be lost all the same: the log fails, not DISK_FULL.
		{log.SyncAlways, syscall.ENOSPC},
		// With SyncNone the fsync at a roll-over fails.
		{log.SyncNone, syscall.EIO},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.policy, tc.errno), func(t *testing.T) {
			e := startStorage(t, tc.policy, nil)
			alice := e.client(t, "alice")
			for i := range 2 {
				e.mustProduce(t, alice, topic, fmt.Sprint("before ", i), uint64(i))
			}
			// Hold the failing fsync until the producers are waiting.
			held, release := make(chan struct{}), make(chan struct{})
			e.ffs.Add(faultfs.Rule{Op: faultfs.Sync, Suffix: ".store", Err: tc.errno, Count: 1, Before: func(faultfs.Op, string) {
				close(held)
				<-release
			}})
			var wg sync.WaitGroup
			errs := make(chan error, producers)
			for p := range producers {
				wg.Go(func() {
					for i := 0; ; i++ {
						if _, err := e.produce(alice, topic, fmt.Sprintf("p%d-%d", p, i)); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			select {
			case <-held:
			case <-time.After(10 * time.Second):
				close(release)
				t.Fatal("no fsync in 10s")
			}
			time.Sleep(20 * time.Millisecond) // let the producers queue up
			close(release)
			wg.Wait()
			close(errs)
			for err := range errs {
				storageWantStatus(t, err, codes.FailedPrecondition, ReasonLogFailed, topic, "restart")
			}

			_, err := e.produce(alice, topic, "refused")
			storageWantStatus(t, err, codes.FailedPrecondition, ReasonLogFailed, topic, tc.errno.Error())
			code, _, body := e.httpProduce(t, "alice", topic, "refused")
			if code != http.StatusServiceUnavailable || body.Code != ReasonLogFailed {
				t.Fatalf("HTTP produce to the failed topic: got %d %+v, want 503 %s", code, body, ReasonLogFailed)
			}
			if f := e.describe(t, topic).GetFailure(); !strings.Contains(f, tc.errno.Error()) {
				t.Fatalf("DescribeTopic failure = %q, want the fsync error", f)
			}
			next := e.check(t, topic)
			e.mustProduce(t, alice, "alice/other", "another topic", 0)
			h := healthpb.NewHealthClient(dial(t, e.api.addr, certDir, "nobody"))
			if res, err := h.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: logv1.Log_ServiceDesc.ServiceName}); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health = %v, %v; want SERVING", res, err)
			}

			e.restart(t, tc.policy == log.SyncAlways)
			if f := e.describe(t, topic).GetFailure(); f != "" {
				t.Fatalf("DescribeTopic failure = %q after restart, want none", f)
			}
			got := e.check(t, topic)
			if tc.policy == log.SyncAlways && got != next {
				// The failed fsync's records were never readable, and a
				// power loss took them.
				t.Fatalf("next offset after restart = %d, want %d", got, next)
			}
			e.mustProduce(t, e.client(t, "alice"), topic, "after restart", got)
		})
	}
}

// TestStorageErrorStatus checks the status of each storage error, as the
// log wraps them.
func TestStorageErrorStatus(t *testing.T) {
	path := func(errno syscall.Errno) error {
		return fmt.Errorf("log: append: write /d/t/00000000000000000000.store: %w", errno)
	}
	failed := func(errno syscall.Errno) error {
		return fmt.Errorf("%w: fsync: fdatasync /d/t/00000000000000000000.store: %w", log.ErrFailed, errno)
	}
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"disk full", path(syscall.ENOSPC), codes.ResourceExhausted, ReasonDiskFull},
		{"quota of the file system", path(syscall.EDQUOT), codes.ResourceExhausted, ReasonDiskFull},
		{"I/O error", path(syscall.EIO), codes.Unavailable, ReasonIOError},
		{"read-only file system", path(syscall.EROFS), codes.Unavailable, ReasonIOError},
		{"failed fsync", failed(syscall.EIO), codes.FailedPrecondition, ReasonLogFailed},
		{"failed fsync on a full disk", failed(syscall.ENOSPC), codes.FailedPrecondition, ReasonLogFailed},
		{"other errno", path(syscall.EACCES), codes.Internal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(toStatus(tt.err, "t", nil))
			if st.Code() != tt.code {
				t.Fatalf("got %v (%s), want %v", st.Code(), st.Message(), tt.code)
			}
			var reason string
			for _, d := range st.Details() {
				if info, ok := d.(interface{ GetReason() string }); ok {
					reason = info.GetReason()
				}
			}
			if reason != tt.reason {
				t.Fatalf("got reason %q, want %q", reason, tt.reason)
			}
			if !strings.Contains(st.Message(), tt.err.Error()) {
				t.Fatalf("message %q does not hold the error %q", st.Message(), tt.err)
			}
		})
	}
}
