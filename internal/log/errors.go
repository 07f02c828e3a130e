package log

import (
	"errors"
	"fmt"
)

var (
	// ErrOffsetOutOfRange is returned by Read and Reader.Next for an offset
	// at or past the end of the log (not yet written).
	ErrOffsetOutOfRange = errors.New("log: offset out of range")
	// ErrOffsetCompacted is returned by Read and Reader.Next for an offset
	// below the lowest offset, removed by retention or Truncate.
	ErrOffsetCompacted = errors.New("log: offset below lowest offset")
	// ErrRecordTooLarge is returned by Append and AppendBatch for a value
	// longer than Config.MaxRecordBytes.
	ErrRecordTooLarge = errors.New("log: record too large")
	// ErrEmptyBatch is returned by AppendBatch for an empty batch.
	ErrEmptyBatch = errors.New("log: empty batch")
	// ErrClosed is returned by every method of a closed Log or Topics.
	ErrClosed = errors.New("log: closed")
	// ErrCorrupt is returned by Read and Reader.Next when a frame on disk
	// fails its checksum or is not the record the index says it is.
	ErrCorrupt = errors.New("log: corrupt record")
	// ErrFailed wraps the error that put a log into its failed state: after
	// a failed fsync, or a failed write that could not be undone, no append
	// is acknowledged until the log is reopened (which recovers it).
	ErrFailed = errors.New("log: failed")
	// ErrInvalidConfig is wrapped by Config.Validate, naming the bad field.
	ErrInvalidConfig = errors.New("log: invalid config")
	// ErrInvalidTopic is wrapped by ValidateTopic and the Topics methods,
	// naming the rule the topic name breaks.
	ErrInvalidTopic = errors.New("log: invalid topic name")
	// ErrFull is wrapped by the *FullError StartAppendCapped returns for
	// an append that would take the log over its cap.
	ErrFull = errors.New("log: over its size cap")
	// ErrTopicNotFound is returned by Topics.Get and Topics.Delete for a
	// topic that does not exist.
	ErrTopicNotFound = errors.New("log: topic not found")
	// ErrTopicDeleted is returned by every method of a Log whose topic
	// was deleted (Topics.Delete, Log.Remove), including calls that were
	// waiting when it happened. Such an error is also ErrClosed.
	ErrTopicDeleted = errors.New("log: topic deleted")
)

// deletedError is the error of a call on a deleted topic's log: it is
// both ErrTopicDeleted and ErrClosed, and names the topic.
type deletedError struct{ topic string }

func (e deletedError) Error() string {
	if e.topic == "" {
		return ErrTopicDeleted.Error()
	}
	return fmt.Sprintf("log: topic %q was deleted", e.topic)
}

func (e deletedError) Is(target error) bool {
	return target == ErrTopicDeleted || target == ErrClosed
}
