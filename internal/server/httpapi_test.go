package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/pki"
	"github.com/logd/logd/internal/tlsconfig"
)

// apiServer is a Server with its JSON API served over TLS on 127.0.0.1.
type apiServer struct {
	*testServer
	url string // https://127.0.0.1:port
}

// startAPI starts a Server (see startServer) and serves its HTTPHandler
// with the same mutual-TLS config, as logd does. Both stop when the test
// ends.
func startAPI(t testing.TB, opts ...serverOpt) *apiServer {
	t.Helper()
	var tlsCfg *tls.Config
	opts = append(opts, func(c *Config, _ *log.Config) { tlsCfg = c.TLS })
	ts := startServer(t, opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler:           ts.srv.HTTPHandler(),
		TLSConfig:         tlsCfg.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- hs.ServeTLS(lis, "", "") }()
	// Registered after startServer's cleanup, so it runs before it.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("HTTP API shutdown: %v", err)
			hs.Close()
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: got %v, want http.ErrServerClosed", err)
		}
	})
	return &apiServer{testServer: ts, url: "https://" + lis.Addr().String()}
}

// httpClient is an HTTPS client presenting the certificate of cn (from
// dir; "" is certDir), or none if cn is "".
func httpClient(t testing.TB, dir, cn string) *http.Client {
	t.Helper()
	if dir == "" {
		dir = certDir
	}
	certCN := cn
	if certCN == "" {
		certCN = "root"
	}
	cert, key := pki.ClientFiles(certCN)
	tlsCfg, err := tlsconfig.Client(tlsconfig.Files{
		Cert: filepath.Join(dir, cert),
		Key:  filepath.Join(dir, key),
		CA:   filepath.Join(certDir, pki.CAFile),
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if cn == "" {
		tlsCfg.Certificates = nil
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// call sends a request and returns the status code and body.
func call(t testing.TB, c *http.Client, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return res.StatusCode, b
}

// callJSON sends a request, checks the status code and decodes the JSON
// answer into v (if not nil).
func callJSON(t testing.TB, c *http.Client, method, url, body string, want int, v any) {
	t.Helper()
	code, b := call(t, c, method, url, body)
	if code != want {
		t.Fatalf("%s %s: got status %d (%s), want %d", method, url, code, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: answer %q: %v", method, url, b, err)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func recordBody(value string) string {
	return fmt.Sprintf(`{"record":{"value":%q}}`, b64(value))
}

type apiRecord struct {
	Value  []byte     `json:"value"`
	Offset *uint64    `json:"offset"`
	Time   *time.Time `json:"time"`
}

type apiAnswer struct {
	Offset  *uint64    `json:"offset"`
	Offsets []uint64   `json:"offsets"`
	Record  *apiRecord `json:"record"`
	Error   *errorBody `json:"error"`
}

// wantRecord checks a record of an answer.
func wantRecord(t testing.TB, r *apiRecord, value string, off uint64) {
	t.Helper()
	if r == nil || r.Offset == nil {
		t.Fatalf("got record %+v, want %q at %d", r, value, off)
	}
	if string(r.Value) != value || *r.Offset != off {
		t.Fatalf("got %q at %d, want %q at %d", r.Value, *r.Offset, value, off)
	}
	if r.Time == nil || r.Time.IsZero() || r.Time.After(time.Now()) || time.Since(*r.Time) > time.Minute {
		t.Fatalf("got record time %v, want the append time", r.Time)
	}
}

func topicURL(base, topic string) string {
	return base + "/v1/topics/" + strings.ReplaceAll(topic, "/", "%2F") + "/records"
}

func TestHTTPBookShapes(t *testing.T) {
	as := startAPI(t)
	root := httpClient(t, "", "root")
	// The book's values: "Let's Go #1\n" and so on.
	values := []string{"TGV0J3MgR28gIzEK", "TGV0J3MgR28gIzIK", "TGV0J3MgR28gIzMK"}
	for i, v := range values {
		var raw map[string]json.RawMessage
		callJSON(t, root, "POST", as.url, fmt.Sprintf(`{"record": {"value": %q}}`, v), http.StatusOK, &raw)
		if got, want := string(raw["offset"]), fmt.Sprint(i); got != want || len(raw) != 1 {
			t.Fatalf("POST /: got %v, want {\"offset\":%s}", raw, want)
		}
	}
	for i := range values {
		var ans apiAnswer
		callJSON(t, root, "GET", as.url, fmt.Sprintf(`{"offset": %d}`, i), http.StatusOK, &ans)
		wantRecord(t, ans.Record, fmt.Sprintf("Let's Go #%d\n", i+1), uint64(i))
	}
	// The book's shapes use the default topic, the same one as gRPC's.
	res, err := client(t, as.testServer, "root").Consume(ctxT(t), &logv1.ConsumeRequest{Topic: log.DefaultTopic, Offset: 2})
	if err != nil || string(res.GetRecord().GetValue()) != "Let's Go #3\n" {
		t.Fatalf("gRPC consume of the default topic: got %v, %v; want \"Let's Go #3\\n\"", res, err)
	}
	// A path with a trailing part is not the book's "/".
	if code, b := call(t, root, "POST", as.url+"/x", recordBody("x")); code != http.StatusNotFound {
		t.Fatalf("POST /x: got %d (%s), want 404", code, b)
	}
}

func TestHTTPTopicRecords(t *testing.T) {
	as := startAPI(t)
	tests := []struct {
		cn, topic string
	}{
		{"alice", "alice/orders"},
		{"alice", "alice/a/b/c"},
		{"bob", "bob/x"},
		{"root", "plain"},
		{"root", "alice/orders2"},
	}
	for _, tt := range tests {
		t.Run(tt.cn+"/"+tt.topic, func(t *testing.T) {
			c := httpClient(t, "", tt.cn)
			url := topicURL(as.url, tt.topic)
			var one apiAnswer
			callJSON(t, c, "POST", url, recordBody("r0"), http.StatusOK, &one)
			if one.Offset == nil || *one.Offset != 0 || one.Offsets != nil {
				t.Fatalf("single produce: got %+v, want offset 0 and no offsets", one)
			}
			var batch apiAnswer
			callJSON(t, c, "POST", url, fmt.Sprintf(`{"records":[{"value":%q},{"value":%q},{"value":%q}]}`, b64("r1"), b64("r2"), b64("r3")), http.StatusOK, &batch)
			if batch.Offset == nil || *batch.Offset != 1 || fmt.Sprint(batch.Offsets) != "[1 2 3]" {
				t.Fatalf("batch produce: got offset %v offsets %v, want 1 and [1 2 3]", batch.Offset, batch.Offsets)
			}
			for i := range 4 {
				var ans apiAnswer
				callJSON(t, c, "GET", fmt.Sprintf("%s/%d", url, i), "", http.StatusOK, &ans)
				wantRecord(t, ans.Record, fmt.Sprint("r", i), uint64(i))
			}
			// The topic is the unescaped name: gRPC sees the same records.
			res, err := client(t, as.testServer, tt.cn).Consume(ctxT(t), &logv1.ConsumeRequest{Topic: tt.topic, Offset: 3})
			if err != nil || string(res.GetRecord().GetValue()) != "r3" {
				t.Fatalf("gRPC consume of %q at 3: got %v, %v; want r3", tt.topic, res, err)
			}
			// The records from an offset, without following: NDJSON.
			code, b := call(t, c, "GET", url+"?from=1", "")
			if code != http.StatusOK {
				t.Fatalf("GET ?from=1: got %d (%s), want 200", code, b)
			}
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if len(lines) != 3 {
				t.Fatalf("GET ?from=1: got %d lines (%q), want 3", len(lines), b)
			}
			for i, line := range lines {
				var ans apiAnswer
				if err := json.Unmarshal([]byte(line), &ans); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				wantRecord(t, ans.Record, fmt.Sprint("r", i+1), uint64(i+1))
			}
			// From the end: an empty stream.
			if code, b := call(t, c, "GET", url+"?from=4", ""); code != http.StatusOK || len(b) != 0 {
				t.Fatalf("GET ?from=4: got %d (%q), want 200 and nothing", code, b)
			}
		})
	}
}

func TestHTTPErrors(t *testing.T) {
	const maxRecord = 1024
	as := startAPI(t, func(_ *Config, l *log.Config) { l.MaxRecordBytes = maxRecord })
	root := httpClient(t, "", "root")
	for _, topic := range []string{"t", "bob/x"} {
		callJSON(t, root, "POST", topicURL(as.url, topic), recordBody("a"), http.StatusOK, nil)
		callJSON(t, root, "POST", topicURL(as.url, topic), recordBody("b"), http.StatusOK, nil)
	}
	callJSON(t, root, "POST", as.url, recordBody("default"), http.StatusOK, nil)
	tURL := topicURL(as.url, "t")
	bodyLimit := int64(maxRecord)*4/3*8 + requestSlack

	tests := []struct {
		name         string
		cn           string
		method, url  string
		body         string
		wantStatus   int
		wantCode     string
		wantMsg      string            // a substring of the message
		wantDetails  map[string]string // a subset of the details
		notInMessage string
	}{
		{name: "bad JSON", method: "POST", url: tURL, body: `{"record":`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: "request body"},
		{name: "not an object", method: "POST", url: tURL, body: `[1]`, wantStatus: 400, wantCode: "INVALID_ARGUMENT"},
		{name: "empty body", method: "POST", url: tURL, body: ``, wantStatus: 400, wantCode: "INVALID_ARGUMENT"},
		{name: "bad base64", method: "POST", url: tURL, body: `{"record":{"value":"!!not base64!!"}}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: "base64"},
		{name: "unknown field", method: "POST", url: tURL, body: `{"record":{"value":"eA=="},"topic":"x"}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: `unknown field "topic"`},
		{name: "unknown record field", method: "POST", url: tURL, body: `{"record":{"valu":"eA=="}}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: "unknown field"},
		{name: "missing record", method: "POST", url: tURL, body: `{}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: `"record"`},
		{name: "empty records", method: "POST", url: tURL, body: `{"records":[]}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: `"records"`},
		{name: "record and records", method: "POST", url: tURL, body: `{"record":{"value":"eA=="},"records":[{"value":"eA=="}]}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: "not both"},
		{name: "book missing record", method: "POST", url: as.url, body: `{"offset":0}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: "unknown field"},
		{name: "book missing offset", method: "GET", url: as.url, body: `{}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: `"offset" is required`},
		{name: "book negative offset", method: "GET", url: as.url, body: `{"offset":-1}`, wantStatus: 400, wantCode: "INVALID_ARGUMENT"},
		{name: "bad offset in path", method: "GET", url: tURL + "/abc", wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: `offset "abc" is not a number`},
		{name: "negative offset in path", method: "GET", url: tURL + "/-1", wantStatus: 400, wantCode: "INVALID_ARGUMENT"},
		{name: "bad from", method: "GET", url: tURL + "?from=x", wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: `from "x"`},
		{name: "bad follow", method: "GET", url: tURL + "?follow=maybe", wantStatus: 400, wantCode: "INVALID_ARGUMENT", wantMsg: `follow "maybe"`},
		{name: "bad topic a//b produce", method: "POST", url: as.url + "/v1/topics/a%2F%2Fb/records", body: recordBody("x"), wantStatus: 400, wantCode: ReasonInvalidTopic, wantMsg: "topic"},
		{name: "bad topic a//b consume", method: "GET", url: as.url + "/v1/topics/a%2F%2Fb/records/0", wantStatus: 400, wantCode: ReasonInvalidTopic, wantMsg: "topic"},
		{name: "bad topic a//b stream", method: "GET", url: as.url + "/v1/topics/a%2F%2Fb/records?from=0", wantStatus: 400, wantCode: ReasonInvalidTopic, wantMsg: "topic"},
		{name: "bad topic /a", method: "POST", url: as.url + "/v1/topics/%2Fa/records", body: recordBody("x"), wantStatus: 400, wantCode: ReasonInvalidTopic},
		{name: "bad topic a..b", method: "POST", url: as.url + "/v1/topics/a%2F..%2Fb/records", body: recordBody("x"), wantStatus: 400, wantCode: ReasonInvalidTopic},
		{name: "bad topic with space", method: "POST", url: as.url + "/v1/topics/a%20b/records", body: recordBody("x"), wantStatus: 400, wantCode: ReasonInvalidTopic},

		{name: "alice produces bob/x", cn: "alice", method: "POST", url: topicURL(as.url, "bob/x"), body: recordBody("x"), wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"alice" may not produce topic "bob/x"`, wantDetails: map[string]string{"topic": "bob/x"}},
		{name: "alice consumes bob/x", cn: "alice", method: "GET", url: topicURL(as.url, "bob/x") + "/0", wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"alice" may not consume topic "bob/x"`},
		{name: "alice streams bob/x", cn: "alice", method: "GET", url: topicURL(as.url, "bob/x") + "?from=0&follow=true", wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"alice" may not consume topic "bob/x"`},
		{name: "alice sends bad JSON to bob/x", cn: "alice", method: "POST", url: topicURL(as.url, "bob/x"), body: `{`, wantStatus: 403, wantCode: "PERMISSION_DENIED"},
		{name: "alice on a sloppy prefix", cn: "alice", method: "POST", url: topicURL(as.url, "alicex/y"), body: recordBody("x"), wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"alice" may not produce topic "alicex/y"`},
		{name: "alice book produce", cn: "alice", method: "POST", url: as.url, body: recordBody("x"), wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"alice" may not produce topic "default"`},
		{name: "bob book consume", cn: "bob", method: "GET", url: as.url, body: `{"offset":0}`, wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"bob" may not consume topic "default"`},
		{name: "nobody produces nobody/x", cn: "nobody", method: "POST", url: topicURL(as.url, "nobody/x"), body: recordBody("x"), wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"nobody" may not produce topic "nobody/x"`},
		{name: "nobody consumes t", cn: "nobody", method: "GET", url: tURL + "/0", wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"nobody" may not consume topic "t"`},
		{name: "nobody book produce", cn: "nobody", method: "POST", url: as.url, body: recordBody("x"), wantStatus: 403, wantCode: "PERMISSION_DENIED", wantMsg: `"nobody" may not produce topic "default"`},

		{name: "past the end", method: "GET", url: tURL + "/2", wantStatus: 404, wantCode: ReasonOffsetOutOfRange, wantMsg: "offsets 0..1", wantDetails: map[string]string{"lowest": "0", "highest": "1", "next": "2", "topic": "t"}},
		{name: "far past the end", method: "GET", url: tURL + "/18446744073709551615", wantStatus: 404, wantCode: ReasonOffsetOutOfRange, wantDetails: map[string]string{"lowest": "0", "highest": "1", "next": "2"}},
		{name: "book past the end", method: "GET", url: as.url, body: `{"offset":1}`, wantStatus: 404, wantCode: ReasonOffsetOutOfRange, wantDetails: map[string]string{"lowest": "0", "highest": "0", "next": "1", "topic": "default"}},
		{name: "unknown topic", method: "GET", url: topicURL(as.url, "nope") + "/0", wantStatus: 404, wantCode: ReasonTopicNotFound, wantDetails: map[string]string{"topic": "nope"}},
		{name: "unknown topic stream", method: "GET", url: topicURL(as.url, "nope") + "?from=0&follow=true", wantStatus: 404, wantCode: ReasonTopicNotFound},

		{name: "value over MaxRecordBytes", method: "POST", url: tURL, body: recordBody(strings.Repeat("v", maxRecord+1)), wantStatus: 413, wantCode: ReasonRecordTooLarge, wantMsg: "record too large"},
		{name: "batch value over MaxRecordBytes", method: "POST", url: tURL, body: fmt.Sprintf(`{"records":[{"value":"eA=="},{"value":%q}]}`, b64(strings.Repeat("v", maxRecord+1))), wantStatus: 413, wantCode: ReasonRecordTooLarge},
		{name: "body over the limit", method: "POST", url: tURL, body: recordBody(strings.Repeat("v", int(bodyLimit))), wantStatus: 413, wantCode: "BODY_TOO_LARGE", wantMsg: fmt.Sprint(bodyLimit)},
		{name: "book body over the limit", method: "GET", url: as.url, body: `{"offset":0` + strings.Repeat(" ", int(bodyLimit)) + `}`, wantStatus: 413, wantCode: "BODY_TOO_LARGE"},
	}
	clients := map[string]*http.Client{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cn := tt.cn
			if cn == "" {
				cn = "root"
			}
			c, ok := clients[cn]
			if !ok {
				c = httpClient(t, "", cn)
				clients[cn] = c
			}
			code, b := call(t, c, tt.method, tt.url, tt.body)
			if code != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", code, b, tt.wantStatus)
			}
			var body errorBody
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("answer %q: %v", b, err)
			}
			if body.Code != tt.wantCode {
				t.Fatalf("got code %q (%s), want %q", body.Code, b, tt.wantCode)
			}
			if body.Message == "" || !strings.Contains(body.Message, tt.wantMsg) {
				t.Fatalf("got message %q, want one containing %q", body.Message, tt.wantMsg)
			}
			for k, v := range tt.wantDetails {
				if body.Details[k] != v {
					t.Fatalf("got details %v, want %s=%s", body.Details, k, v)
				}
			}
		})
	}
	// Nothing was appended by the failures, and the server still serves.
	var ans apiAnswer
	callJSON(t, root, "POST", tURL, recordBody("c"), http.StatusOK, &ans)
	if ans.Offset == nil || *ans.Offset != 2 {
		t.Fatalf("after the errors: got offset %v, want 2", ans.Offset)
	}
	// The largest value is accepted.
	callJSON(t, root, "POST", tURL, recordBody(strings.Repeat("v", maxRecord)), http.StatusOK, nil)
}

func TestHTTPUntrustedClients(t *testing.T) {
	as := startAPI(t)
	for _, tt := range []struct {
		name, dir, cn string
	}{
		{"no certificate", "", ""},
		{"certificate from another CA", otherCA, "root"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := httpClient(t, tt.dir, tt.cn)
			req, err := http.NewRequestWithContext(ctxT(t), "POST", as.url, strings.NewReader(recordBody("x")))
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Do(req)
			if err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				t.Fatalf("got %d (%s), want the handshake refused", res.StatusCode, b)
			}
		})
	}
	// Without a verified certificate the handler itself answers 401 (the
	// TLS config normally refuses such clients first).
	for _, tt := range []struct {
		name string
		tls  *tls.ConnectionState
	}{
		{"no TLS", nil},
		{"no verified chain", &tls.ConnectionState{}},
	} {
		t.Run("handler/"+tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/", strings.NewReader(recordBody("x")))
			req.TLS = tt.tls
			rec := httptest.NewRecorder()
			as.srv.HTTPHandler().ServeHTTP(rec, req)
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("answer %q: %v", rec.Body, err)
			}
			if rec.Code != http.StatusUnauthorized || body.Code != "UNAUTHENTICATED" {
				t.Fatalf("got %d %+v, want 401 UNAUTHENTICATED", rec.Code, body)
			}
		})
	}
	callJSON(t, httpClient(t, "", "root"), "POST", as.url, recordBody("after"), http.StatusOK, nil)
}

