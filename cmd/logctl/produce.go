package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/logd/logd/api/client"
)

// produceWindow is how many records a produce stream keeps in flight.
const produceWindow = 1024

// Input limits: the longest line, and the largest frame accepted.
const (
	maxLineBytes  = 64 << 20
	maxFrameBytes = 256 << 20
)

type produceOpts struct {
	topic        string
	value        string
	valueSet     bool
	file         string
	format       string
	printOffsets bool
}

const produceExample = `  # each line of stdin is a record
  seq 1000000 | logctl produce --topic alice/numbers
  # one record
  logctl produce --topic alice/orders --value 'order 17 shipped'
  # print the offset of each record
  printf 'a\nb\n' | logctl produce --topic alice/orders --print-offsets
  # JSON lines: {"value": "text"} or {"value_b64": "aGVsbG8="}
  logctl produce --topic alice/orders --file orders.jsonl --format json
  # length-prefixed binary records (4-byte big-endian length, then bytes)
  logctl produce --topic alice/blobs --file blobs.bin --format framed
  # as alice (alice-client.pem of the config directory)
  echo hi | logctl --as alice produce --topic alice/orders`

func (a *app) produceCmd() *cobra.Command {
	o := &produceOpts{}
	c := &cobra.Command{
		Use:   "produce --topic TOPIC [--value V | --file F] [--format lines|json|framed]",
		Short: "Append records to a topic from stdin, a file or a flag",
		Long: `Append records to a topic, which is made by its first record.

Records come from stdin (each line is a record, without its newline), from
--file in --format lines, json (one object per line: {"value": "text"} or
{"value_b64": "base64"}) or framed (each record a 4-byte big-endian length
then its bytes), or --value for one record. They stream over one
ProduceStream with up to 1024 records in flight, so a million piped lines
take seconds. At the end logctl prints "produced N records to TOPIC
(offsets A..B)" on stderr; --print-offsets prints each record's offset on
stdout as it is acknowledged. A progress indicator shows on stderr when it
is a terminal.`,
		Example: produceExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.valueSet = cmd.Flags().Changed("value")
			return a.produce(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVarP(&o.topic, "topic", "t", "", "`topic` to append to (required)")
	f.StringVar(&o.value, "value", "", "append this one record instead of reading input")
	f.StringVarP(&o.file, "file", "f", "", "read records from `file` instead of stdin (- is stdin)")
	f.StringVar(&o.format, "format", "lines", "input `format`: lines, json or framed")
	f.BoolVar(&o.printOffsets, "print-offsets", false, "print each record's offset on stdout")
	c.MarkFlagRequired("topic")
	c.MarkFlagsMutuallyExclusive("value", "file")
	c.RegisterFlagCompletionFunc("format", fixedCompletions("lines", "json", "framed"))
	return c
}

// fixedCompletions completes a flag from a fixed list of values.
func fixedCompletions(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

func (a *app) produce(ctx context.Context, o *produceOpts) error {
	if o.topic == "" {
		return usagef("--topic must not be empty")
	}
	switch o.format {
	case "lines", "json", "framed":
	default:
		return usagef("--format %q: want lines, json or framed", o.format)
	}
	if o.valueSet && o.format != "lines" {
		return usagef("--format applies to input; --value is a single record")
	}
	var (
		in   io.Reader = a.stdin
		name           = "stdin"
		size int64     = -1
	)
	if o.file != "" && o.file != "-" {
		fh, err := os.Open(o.file)
		if err != nil {
			return usagef("--file: %v", err)
		}
		defer fh.Close()
		if st, err := fh.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in, name = fh, o.file
	}

	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.Close()

	if o.valueSet {
		uctx, cancel := a.unary(ctx)
		defer cancel()
		off, err := c.Produce(uctx, o.topic, []byte(o.value))
		if err != nil {
			return a.callError(ctx, err, "")
		}
		if o.printOffsets {
			fmt.Fprintln(a.stdout, off)
		}
		fmt.Fprintf(a.stderr, "produced 1 record to %s (offset %d)\n", o.topic, off)
		return nil
	}

	var bar *progressbar.ProgressBar
	if isTerminal(a.stderr) {
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription("producing to "+o.topic),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		in = io.TeeReader(in, bar)
	}
	next := recordReader(in, name, o.format)

	out := bufio.NewWriter(a.stdout)
	res, err := a.stream(ctx, c, o.topic, next, func(off uint64) {
		if o.printOffsets {
			out.WriteString(strconv.FormatUint(off, 10))
			out.WriteByte('\n')
		}
	})
	if bar != nil {
		bar.Finish()
	}
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = failf("write offsets: %v", ferr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "produced %s\n", res.summary(o.topic))
	return nil
}

// produced is what a stream of produces achieved.
type produced struct {
	n           uint64
	first, last uint64
}

func (p produced) summary(topic string) string {
	switch p.n {
	case 0:
		return fmt.Sprintf("0 records to %s", topic)
	case 1:
		return fmt.Sprintf("1 record to %s (offset %d)", topic, p.first)
	}
	return fmt.Sprintf("%d records to %s (offsets %d..%d)", p.n, topic, p.first, p.last)
}

// stream sends the records next returns (until io.EOF) over a Producer,
// calls acked with each offset in order, and returns what was produced.
// Records that other clients write meanwhile may fall between first and
// last.
func (a *app) stream(ctx context.Context, c *client.Client, topic string, next func() ([]byte, error), acked func(uint64)) (produced, error) {
	var res produced
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := c.NewProducer(sctx, topic, produceWindow)
	if err != nil {
		return res, a.callError(ctx, err, "")
	}
	acks := make(chan *client.Ack, produceWindow)
	waited := make(chan error, 1)
	go func() {
		for ack := range acks {
			off, err := ack.Wait(sctx)
			if err != nil {
				waited <- err
				cancel()
				return
			}
			if res.n == 0 {
				res.first = off
			}
			res.last = off
			res.n++
			acked(off)
		}
		waited <- nil
	}()

	var inputErr, sendErr error
	for {
		v, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			inputErr = err
			break
		}
		ack, err := p.Send(sctx, v)
		if err != nil {
			sendErr = err
			break
		}
		select {
		case acks <- ack:
		case <-sctx.Done():
		}
		if sctx.Err() != nil {
			break
		}
	}
	close(acks)
	waitErr := <-waited
	closeErr := p.Close()

	done := ""
	if res.n > 0 {
		done = "produced " + res.summary(topic)
	}
	// The first error that says why: the server's, then the input's.
	for _, err := range []error{waitErr, sendErr, closeErr} {
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, client.ErrProducerClosed) {
			return res, a.callError(ctx, err, done)
		}
	}
	if inputErr != nil {
		return res, usageError{fmt.Errorf("%w%s", inputErr, doneSuffix(done))}
	}
	if ctx.Err() != nil {
		return res, interruptedError{done}
	}
	return res, nil
}

// recordReader returns a function that reads the next record of in in
// format, or io.EOF at the end. name names in in errors.
func recordReader(in io.Reader, name, format string) func() ([]byte, error) {
	switch format {
	case "framed":
		br := bufio.NewReaderSize(in, 1<<20)
		var pos int64
		var hdr [4]byte
		return func() ([]byte, error) {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				if err == io.EOF {
					return nil, io.EOF
				}
				return nil, fmt.Errorf("%s: truncated frame header at byte %d", name, pos)
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n > maxFrameBytes {
				return nil, fmt.Errorf("%s: frame at byte %d declares %d bytes, more than %d (is it --format framed?)", name, pos, n, maxFrameBytes)
			}
			v := make([]byte, n)
			if _, err := io.ReadFull(br, v); err != nil {
				return nil, fmt.Errorf("%s: frame at byte %d declares %d bytes but the input ends first", name, pos, n)
			}
			pos += 4 + int64(n)
			return v, nil
		}
	case "json":
		sc := newLineScanner(in)
		line := 0
		return func() ([]byte, error) {
			for sc.Scan() {
				line++
				b := bytes.TrimSpace(sc.Bytes())
				if len(b) == 0 {
					continue
				}
				var rec struct {
					Value    *string `json:"value"`
					ValueB64 *string `json:"value_b64"`
				}
				if err := json.Unmarshal(b, &rec); err != nil {
					return nil, fmt.Errorf("%s:%d: not a JSON object: %v", name, line, err)
				}
				switch {
				case rec.Value != nil && rec.ValueB64 != nil:
					return nil, fmt.Errorf("%s:%d: has both \"value\" and \"value_b64\"; want one", name, line)
				case rec.Value != nil:
					return []byte(*rec.Value), nil
				case rec.ValueB64 != nil:
					v, err := base64.StdEncoding.DecodeString(*rec.ValueB64)
					if err != nil {
						return nil, fmt.Errorf("%s:%d: \"value_b64\": %v", name, line, err)
					}
					return v, nil
				}
				return nil, fmt.Errorf("%s:%d: want {\"value\": \"text\"} or {\"value_b64\": \"base64\"}", name, line)
			}
			return nil, scanErr(sc, name)
		}
	}
	sc := newLineScanner(in)
	return func() ([]byte, error) {
		if sc.Scan() {
			return bytes.Clone(sc.Bytes()), nil
		}
		return nil, scanErr(sc, name)
	}
}

func newLineScanner(in io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	return sc
}

// scanErr is io.EOF at the end, or why scanning stopped.
func scanErr(sc *bufio.Scanner, name string) error {
	err := sc.Err()
	if err == nil {
		return io.EOF
	}
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("%s: a line is longer than %d bytes (use --format framed for large records)", name, maxLineBytes)
	}
	return fmt.Errorf("%s: %v", name, err)
}
