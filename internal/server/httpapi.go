package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.opencensus.io/plugin/ochttp"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
)

// The JSON-over-HTTP API: the book's first-chapter shapes on "/", for the
// default topic, and resource paths for every topic. It runs behind the
// same mutual TLS (the caller serves it with the server's tls.Config),
// the same authorization (guard.authorize) and the same operations
// (service.produce, read, follow) as the gRPC API; only the encoding and
// the status codes differ (httpError).
//
//	POST /                                    {"record":{"value":"<base64>"}} → {"offset":N}
//	GET  /                                    {"offset":N} → {"record":{"value":"<base64>","offset":N,"time":"…"}}
//	POST /v1/topics/{topic}/records           {"record":{…}} → {"offset":N}, or {"records":[{…},…]} → {"offsets":[…]}
//	GET  /v1/topics/{topic}/records/{offset}  → {"record":{…}}
//	GET  /v1/topics/{topic}/records?from=N[&follow=true]
//	                                          newline-delimited {"record":{…}}; with follow, waits at the tail
//
// A topic with '/' goes in one path segment with each '/' escaped as %2F
// ("alice%2Forders").

// jsonRecord is a record in JSON; []byte values are base64.
type jsonRecord struct {
	Value  []byte     `json:"value"`
	Offset uint64     `json:"offset"`
	Time   *time.Time `json:"time,omitempty"`
}

func toJSON(r log.Record) *jsonRecord {
	t := r.Time.UTC()
	return &jsonRecord{Value: r.Value, Offset: r.Offset, Time: &t}
}

type produceRequest struct {
	Record  *jsonRecord  `json:"record"`
	Records []jsonRecord `json:"records"`
}

type produceResponse struct {
	Offset  uint64   `json:"offset"`
	Offsets []uint64 `json:"offsets,omitempty"`
}

type consumeRequest struct {
	Offset *uint64 `json:"offset"`
}

type consumeResponse struct {
	Record *jsonRecord `json:"record"`
}

type errorBody struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details map[string]string `json:"details,omitempty"`
}

// httpAPI serves the JSON API.
type httpAPI struct {
	svc     *service
	guard   *guard
	logger  *zap.Logger
	maxBody int64
}

// HTTPHandler returns the JSON-over-HTTP API. Serve it over TLS with the
// same config as the gRPC server (it needs the verified client
// certificate); Shutdown ends its following streams too.
func (s *Server) HTTPHandler() http.Handler {
	a := &httpAPI{
		svc:    s.svc,
		guard:  s.guard,
		logger: s.logger,
		// Base64 takes 4/3 of the value; a batch may hold a few records.
		maxBody: int64(s.maxRecord)*4/3*8 + requestSlack,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", a.bookProduce)
	mux.HandleFunc("GET /{$}", a.bookConsume)
	mux.HandleFunc("POST /v1/topics/{topic}/records", a.produce)
	mux.HandleFunc("GET /v1/topics/{topic}/records/{offset}", a.consume)
	mux.HandleFunc("GET /v1/topics/{topic}/records", a.stream)
	// A span per request (the parent of the operations' spans, and the
	// trace id in the log line), as ocgrpc gives the gRPC calls.
	return &ochttp.Handler{Handler: a.middleware(mux)}
}

// middleware authenticates (the verified client certificate's CN), gives
// the request a callInfo, and logs one line when it ends.
func (a *httpAPI) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := withCallInfo(r.Context())
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			if callInfoFrom(ctx).isQuiet() {
				return // see quotaGuard.refuse
			}
			fields := callInfoFrom(ctx).appendFields(ctx, []zap.Field{
				zap.String("http.method", r.Method),
				zap.String("http.path", r.URL.EscapedPath()),
				zap.Int("http.status", sw.code),
				zap.Float64("http.duration_ms", float64(time.Since(start).Microseconds())/1000),
				zap.String("peer.address", r.RemoteAddr),
			})
			// As for gRPC calls (callLevel): refusals, quotas and a full
			// disk (ResourceExhausted) are warnings.
			switch {
			case sw.code >= 500 && sw.code != http.StatusInsufficientStorage:
				a.logger.Error("finished http request", fields...)
			case sw.code == http.StatusUnauthorized || sw.code == http.StatusForbidden || sw.code == http.StatusTooManyRequests,
				sw.code == http.StatusInsufficientStorage || sw.code == http.StatusRequestEntityTooLarge:
				a.logger.Warn("finished http request", fields...)
			default:
				a.logger.Info("finished http request", fields...)
			}
		}()
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			a.fail(sw, status.Error(codes.Unauthenticated, "no verified client certificate"))
			return
		}
		principal := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if principal == "" {
			a.fail(sw, status.Error(codes.Unauthenticated, "client certificate has no subject CN"))
			return
		}
		callInfoFrom(ctx).setPrincipal(principal)
		ctx = context.WithValue(ctx, principalKey{}, principal)
		if err := a.svc.quotas.allow(ctx, principal); err != nil {
			a.fail(sw, err)
			return
		}
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// statusWriter remembers the status code for the log line.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func principalOf(r *http.Request) string {
	p, _ := Principal(r.Context())
	return p
}

