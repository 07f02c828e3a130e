package client

import (
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestRetryAfter(t *testing.T) {
	withRetry := func(d time.Duration) error {
		st, err := status.New(codes.ResourceExhausted, "quota: consume bytes/s").
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tt := range []struct {
		name  string
		err   error
		wait  time.Duration
		retry bool
	}{
		{"eof", io.EOF, 0, true},
		{"wrapped eof", fmt.Errorf("recv: %w", io.EOF), 0, true},
		{"unavailable", status.Error(codes.Unavailable, "server shutting down"), 0, true},
		{"aborted", status.Error(codes.Aborted, "x"), 0, true},
		{"quota with retry info", withRetry(1500 * time.Millisecond), 1500 * time.Millisecond, true},
		{"quota that waiting cannot fix", status.Error(codes.ResourceExhausted, "record larger than the burst"), 0, false},
		{"denied", status.Error(codes.PermissionDenied, "no"), 0, false},
		{"not found", status.Error(codes.NotFound, "topic deleted"), 0, false},
		{"not a status", fmt.Errorf("boom"), 0, false},
	} {
		wait, retry := retryAfter(tt.err)
		if wait != tt.wait || retry != tt.retry {
			t.Errorf("%s: retryAfter = %v, %v; want %v, %v", tt.name, wait, retry, tt.wait, tt.retry)
		}
	}
}