// openFollow opens a following stream of topic from offset 0; cancel ends
// it.
func openFollow(t testing.TB, c *http.Client, url string) (*bufio.Scanner, *http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	req, err := http.NewRequestWithContext(ctx, "GET", url+"?from=0&follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The client's Timeout would cut the stream off.
	sc := *c
	sc.Timeout = 0
	res, err := sc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		cancel()
		t.Fatalf("GET %s: got %d (%s), want 200", req.URL, res.StatusCode, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("got Content-Type %q, want application/x-ndjson", ct)
	}
	return bufio.NewScanner(res.Body), res, cancel
}

func nextLine(t testing.TB, sc *bufio.Scanner) apiAnswer {
	t.Helper()
	if !sc.Scan() {
		t.Fatalf("stream ended early: %v", sc.Err())
	}
	var ans apiAnswer
	if err := json.Unmarshal(sc.Bytes(), &ans); err != nil {
		t.Fatalf("line %q: %v", sc.Bytes(), err)
	}
	return ans
}

func TestHTTPFollow(t *testing.T) {
	as := startAPI(t)
	alice := httpClient(t, "", "alice")
	url := topicURL(as.url, "alice/f")
	callJSON(t, alice, "POST", url, recordBody("0"), http.StatusOK, nil)
	sc, _, cancel := openFollow(t, alice, url)
	defer cancel()
	wantRecord(t, nextLine(t, sc).Record, "0", 0)
	g := client(t, as.testServer, "alice")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i < 30; i++ {
			if _, err := g.Produce(ctxT(t), &logv1.ProduceRequest{Topic: "alice/f", Record: &logv1.Record{Value: []byte(fmt.Sprint(i))}}); err != nil {
				t.Errorf("produce %d: %v", i, err)
				return
			}
		}
	}()
	for i := 1; i < 30; i++ {
		wantRecord(t, nextLine(t, sc).Record, fmt.Sprint(i), uint64(i))
	}
	<-done
	cancel()
	if sc.Scan() {
		t.Fatalf("after cancel: got line %q, want the stream ended", sc.Bytes())
	}
}