// decode reads a JSON body of at most maxBody bytes into v.
func (a *httpAPI) decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errBodyTooLarge{limit: tooBig.Limit}
		}
		return status.Errorf(codes.InvalidArgument, "request body: %v", err)
	}
	return nil
}

type errBodyTooLarge struct{ limit int64 }

func (e errBodyTooLarge) Error() string {
	return fmt.Sprintf("request body is over %d bytes", e.limit)
}

// bookProduce is the book's POST /: one record to the default topic.
func (a *httpAPI) bookProduce(w http.ResponseWriter, r *http.Request) {
	a.produceTo(w, r, "")
}

// bookConsume is the book's GET / with {"offset": N} in the body.
func (a *httpAPI) bookConsume(w http.ResponseWriter, r *http.Request) {
	var req consumeRequest
	if err := a.decode(w, r, &req); err != nil {
		a.fail(w, err)
		return
	}
	if req.Offset == nil {
		a.fail(w, status.Error(codes.InvalidArgument, `request body: "offset" is required`))
		return
	}
	a.consumeFrom(w, r, "", *req.Offset)
}

func (a *httpAPI) produce(w http.ResponseWriter, r *http.Request) {
	a.produceTo(w, r, r.PathValue("topic"))
}

func (a *httpAPI) produceTo(w http.ResponseWriter, r *http.Request, topic string) {
	ctx := r.Context()
	if err := a.guard.authorize(ctx, principalOf(r), topic, auth.Produce); err != nil {
		a.fail(w, err)
		return
	}
	var req produceRequest
	if err := a.decode(w, r, &req); err != nil {
		a.fail(w, err)
		return
	}
	var values [][]byte
	switch {
	case req.Record != nil && req.Records != nil:
		a.fail(w, status.Error(codes.InvalidArgument, `request body: give "record" or "records", not both`))
		return
	case req.Record != nil:
		values = [][]byte{req.Record.Value}
	case len(req.Records) > 0:
		for _, rec := range req.Records {
			values = append(values, rec.Value)
		}
	default:
		a.fail(w, status.Error(codes.InvalidArgument, `request body: "record" (or a non-empty "records") is required`))
		return
	}
	first, err := a.svc.produce(ctx, topic, values)
	if err != nil {
		a.fail(w, err)
		return
	}
	res := produceResponse{Offset: first}
	if req.Records != nil {
		for i := range values {
			res.Offsets = append(res.Offsets, first+uint64(i))
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *httpAPI) consume(w http.ResponseWriter, r *http.Request) {
	off, err := strconv.ParseUint(r.PathValue("offset"), 10, 64)
	if err != nil {
		a.fail(w, status.Errorf(codes.InvalidArgument, "offset %q is not a number", r.PathValue("offset")))
		return
	}
	a.consumeFrom(w, r, r.PathValue("topic"), off)
}

func (a *httpAPI) consumeFrom(w http.ResponseWriter, r *http.Request, topic string, off uint64) {
	ctx := r.Context()
	if err := a.guard.authorize(ctx, principalOf(r), topic, auth.Consume); err != nil {
		a.fail(w, err)
		return
	}
	rec, err := a.svc.read(ctx, topic, off)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, consumeResponse{Record: toJSON(rec)})
}

// stream writes records from ?from=N (default 0) as newline-delimited
// JSON; with ?follow=true it waits at the tail until the client goes away
// (or the server shuts down). An error after the first record ends the
// stream with a line {"error":{…}}. Like a ConsumeStream, it checks its
// grant before each record and ends, even while it waits, when a reload
// of the policy revokes it.
func (a *httpAPI) stream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	topic := r.PathValue("topic")
	q := r.URL.Query()
	var from uint64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			a.fail(w, status.Errorf(codes.InvalidArgument, "from %q is not a number", v))
			return
		}
		from = n
	}
	follow := false
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			a.fail(w, status.Errorf(codes.InvalidArgument, "follow %q is not true or false", v))
			return
		}
		follow = b
	}
	gr, err := a.guard.grant(ctx, principalOf(r), topic, auth.Consume)
	if err != nil {
		a.fail(w, err)
		return
	}
	release, err := a.svc.quotas.openStream(ctx, principalOf(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	defer release()
	// fctx ends the follow if the grant is revoked; ctx stays the
	// request's, so the error line below is still written.
	fctx, revoke := context.WithCancelCause(ctx)
	defer revoke(nil)
	gr.cancelOnRevoke(fctx, revoke)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	started := false
	err = a.svc.follow(fctx, topic, from, follow, func(rec log.Record) error {
		if err := gr.check(); err != nil {
			return err
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := enc.Encode(consumeResponse{Record: toJSON(rec)}); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	switch {
	case err == nil && !started:
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	case err != nil && !started:
		a.fail(w, err)
	case err != nil && ctx.Err() == nil:
		_, body := httpError(err)
		enc.Encode(struct {
			Error errorBody `json:"error"`
		}{body})
	}
}

// fail writes err as a JSON error, with a Retry-After header (whole
// seconds, rounded up) if the status has a RetryInfo.
func (a *httpAPI) fail(w http.ResponseWriter, err error) {
	code, body := httpError(err)
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			secs := (ri.GetRetryDelay().AsDuration() + time.Second - 1) / time.Second
			w.Header().Set("Retry-After", strconv.FormatInt(int64(max(1, secs)), 10))
		}
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// httpError maps an error (a status from the shared operations) to an
// HTTP status code and body: the one place the HTTP API decides codes.
func httpError(err error) (int, errorBody) {
	var tooBig errBodyTooLarge
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge, errorBody{Code: "BODY_TOO_LARGE", Message: err.Error()}
	}
	st := status.Convert(err)
	body := errorBody{Code: codeName(st.Code()), Message: st.Message()}
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.Reason
			body.Code = info.Reason
			if len(info.Metadata) > 0 {
				body.Details = info.Metadata
			}
		}
	}
	switch st.Code() {
	case codes.InvalidArgument:
		if reason == ReasonRecordTooLarge {
			return http.StatusRequestEntityTooLarge, body
		}
		return http.StatusBadRequest, body
	case codes.Unauthenticated:
		return http.StatusUnauthorized, body
	case codes.PermissionDenied:
		return http.StatusForbidden, body
	case codes.OutOfRange, codes.NotFound:
		return http.StatusNotFound, body
	case codes.ResourceExhausted:
		switch reason {
		case ReasonDiskFull, ReasonTopicFull:
			return http.StatusInsufficientStorage, body
		case ReasonOverBurst:
			return http.StatusRequestEntityTooLarge, body
		}
		return http.StatusTooManyRequests, body
	case codes.Unavailable, codes.FailedPrecondition:
		return http.StatusServiceUnavailable, body
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout, body
	case codes.Canceled:
		return 499, body
	}
	return http.StatusInternalServerError, body
}

// codeNames spell gRPC codes the way google.rpc.Code does:
// PERMISSION_DENIED.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return c.String()
}
