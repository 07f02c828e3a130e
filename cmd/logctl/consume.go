package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	logv1 "github.com/logd/logd/api/v1"
)

type consumeOpts struct {
	topic    string
	from     string
	count    uint64
	countSet bool
	follow   bool
	format   string
}

const consumeExample = `  # every record, then stop at the end of the topic
  logctl consume --topic alice/orders
  # five records from offset 10
  logctl consume --topic alice/orders --from 10 --count 5
  # JSON lines {"offset", "time", "value"} (binary values as "value_b64")
  logctl consume --topic alice/orders --format json | jq .value
  # the last record, then wait for new ones like tail -f (Ctrl-C stops it)
  logctl consume --topic alice/orders --from newest --follow
  # only records produced from now on
  logctl --as alice consume --topic alice/orders --from end --follow`

func (a *app) consumeCmd() *cobra.Command {
	o := &consumeOpts{}
	c := &cobra.Command{
		Use:   "consume --topic TOPIC [--from N|oldest|newest|end] [--count K] [--follow] [--format text|json]",
		Short: "Print the records of a topic, or follow its tail",
		Long: `Print the records of a topic from an offset on.

--from is an offset, or oldest (the first record retention kept), newest
(the last record) or end (after the last: only records produced later). In
--format text each record's value is printed on a line of its own; in
--format json each record is a line {"offset": N, "time": "RFC 3339",
"value": "text"}, with "value_b64" (base64) instead of "value" when the
value is not UTF-8. This is the input format of produce --format json.

Without --follow, consume stops at the end of the topic as it was when it
started, or after --count records. With --follow it waits at the end for new
records, like tail -f, until --count records or Ctrl-C (which exits 0); if
the connection breaks it reconnects and resumes after the last record
printed.`,
		Example: consumeExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.countSet = cmd.Flags().Changed("count")
			return a.consume(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVarP(&o.topic, "topic", "t", "", "`topic` to read (required)")
	f.StringVar(&o.from, "from", "oldest", "first `offset`: a number, oldest, newest or end")
	f.Uint64VarP(&o.count, "count", "n", 0, "stop after this many records (default: no limit)")
	f.BoolVarP(&o.follow, "follow", "f", false, "at the end of the topic wait for new records, until Ctrl-C")
	f.StringVar(&o.format, "format", "text", "output `format`: text or json")
	c.MarkFlagRequired("topic")
	c.RegisterFlagCompletionFunc("format", fixedCompletions("text", "json"))
	c.RegisterFlagCompletionFunc("from", fixedCompletions("oldest", "newest", "end"))
	return c
}

// errEnough ends a Follow once the wanted records were printed.
var errEnough = errors.New("enough records")

func (a *app) consume(ctx context.Context, o *consumeOpts) error {
	if o.topic == "" {
		return usagef("--topic must not be empty")
	}
	if o.format != "text" && o.format != "json" {
		return usagef("--format %q: want text or json", o.format)
	}
	var from uint64
	switch o.from {
	case "oldest", "newest", "end":
	default:
		n, err := strconv.ParseUint(o.from, 10, 64)
		if err != nil {
			return usagef("--from %q: want an offset (0, 1, ...), oldest, newest or end", o.from)
		}
		from = n
	}
	if o.countSet && o.count == 0 {
		return nil
	}

	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.Close()

	// The topic's offsets. A follow waits for a topic that does not exist
	// yet, like tail -F.
	var lowest, next uint64
	waited := false
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		uctx, cancel := a.unary(ctx)
		lowest, next, err = c.Offsets(uctx, o.topic)
		cancel()
		if err == nil {
			break
		}
		if !o.follow || status.Code(err) != codes.NotFound {
			return a.callError(ctx, err, "")
		}
		if wait == 100*time.Millisecond {
			fmt.Fprintf(a.stderr, "logctl: topic %q does not exist yet; waiting for its first record (Ctrl-C to stop)\n", o.topic)
		}
		waited = true
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	if waited {
		// Every record is newer than the start of the wait.
		next = lowest
	}
	switch o.from {
	case "oldest":
		from = lowest
	case "newest":
		from = next
		if next > lowest {
			from = next - 1
		}
	case "end":
		from = next
	}

	limit := uint64(0) // 0: no limit
	if o.countSet {
		limit = o.count
	}
	if !o.follow {
		switch {
		case from > next && next == lowest:
			return failf("offset %d is past the end of topic %q, which is empty (the next record gets offset %d)", from, o.topic, next)
		case from > next:
			return failf("offset %d is past the end of topic %q, which holds offsets %d..%d", from, o.topic, lowest, next-1)
		case from == next:
			return nil
		}
		if n := next - from; limit == 0 || n < limit {
			limit = n
		}
	}

	out := bufio.NewWriterSize(a.stdout, 256<<10)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	var printed uint64
	err = c.Follow(ctx, o.topic, from, func(rec *logv1.Record) error {
		if err := writeRecord(out, enc, o.format, rec); err != nil {
			return err
		}
		printed++
		if o.follow {
			if err := out.Flush(); err != nil {
				return err
			}
		}
		if limit != 0 && printed >= limit {
			return errEnough
		}
		return nil
	})
	if ferr := out.Flush(); ferr != nil && (err == nil || errors.Is(err, errEnough) || ctx.Err() != nil) {
		return failf("write output: %v", ferr)
	}
	switch {
	case err == nil, errors.Is(err, errEnough):
		return nil
	case o.follow && interrupted(ctx):
		return nil // Ctrl-C is how a follow ends.
	}
	var we writeError
	if errors.As(err, &we) {
		return failf("write output: %v", we.err)
	}
	return a.callError(ctx, err, "printed "+plural(printed, "record"))
}

// writeError is a failure to write the output, to tell it from the
// server's errors.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }

// jsonRecord is a record in --format json: value if it is UTF-8, else
// value_b64.
type jsonRecord struct {
	Offset   uint64  `json:"offset"`
	Time     string  `json:"time,omitempty"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
}

func writeRecord(out *bufio.Writer, enc *json.Encoder, format string, rec *logv1.Record) error {
	v := rec.GetValue()
	if format == "text" {
		out.Write(v)
		if err := out.WriteByte('\n'); err != nil {
			return writeError{err}
		}
		return nil
	}
	jr := jsonRecord{Offset: rec.GetOffset()}
	if rec.GetTime() != nil {
		jr.Time = rec.GetTime().AsTime().UTC().Format(time.RFC3339Nano)
	}
	if utf8.Valid(v) {
		s := string(v)
		jr.Value = &s
	} else {
		s := base64.StdEncoding.EncodeToString(v)
		jr.ValueB64 = &s
	}
	if err := enc.Encode(&jr); err != nil {
		return writeError{err}
	}
	return nil
}

// plural is "1 record" or "n records".
func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.FormatUint(n, 10) + " " + what + "s"
}
