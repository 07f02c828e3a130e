package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/logd/logd/internal/auth"
	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/quota"
)

// ErrorDomain is the domain of the ErrorInfo details logd sends.
const ErrorDomain = "logd"

// Reasons in ErrorInfo details, for clients to act on.
const (
	ReasonOffsetOutOfRange = "OFFSET_OUT_OF_RANGE" // past the end; wait or read from lowest..highest
	ReasonOffsetCompacted  = "OFFSET_COMPACTED"    // below the lowest; read from lowest
	ReasonRecordTooLarge   = "RECORD_TOO_LARGE"
	ReasonInvalidTopic     = "INVALID_TOPIC"
	ReasonTopicNotFound    = "TOPIC_NOT_FOUND"
	ReasonTopicDeleted     = "TOPIC_DELETED" // deleted while the call ran
	ReasonPermissionDenied = "PERMISSION_DENIED"
	// Storage faults (see toStatus): the disk is full, or an I/O error
	// (the append was not acknowledged either way: retry); the topic's
	// log failed after a failed fsync and refuses appends until logd
	// restarts (do not retry).
	ReasonDiskFull  = "DISK_FULL"
	ReasonIOError   = "IO_ERROR"
	ReasonLogFailed = "LOG_FAILED"
	// Quotas (see package quota): over a rate or the streams cap (retry
	// after the RetryInfo delay, if any); a request larger than a bucket
	// (it can never pass); a topic at its cap on bytes on disk.
	ReasonQuotaExceeded = "QUOTA_EXCEEDED"
	ReasonOverBurst     = "QUOTA_BURST_EXCEEDED"
	ReasonTopicFull     = "TOPIC_FULL"
)

// offsetRange is what a client needs to recover from an offset error.
type offsetRange interface{ Offsets() (lowest, next uint64) }

// toStatus turns an error from the storage engine or the authorizer into
// the gRPC status a client can act on. It is the one place where domain
// errors meet status codes. topic and l (nil if unknown) add details.
func toStatus(err error, topic string, l offsetRange) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	info := func(c codes.Code, reason, msg string, md map[string]string) error {
		if md == nil {
			md = map[string]string{}
		}
		if topic != "" {
			md["topic"] = topic
		}
		st, derr := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: md})
		if derr != nil {
			return status.Error(c, msg)
		}
		return st.Err()
	}
	bad := func(reason, field string) error {
		st, derr := status.New(codes.InvalidArgument, err.Error()).WithDetails(
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: err.Error()}}},
			&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain},
		)
		if derr != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		return st.Err()
	}
	var qe *quota.Exceeded
	switch {
	case errors.As(err, &qe):
		return quotaStatus(qe)
	case errors.Is(err, log.ErrOffsetOutOfRange), errors.Is(err, log.ErrOffsetCompacted):
		md := map[string]string{}
		var msg string
		reason := ReasonOffsetOutOfRange
		if l != nil {
			lo, next := l.Offsets()
			md["lowest"] = strconv.FormatUint(lo, 10)
			md["next"] = strconv.FormatUint(next, 10)
			rng := "empty"
			if next > lo {
				md["highest"] = strconv.FormatUint(next-1, 10)
				rng = fmt.Sprintf("offsets %d..%d", lo, next-1)
			}
			msg = fmt.Sprintf("topic %q holds %s", topic, rng)
		}
		if errors.Is(err, log.ErrOffsetCompacted) {
			reason = ReasonOffsetCompacted
			msg = fmt.Sprintf("%v: removed by retention; %s", err, msg)
		} else {
			msg = fmt.Sprintf("%v; %s", err, msg)
		}
		return info(codes.OutOfRange, reason, msg, md)
	case errors.Is(err, log.ErrRecordTooLarge):
		return bad(ReasonRecordTooLarge, "record.value")
	case errors.Is(err, log.ErrInvalidTopic):
		return bad(ReasonInvalidTopic, "topic")
	case errors.Is(err, log.ErrEmptyBatch):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, log.ErrTopicDeleted):
		return info(codes.NotFound, ReasonTopicDeleted, err.Error(), nil)
	case errors.Is(err, log.ErrTopicNotFound):
		return info(codes.NotFound, ReasonTopicNotFound, err.Error(), nil)
	case errors.Is(err, auth.ErrDenied):
		return info(codes.PermissionDenied, ReasonPermissionDenied, err.Error(), nil)
	case errors.Is(err, log.ErrFailed):
		// First: whatever the fsync said (even ENOSPC), waiting or
		// freeing space does not help, a restart does.
		return info(codes.FailedPrecondition, ReasonLogFailed,
			err.Error()+" (the topic refuses appends until logd is restarted, which recovers its log; reads go on)", nil)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return info(codes.ResourceExhausted, ReasonDiskFull,
			"disk full: "+err.Error()+" (the append is not acknowledged: retry once space is freed)", nil)
	case errors.Is(err, syscall.EIO), errors.Is(err, syscall.EROFS):
		// The log undid what it wrote and goes on: the call may pass if
		// tried again, so Unavailable, not Internal.
		return info(codes.Unavailable, ReasonIOError,
			"I/O error: "+err.Error()+" (an append is not acknowledged: retry later)", nil)
	case errors.Is(err, log.ErrClosed), errors.Is(err, errShuttingDown):
		return status.Error(codes.Unavailable, "server shutting down")
	case errors.Is(err, log.ErrCorrupt):
		return status.Error(codes.DataLoss, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// quotaStatus is a quota refusal as a status: ResourceExhausted with an
// ErrorInfo (reason, and metadata quota, principal, topic, limit, burst,
// retry_after_ms), a QuotaFailure naming the quota, and a RetryInfo when
// waiting makes the call pass.
func quotaStatus(e *quota.Exceeded) error {
	reason, subject := ReasonQuotaExceeded, "principal:"+e.Principal
	switch {
	case e.Kind == quota.TopicBytes:
		reason, subject = ReasonTopicFull, "topic:"+e.Topic
	case e.OverBurst:
		reason = ReasonOverBurst
	}
	md := map[string]string{"quota": string(e.Kind), "limit": strconv.FormatFloat(e.Limit, 'g', -1, 64)}
	if e.Principal != "" {
		md["principal"] = e.Principal
	}
	if e.Topic != "" {
		md["topic"] = e.Topic
	}
	if e.Burst > 0 {
		md["burst"] = strconv.Itoa(e.Burst)
	}
	details := []protoadapt.MessageV1{
		&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: md},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: subject, Description: e.Error()}}},
	}
	if e.RetryAfter > 0 {
		md["retry_after_ms"] = strconv.FormatInt(max(1, e.RetryAfter.Milliseconds()), 10)
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	st, err := status.New(codes.ResourceExhausted, e.Error()).WithDetails(details...)
	if err != nil {
		return status.Error(codes.ResourceExhausted, e.Error())
	}
	return st.Err()
}
