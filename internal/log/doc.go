// Package log is logd's storage engine: a durable, crash-safe, segmented
// commit log. It knows nothing of gRPC or authorization.
//
// # Layout
//
// A data directory holds one directory per topic (see [Topics]). A topic
// name may contain '/', which the directory name spells as '+', a byte that
// topic names may not contain, so "alice/orders" lives in "alice+orders".
// A topic directory holds a sequence of segments. A segment is a pair of
// files named by the segment's base offset (the offset of its first
// record), written as 20 decimal digits so that names sort in offset order:
//
//	00000000000000000000.store   framed records
//	00000000000000000000.index   one entry per record
//
// Other names in a topic directory are ignored.
//
// Deleting a topic ([Topics.Delete], [Log.Remove]) closes its log, renames
// its directory to a tombstone (the name, cut to 226 bytes, followed by
// "~deleted-" and a number, which no topic's directory can be), fsyncs the data directory and
// then removes the tombstone, so a crash never leaves part of a topic;
// [OpenTopics] removes tombstones it finds.
//
// # Store format
//
// A store file is a sequence of frames with no file header. Integers are
// big-endian. A frame is a 24-byte header followed by the record value:
//
//	offset  size  field
//	0       4     length of the value in bytes (uint32)
//	4       4     CRC-32C (Castagnoli) of bytes 0..3 and 8..end of the frame
//	8       8     absolute offset of the record (uint64)
//	16      8     append time, Unix nanoseconds (int64)
//	24      n     value
//
// The checksum covers the length, offset, time and value, so a torn write,
// a flipped bit or a frame from the wrong place is detected. Every read
// checks the checksum and the offset; a bad frame is never returned.
//
// # Index format
//
// An index file is a sequence of 12-byte entries, one per record in the
// store, in offset order:
//
//	offset  size  field
//	0       4     offset relative to the segment's base (uint32)
//	4       8     position of the frame in the store file (uint64)
//
// The index of the active (last) segment is kept in memory and written to
// its file when the segment is sealed (on roll-over) or the log is closed;
// sealed indexes are memory-mapped read-only, so resident memory does not
// grow with the amount of data on disk.
//
// # Durability and recovery
//
// A segment is sealed by fsyncing its store, writing and fsyncing its index,
// then creating the next segment's store and fsyncing the directory, so every
// segment but the last is complete on disk whatever the sync policy. The
// [SyncPolicy] decides when the last segment's appends are fsynced; with
// [SyncAlways], readers see a record only once it is durable.
//
// Open checks each sealed segment cheaply (index length, first and last
// entry, last frame) and rescans it if the check fails. The last segment is
// always rescanned: its store is cut at the end of the last good frame, and
// its index is rebuilt from the scan. If a sealed segment is damaged, it is
// cut the same way and every later segment is removed, so the log stays a
// gap-free sequence of good records. [Log.Recovery] reports what was cut.
//
// # Faults
//
// A failed write (ENOSPC on a full disk, EIO) fails the appends it
// covered with the error, which wraps the system's (errors.Is(err,
// syscall.ENOSPC)), and changes nothing readers see: the store is cut back
// to the end of the last good frame, so no partial frame stays in the
// middle of the log, and the appends' offsets go to the next ones. The
// same holds when the write that fails is a roll-over's (the sealed
// index, the next segment's store): the segment stays active and the next
// append that needs the roll-over tries again. So once the fault is gone
// (space returns), appends succeed at the next offset, without a reopen.
// A failed mmap of a sealed index keeps that index in memory.
//
// A failed fsync (of a store, an index or the directory, whatever the
// error) or a failed write that cannot be cut back puts the log in its
// failed state (ErrFailed): the kernel may have dropped the data the
// fsync was to write, and a later fsync could succeed without it. A
// failed log runs no more fsyncs, its durable end never moves again, and
// every append waiting for it and every later one fails with ErrFailed;
// reads of what was readable go on. Two fsyncs of the active store never
// run at once (a roll-over or Close waits for the group commit's), as an
// error is reported to one of them only. Reopening the log (restarting
// logd) recovers it from what is on disk. [Log.Failure] reports the
// failure. Package faultfs injects these faults in tests.
//
// # Concurrency
//
// All methods of [Log], [Reader] and [Topics] are safe for concurrent use,
// except that a single [Reader] must not be used by two goroutines at once.
// Appends are serialized by the log's lock. An append frames its records
// into a pending buffer under the lock; [Pending.Wait] writes them. With
// [SyncNone] and [SyncInterval] the first appender to wait writes
// everything pending with one write call under the lock, so concurrent
// and pipelined appends share writes. With [SyncAlways] concurrent
// appenders share both the write and the fsync (group commit): the first
// appender to find no fsync in flight becomes the leader. It
// waits briefly for appends under way, writes the whole buffer with one
// write call under the lock, fsyncs outside it, and wakes every appender
// the fsync covered. A failed write fails every append it covered and is
// cut back from the store; a failed fsync fails the log (see Faults). A
// roll-over waits for an fsync in flight before its own. The index only
// covers written records. Readers hold the lock only to look a position
// up in the index; the read itself runs without it.
package log
