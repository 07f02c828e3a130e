package server

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
)

// Alice may use alice/* before the reload; after it, not alice/secret.
const (
	policyBefore = `p, role:admin, *, *, allow
g, root, role:admin
p, alice, alice/*, *, allow
`
	denySecret  = "p, alice, alice/secret, *, deny"
	policyAfter = policyBefore + denySecret + "\n"
)

// policyFile is an Authorizer loaded from a policy file that the test
// rewrites and reloads.
type policyFile struct {
	*auth.Authorizer
	path string
}

func loadPolicy(t testing.TB, text string) *policyFile {
	t.Helper()
	p := &policyFile{path: filepath.Join(t.TempDir(), "policy.csv")}
	if err := os.WriteFile(p.path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.Load("", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.Authorizer = a
	return p
}

func (p *policyFile) reload(t testing.TB, text string) {
	t.Helper()
	if err := os.WriteFile(p.path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
}

// unnotified hides reloads from the streams' watchers (its channel never
// closes), so that only the check before each message sent can notice.
type unnotified struct{ *auth.Authorizer }

func (u unnotified) Generation() (uint64, <-chan struct{}) {
	gen, _ := u.Authorizer.Generation()
	return gen, nil
}

func sendRecord(t testing.TB, s logv1.Log_ProduceStreamClient, topic, value string) {
	t.Helper()
	if err := s.Send(&logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(value)}}); err != nil {
		t.Fatalf("send %q to %s: %v", value, topic, err)
	}
}

func recvOffset(t testing.TB, s logv1.Log_ProduceStreamClient, want uint64) {
	t.Helper()
	res, err := s.Recv()
	if err != nil || res.GetOffset() != want {
		t.Fatalf("got answer %v, %v; want offset %d", res, err, want)
	}
}

func recvRecord(t testing.TB, s logv1.Log_ConsumeStreamClient, value string, off uint64) {
	t.Helper()
	res, err := s.Recv()
	if err != nil {
		t.Fatalf("want %q at %d: %v", value, off, err)
	}
	if r := res.GetRecord(); string(r.GetValue()) != value || r.GetOffset() != off {
		t.Fatalf("got %q at %d, want %q at %d", r.GetValue(), r.GetOffset(), value, off)
	}
}

// TestReloadRevokesStreams opens alice's streams on a topic that a reload
// then denies her, and on one it still allows: the denied ones end with
// PermissionDenied, gRPC and HTTP, producing and following, and nothing
// more passes through them; the others go on. Followers waiting at the
// tail end at the reload itself, or, if they miss its notification, before
// they send the next record.
func TestReloadRevokesStreams(t *testing.T) {
	for _, notified := range []bool{true, false} {
		name := "notified"
		if !notified {
			name = "at the next record"
		}
		t.Run(name, func(t *testing.T) {
			pf := loadPolicy(t, policyBefore)
			core, audit := observer.New(zap.InfoLevel)
			as := startAPI(t, func(c *Config, _ *log.Config) {
				c.Authorizer = pf.Authorizer
				if !notified {
					c.Authorizer = unnotified{pf.Authorizer}
				}
				c.Audit = zap.New(core)
			})
			alice, root := client(t, as.testServer, "alice"), client(t, as.testServer, "root")
			web := httpClient(t, "", "alice")

			// Streams on both topics, each past its first record.
			streams := map[string]logv1.Log_ProduceStreamClient{}
			follows := map[string]logv1.Log_ConsumeStreamClient{}
			var err error
			for _, topic := range []string{"alice/secret", "alice/orders"} {
				if streams[topic], err = alice.ProduceStream(ctxT(t)); err != nil {
					t.Fatal(err)
				}
				sendRecord(t, streams[topic], topic, "0")
				recvOffset(t, streams[topic], 0)
				if follows[topic], err = alice.ConsumeStream(ctxT(t), &logv1.ConsumeRequest{Topic: topic}); err != nil {
					t.Fatal(err)
				}
				recvRecord(t, follows[topic], "0", 0)
			}
			secretWeb, _, cancel := openFollow(t, web, topicURL(as.url, "alice/secret"))
			defer cancel()
			wantRecord(t, nextLine(t, secretWeb).Record, "0", 0)
			ordersWeb, _, cancel2 := openFollow(t, web, topicURL(as.url, "alice/orders"))
			defer cancel2()
			wantRecord(t, nextLine(t, ordersWeb).Record, "0", 0)

			pf.reload(t, policyAfter)
			if !notified {
				// Give the followers a record to send.
				produce(t, root, "alice/secret", "after")
			}
			_, err = follows["alice/secret"].Recv()
			wantCode(t, err, codes.PermissionDenied)
			if ans := nextLine(t, secretWeb); ans.Record != nil || ans.Error == nil || ans.Error.Code != ReasonPermissionDenied {
				t.Fatalf("HTTP follower: got %+v, want the error %s and no record", ans, ReasonPermissionDenied)
			}
			if secretWeb.Scan() {
				t.Fatalf("HTTP follower: got %q after the error, want the end", secretWeb.Bytes())
			}
			sendRecord(t, streams["alice/secret"], "alice/secret", "denied")
			_, err = streams["alice/secret"].Recv()
			wantCode(t, err, codes.PermissionDenied)
			want := uint64(1) // alice's first record, and root's if any
			if !notified {
				want++
			}
			if n := nextOffset(t, as.topics, "alice/secret"); n != want {
				t.Fatalf("alice/secret has %d records, want %d: alice's record after the reload was appended", n, want)
			}

			// The topic both policies allow goes on, on every stream.
			sendRecord(t, streams["alice/orders"], "alice/orders", "1")
			recvOffset(t, streams["alice/orders"], 1)
			recvRecord(t, follows["alice/orders"], "1", 1)
			wantRecord(t, nextLine(t, ordersWeb).Record, "1", 1)

			// One audit entry per stream refused, naming the deny rule.
			denials := audit.FilterField(zap.String("rule", denySecret)).All()
			var consume, prod int
			for _, e := range denials {
				f := e.ContextMap()
				if f["principal"] != "alice" || f["topic"] != "alice/secret" || f["decision"] != "deny" {
					t.Errorf("audit entry %v", f)
				}
				switch f["action"] {
				case auth.Consume:
					consume++
				case auth.Produce:
					prod++
				}
			}
			if consume != 2 || prod != 1 || len(denials) != 3 {
				t.Fatalf("audit: %d consume and %d produce denials of %d, want 2 and 1 of 3: %v", consume, prod, len(denials), denials)
			}
		})
	}
}

// An HTTP follower revoked before it sent a record has sent no status
// yet: it gets a 403 answer.
func TestReloadRevokesHTTPFollowerBeforeItsFirstRecord(t *testing.T) {
	pf := loadPolicy(t, policyBefore)
	rec := newRecorder()
	as := startAPI(t, func(c *Config, _ *log.Config) {
		c.Authorizer = pf.Authorizer
		c.Observer = rec
	})
	produce(t, client(t, as.testServer, "alice"), "alice/secret", "0")
	web := httpClient(t, "", "alice")
	type answer struct {
		code int
		body []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := web.Get(topicURL(as.url, "alice/secret") + "?from=1&follow=true")
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		done <- answer{res.StatusCode, b, err}
	}()
	// Authorized and waiting at the tail.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, _, _, following, _ := rec.snapshot(); following["alice/secret"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower is not waiting at the tail after 10s")
		}
	}
	pf.reload(t, policyAfter)
	a := <-done
	var body errorBody
	if a.err != nil || json.Unmarshal(a.body, &body) != nil {
		t.Fatalf("got %v, %q; want a JSON error", a.err, a.body)
	}
	if a.code != http.StatusForbidden || body.Code != ReasonPermissionDenied {
		t.Fatalf("got %d %+v, want 403 %s", a.code, body, ReasonPermissionDenied)
	}
}

// nextOffset is the offset the next record of topic gets.
func nextOffset(t testing.TB, topics *log.Topics, topic string) uint64 {
	t.Helper()
	l, err := topics.Get(topic)
	if err != nil {
		t.Fatal(err)
	}
	_, next := l.Offsets()
	return next
}

// The per-message cost of a stream's authorization: a grant's check while
// the policy stays the same, against a full decision each time.
func BenchmarkStreamAuthorization(b *testing.B) {
	pf := loadPolicy(b, policyAfter)
	g := &guard{authz: pf.Authorizer, obs: nopObserver{}}
	ctx := withCallInfo(b.Context())
	gr, err := g.grant(ctx, "alice", "alice/orders", auth.Produce)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("grant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := gr.check(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decide", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.decide(ctx, "alice", "alice/orders", auth.Produce); err != nil {
				b.Fatal(err)
			}
		}
	})
}