func TestHTTPShutdownEndsFollowers(t *testing.T) {
	as := startAPI(t)
	root := httpClient(t, "", "root")
	url := topicURL(as.url, "t")
	callJSON(t, root, "POST", url, recordBody("x"), http.StatusOK, nil)
	sc, _, cancel := openFollow(t, root, url)
	defer cancel()
	wantRecord(t, nextLine(t, sc).Record, "x", 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		as.srv.Shutdown(ctx)
	}()
	ans := nextLine(t, sc)
	if ans.Error == nil || ans.Error.Code != "UNAVAILABLE" || ans.Record != nil {
		t.Fatalf("got line %+v, want an error UNAVAILABLE", ans)
	}
	if sc.Scan() {
		t.Fatalf("after the error: got line %q, want the end", sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("got %v, want the stream ended cleanly", err)
	}
	<-done
}

func TestHTTPError(t *testing.T) {
	md := func(reason string) error {
		return toStatus(fmt.Errorf("x: %w", map[string]error{
			ReasonDiskFull:         syscall.ENOSPC,
			ReasonRecordTooLarge:   log.ErrRecordTooLarge,
			ReasonInvalidTopic:     log.ErrInvalidTopic,
			ReasonTopicNotFound:    log.ErrTopicNotFound,
			ReasonPermissionDenied: auth.ErrDenied,
			ReasonOffsetOutOfRange: log.ErrOffsetOutOfRange,
			ReasonOffsetCompacted:  log.ErrOffsetCompacted,
		}[reason]), "t", nil)
	}
	tests := []struct {
		name     string
		err      error
		want     int
		wantCode string
	}{
		{"body too large", errBodyTooLarge{limit: 10}, 413, "BODY_TOO_LARGE"},
		{"wrapped body too large", fmt.Errorf("x: %w", errBodyTooLarge{limit: 10}), 413, "BODY_TOO_LARGE"},
		{"invalid argument", status.Error(codes.InvalidArgument, "x"), 400, "INVALID_ARGUMENT"},
		{"record too large", md(ReasonRecordTooLarge), 413, ReasonRecordTooLarge},
		{"invalid topic", md(ReasonInvalidTopic), 400, ReasonInvalidTopic},
		{"empty batch", toStatus(log.ErrEmptyBatch, "t", nil), 400, "INVALID_ARGUMENT"},
		{"unauthenticated", status.Error(codes.Unauthenticated, "x"), 401, "UNAUTHENTICATED"},
		{"permission denied", md(ReasonPermissionDenied), 403, "PERMISSION_DENIED"},
		{"plain permission denied", status.Error(codes.PermissionDenied, "x"), 403, "PERMISSION_DENIED"},
		{"out of range", md(ReasonOffsetOutOfRange), 404, ReasonOffsetOutOfRange},
		{"compacted", md(ReasonOffsetCompacted), 404, ReasonOffsetCompacted},
		{"topic not found", md(ReasonTopicNotFound), 404, ReasonTopicNotFound},
		{"disk full", md(ReasonDiskFull), 507, ReasonDiskFull},
		{"resource exhausted", status.Error(codes.ResourceExhausted, "x"), 429, "RESOURCE_EXHAUSTED"},
		{"unavailable", status.Error(codes.Unavailable, "x"), 503, "UNAVAILABLE"},
		{"shutting down", toStatus(errShuttingDown, "", nil), 503, "UNAVAILABLE"},
		{"log closed", toStatus(log.ErrClosed, "", nil), 503, "UNAVAILABLE"},
		{"failed precondition", status.Error(codes.FailedPrecondition, "x"), 503, "FAILED_PRECONDITION"},
		{"log failed", toStatus(log.ErrFailed, "", nil), 503, ReasonLogFailed},
		{"I/O error", toStatus(syscall.EIO, "", nil), 503, ReasonIOError},
		{"canceled", toStatus(context.Canceled, "", nil), 499, "CANCELLED"},
		{"deadline", toStatus(context.DeadlineExceeded, "", nil), http.StatusGatewayTimeout, "DEADLINE_EXCEEDED"},
		{"data loss", toStatus(log.ErrCorrupt, "", nil), 500, "DATA_LOSS"},
		{"internal", status.Error(codes.Internal, "x"), 500, "INTERNAL"},
		{"unknown", status.Error(codes.Unknown, "x"), 500, "UNKNOWN"},
		{"not a status", errors.New("x"), 500, "UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, body := httpError(tt.err)
			if got != tt.want || body.Code != tt.wantCode {
				t.Fatalf("got %d %q, want %d %q", got, body.Code, tt.want, tt.wantCode)
			}
			if body.Message == "" {
				t.Fatalf("got an empty message for %v", tt.err)
			}
		})
	}
	// Details carry the ErrorInfo metadata.
	_, body := httpError(toStatus(log.ErrTopicNotFound, "t", nil))
	if body.Details["topic"] != "t" {
		t.Fatalf("got details %v, want topic=t", body.Details)
	}
}
