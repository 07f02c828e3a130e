package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
)

// Backoff bounds of Follow's reconnections.
const (
	followMinBackoff = 50 * time.Millisecond
	followMaxBackoff = 2 * time.Second
)

// Follow calls fn with each record of topic from offset from on, waiting
// at the tail (ConsumeStream). If the stream breaks (Unavailable, a
// dropped connection, the server restarting) it reconnects with backoff
// (50 ms doubling to 2 s, back to 50 ms once a stream delivers a record) and resumes from the
// offset after the last record delivered to fn, so no record is lost or
// repeated. It returns when ctx ends (ctx.Err()), when fn returns an error
// (that error), or on a non-retryable status (PermissionDenied,
// InvalidArgument, NotFound, OutOfRange for an offset below the lowest,
// ResourceExhausted without a RetryInfo...). A quota refusal with a
// RetryInfo is retried after the delay it names.
func (c *Client) Follow(ctx context.Context, topic string, from uint64, fn func(*logv1.Record) error) error {
	next := from
	backoff := followMinBackoff
	for {
		delivered, err := c.followOnce(ctx, topic, next, func(rec *logv1.Record) error {
			if err := fn(rec); err != nil {
				return err
			}
			next = rec.GetOffset() + 1
			return nil
		})
		var fnErr *fnError
		if errors.As(err, &fnErr) {
			return fnErr.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait, ok := retryAfter(err)
		if !ok {
			return err
		}
		if delivered {
			backoff = followMinBackoff
		}
		t := time.NewTimer(max(backoff, wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, followMaxBackoff)
	}
}

// fnError wraps an error of Follow's fn, to tell it from the stream's.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// followOnce runs one ConsumeStream from offset from until it fails, and
// says whether it delivered any record.
func (c *Client) followOnce(ctx context.Context, topic string, from uint64, fn func(*logv1.Record) error) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.log.ConsumeStream(ctx, &logv1.ConsumeRequest{Topic: topic, Offset: from})
	if err != nil {
		return false, err
	}
	delivered := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			return delivered, err
		}
		if resp.GetRecord() == nil {
			return delivered, status.Error(codes.Internal, "client: follow: the server sent no record")
		}
		if err := fn(resp.GetRecord()); err != nil {
			return delivered, &fnError{err}
		}
		delivered = true
	}
}

// retryAfter says whether a broken ConsumeStream is worth reconnecting,
// and the least wait the server asked for: the server went away or is
// restarting, the stream ended without a status (io.EOF, which a
// tail-following stream never does on its own), or a quota refused it
// for now (ResourceExhausted with a RetryInfo; without one, waiting does
// not help, as for a record larger than the consume burst).
func retryAfter(err error) (time.Duration, bool) {
	if errors.Is(err, io.EOF) {
		return 0, true
	}
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	switch st.Code() {
	case codes.Unavailable, codes.Aborted:
		return 0, true
	case codes.ResourceExhausted:
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				return ri.GetRetryDelay().AsDuration(), true
			}
		}
	}
	return 0, false
}
