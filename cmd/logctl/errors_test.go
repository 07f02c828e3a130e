package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestCallErrorUnavailable: an Unavailable that logd sent (with its
// ErrorInfo: an I/O error on its disk) is a failed call, worded with
// logd's message; one without is a failure to connect.
func TestCallErrorUnavailable(t *testing.T) {
	a := &app{addr: "127.0.0.1:8400"}
	st, err := status.New(codes.Unavailable, "I/O error: log: append: write x.store: input/output error (not acknowledged: retry later)").
		WithDetails(&errdetails.ErrorInfo{Reason: "IO_ERROR", Domain: "logd"})
	if err != nil {
		t.Fatal(err)
	}
	var fe failure
	if got := a.callError(context.Background(), st.Err(), ""); !errors.As(got, &fe) ||
		!strings.Contains(fe.msg, "input/output error") || !strings.HasSuffix(fe.msg, "(unavailable)") {
		t.Fatalf("logd's Unavailable: got %T %q, want a failure with logd's message", got, got)
	}
	var ce connectError
	if got := a.callError(context.Background(), status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:8400: connect: connection refused\""), ""); !errors.As(got, &ce) {
		t.Fatalf("a refused connection: got %T %q, want a connectError", got, got)
	}
}
