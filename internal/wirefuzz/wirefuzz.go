// Package wirefuzz sends bad log.v1 traffic to a logd server, for tests:
// random and mutated protobuf frames, random topics (valid, invalid,
// huge, not UTF-8), offsets and record sizes (around and over the
// server's --max-record-bytes and gRPC's message limit), on unary calls
// and on streams of the Log and Admin services, and calls of methods that
// do not exist. Frames go through Codec, which passes bytes as they are,
// so the server's decoder sees exactly what the fuzzer made.
//
// Every call's outcome is checked: Sane says which statuses a client may
// get for bad input, and the fuzzer adds the cancellations and deadlines
// it caused itself. What is not sane is kept in Stats.Bad.
//
// Steady is the well-behaved client to run beside the fuzzers: it checks
// that the server keeps answering correctly.
//
// A Fuzzer is used by one goroutine; Run runs several at once. Codec,
// Sane and Steady are safe for concurrent use.
package wirefuzz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	logv1 "github.com/logd/logd/api/v1"
)

// Frame is a message as it goes over the wire: protobuf bytes, or not.
type Frame []byte

// Codec is a grpc encoding.Codec that sends a *Frame's bytes as they are
// and receives a message into a *Frame. Its name is "proto", so the
// server decodes with its protobuf codec. Pass it with
// grpc.ForceCodec(Codec{}).
type Codec struct{}

// Marshal returns the bytes of v, a *Frame.
func (Codec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*Frame)
	if !ok {
		return nil, fmt.Errorf("wirefuzz: cannot marshal %T, only *Frame", v)
	}
	return *f, nil
}

// Unmarshal copies data into v, a *Frame.
func (Codec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*Frame)
	if !ok {
		return fmt.Errorf("wirefuzz: cannot unmarshal into %T, only *Frame", v)
	}
	*f = append((*f)[:0], data...)
	return nil
}

// Name is the content-subtype: "proto".
func (Codec) Name() string { return "proto" }

// Sane returns nil if err, the end of a call, is a status that a log.v1
// server may answer bad input with, and says why not otherwise. Sane are:
//   - OK (nil);
//   - InvalidArgument, NotFound, OutOfRange, PermissionDenied and
//     ResourceExhausted: logd's answers to a bad topic, record, offset or
//     size, an unknown topic, a refusal, a message over gRPC's limit;
//   - Unimplemented: a method that does not exist;
//   - Internal only as gRPC gives it before logd's code runs: a frame that
//     does not decode as the method's message, or the wrong number of
//     messages on a call that takes one.
//
// Unknown, Unavailable, DataLoss, any other Internal, and the other codes
// mean the server failed, not the request. Canceled and DeadlineExceeded
// are not sane either: the server did not answer; a caller that ended
// the call itself allows them (the Fuzzer does).
func Sane(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("not a gRPC status: %v", err)
	}
	switch st.Code() {
	case codes.OK, codes.InvalidArgument, codes.NotFound, codes.OutOfRange, codes.PermissionDenied,
		codes.ResourceExhausted, codes.Unimplemented:
		return nil
	case codes.Internal:
		for _, prefix := range grpcDecodeErrors {
			if strings.HasPrefix(st.Message(), prefix) {
				return nil
			}
		}
	}
	return fmt.Errorf("%v: %s", st.Code(), st.Message())
}

// grpcDecodeErrors begin the messages of the Internal statuses grpc-go
// (1.85) answers undecodable frames and wrong message counts with.
var grpcDecodeErrors = []string{
	"grpc: failed to unmarshal the received message",
	"cardinality violation",
}

// Config says what a Fuzzer sends.
type Config struct {
	// MaxRecordBytes is the server's largest record value: record sizes
	// around it, and over gRPC's message limit (MaxRecordBytes + 16 KiB),
	// are tried. Zero means 4096.
	MaxRecordBytes int
	// Topics are valid topics to aim at, besides made-up ones (valid
	// "fuzz/N", invalid, huge).
	Topics []string
	// Delete lets the fuzzer call Admin.DeleteTopic on Topics and made-up
	// names. Keep it off where a principal could delete topics others
	// rely on.
	Delete bool
	// Timeout bounds each call that is not meant to end early. Zero
	// means 10 s. A call it ends counts as Bad: the server did not answer.
	Timeout time.Duration
}

// Stats counts what a Fuzzer did.
type Stats struct {
	Calls  int                           // calls and streams made
	Frames int                           // frames sent
	Codes  map[string]map[codes.Code]int // method -> code -> calls
	Bad    []string                      // outcomes that are not sane, the first maxBad
	badN   int
}

const maxBad = 20

func (s *Stats) add(method string, c codes.Code) {
	s.Calls++
	if s.Codes == nil {
		s.Codes = map[string]map[codes.Code]int{}
	}
	if s.Codes[method] == nil {
		s.Codes[method] = map[codes.Code]int{}
	}
	s.Codes[method][c]++
}

func (s *Stats) bad(method string, err error) {
	s.badN++
	if len(s.Bad) < maxBad {
		s.Bad = append(s.Bad, fmt.Sprintf("%s: %v", method, err))
	}
}

// merge adds o to s.
func (s *Stats) merge(o Stats) {
	s.Calls += o.Calls
	s.Frames += o.Frames
	for m, cs := range o.Codes {
		for c, n := range cs {
			if s.Codes == nil {
				s.Codes = map[string]map[codes.Code]int{}
			}
			if s.Codes[m] == nil {
				s.Codes[m] = map[codes.Code]int{}
			}
			s.Codes[m][c] += n
		}
	}
	s.badN += o.badN
	for _, b := range o.Bad {
		if len(s.Bad) < maxBad {
			s.Bad = append(s.Bad, b)
		}
	}
}

// Err returns an error naming the outcomes that were not sane and the
// sane answers no call drew (a fuzzing that missed a path tests less than
// it seems), or nil.
func (s Stats) Err() error {
	var errs []error
	if s.badN > 0 {
		errs = append(errs, fmt.Errorf("%d calls ended with a status that is not sane; the first:\n%s", s.badN, strings.Join(s.Bad, "\n")))
	}
	for _, c := range []codes.Code{codes.OK, codes.InvalidArgument, codes.NotFound, codes.OutOfRange,
		codes.PermissionDenied, codes.ResourceExhausted, codes.Unimplemented, codes.Internal} {
		if s.CodeCount(c) == 0 {
			errs = append(errs, fmt.Errorf("no call ended with %v: the fuzzing missed a path", c))
		}
	}
	return errors.Join(errs...)
}

// CodeCount returns the calls of every method that ended with c.
func (s Stats) CodeCount(c codes.Code) int {
	n := 0
	for _, cs := range s.Codes {
		n += cs[c]
	}
	return n
}

// String sums the codes up per method.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls, %d frames", s.Calls, s.Frames)
	methods := make([]string, 0, len(s.Codes))
	for m := range s.Codes {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	for _, m := range methods {
		cs := make([]codes.Code, 0, len(s.Codes[m]))
		for c := range s.Codes[m] {
			cs = append(cs, c)
		}
		slices.Sort(cs)
		fmt.Fprintf(&b, "\n  %s:", m)
		for _, c := range cs {
			fmt.Fprintf(&b, " %v %d", c, s.Codes[m][c])
		}
	}
	return b.String()
}

// Target is a connection to fuzz and what to send on it: the
// connection's client certificate makes the principal.
type Target struct {
	Conn   grpc.ClientConnInterface
	Config Config
}

// Run runs one Fuzzer per target at once, each making calls (at most
// calls, if calls > 0) until ctx ends, and returns the sum of their
// Stats. Fuzzer i is seeded with (seed, i).
func Run(ctx context.Context, targets []Target, seed uint64, calls int) Stats {
	var (
		mu    sync.Mutex
		total Stats
		wg    sync.WaitGroup
	)
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := New(tg.Conn, tg.Config, seed, uint64(i))
			for n := 0; ctx.Err() == nil && (calls <= 0 || n < calls); n++ {
				f.Call(ctx)
			}
			mu.Lock()
			defer mu.Unlock()
			total.merge(f.Stats())
		}()
	}
	wg.Wait()
	return total
}

// SteadyTopic is the topic of the Steady client that RunBeside runs. No
// fuzzer of DefaultTargets aims at it: their topics and made-up names are
// others, and a mutation would have to rewrite most of one to hit it.
const SteadyTopic = "alice/steady"

// DefaultTargets returns n targets for each principal of logd's default
// policy (root, alice, bob, nobody), each on a connection that dial makes
// for it (by client certificate CN), aiming at topics of its own, of
// others and the default. Root's, bob's and nobody's may delete topics;
// alice's, who may delete SteadyTopic, may not.
func DefaultTargets(dial func(cn string) grpc.ClientConnInterface, n, maxRecordBytes int) []Target {
	var targets []Target
	for _, p := range []struct {
		cn     string
		topics []string
		delete bool
	}{
		{"root", []string{"root/fuzz", "default", "bob/fuzz"}, true},
		{"alice", []string{"alice/fuzz", "bob/fuzz"}, false},
		{"bob", []string{"bob/fuzz", "alice/fuzz"}, true},
		{"nobody", []string{"bob/fuzz", "default"}, true},
	} {
		for range n {
			targets = append(targets, Target{Conn: dial(p.cn), Config: Config{
				MaxRecordBytes: maxRecordBytes, Topics: p.topics, Delete: p.delete,
			}})
		}
	}
	return targets
}

// RunBeside runs targets as Run does and, meanwhile, Steady on c, a
// client allowed SteadyTopic (alice or root), until ctx ends or the
// fuzzers are done. It returns the fuzzers' Stats, the records the
// steady client checked and its error.
func RunBeside(ctx context.Context, targets []Target, seed uint64, calls int, c logv1.LogClient) (Stats, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		n   int
		err error
		wg  sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err = Steady(ctx, c, SteadyTopic)
	}()
	stats := Run(ctx, targets, seed, calls)
	cancel()
	wg.Wait()
	return stats, n, err
}

// Steady is a well-behaved client of topic, which no one else writes:
// it produces numbered records and reads each back, until ctx ends, and
// checks every answer: each offset is the one after the last, each
// record reads back as it was written. It returns the records checked
// and the first wrong answer or failed call (none when ctx ended them).
func Steady(ctx context.Context, c logv1.LogClient, topic string) (int, error) {
	var last uint64
	for n := 0; ; n++ {
		v := fmt.Sprintf("steady-%d", n)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := c.Produce(cctx, &logv1.ProduceRequest{Topic: topic, Record: &logv1.Record{Value: []byte(v)}})
		if err == nil {
			if off := res.GetOffset(); n > 0 && off != last+1 {
				err = fmt.Errorf("produce %q: got offset %d, want %d", v, off, last+1)
			}
			last = res.GetOffset()
		}
		var rec *logv1.ConsumeResponse
		if err == nil {
			rec, err = c.Consume(cctx, &logv1.ConsumeRequest{Topic: topic, Offset: last})
		}
		cancel()
		if over(ctx) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("record %d: %w", n, err)
		}
		if r := rec.GetRecord(); r.GetOffset() != last || string(r.GetValue()) != v {
			return n, fmt.Errorf("consume %d: got %q at %d, want %q", last, r.GetValue(), r.GetOffset(), v)
		}
	}
}

// over reports whether ctx has ended or its deadline has passed: gRPC
// may fail a call for the deadline a moment before ctx reports it.
func over(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// Fuzzer makes random calls on one connection.
type Fuzzer struct {
	conn  grpc.ClientConnInterface
	cfg   Config
	rng   *rand.Rand
	stats Stats
	// outer is the context of the current Call: when it ends, so do the
	// calls, by the fuzzer's doing.
	outer context.Context
}

// New returns a Fuzzer calling on conn, its choices drawn from the seed
// (seed, stream).
func New(conn grpc.ClientConnInterface, cfg Config, seed, stream uint64) *Fuzzer {
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = 4096
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Fuzzer{conn: conn, cfg: cfg, rng: rand.New(rand.NewPCG(seed, stream))}
}

// Stats returns what the Fuzzer did so far.
func (f *Fuzzer) Stats() Stats { return f.stats }

// Methods the fuzzer calls, and the message each takes.
const (
	produce       = "/log.v1.Log/Produce"
	consume       = "/log.v1.Log/Consume"
	produceStream = "/log.v1.Log/ProduceStream"
	consumeStream = "/log.v1.Log/ConsumeStream"
	listTopics    = "/log.v1.Admin/ListTopics"
	describeTopic = "/log.v1.Admin/DescribeTopic"
	deleteTopic   = "/log.v1.Admin/DeleteTopic"
)

// Call makes one random call: a unary call, a stream, or a method that
// does not exist, with random and mutated frames.
func (f *Fuzzer) Call(ctx context.Context) {
	f.outer = ctx
	switch n := f.rng.IntN(100); {
	case n < 25:
		f.unary(ctx, produce)
	case n < 40:
		f.unary(ctx, consume)
	case n < 45:
		f.unary(ctx, listTopics)
	case n < 50:
		f.unary(ctx, describeTopic)
	case n < 53 && f.cfg.Delete:
		f.unary(ctx, deleteTopic)
	case n < 70:
		f.produceStream(ctx)
	case n < 88:
		f.consumeStream(ctx)
	case n < 95:
		f.wrongCount(ctx)
	default:
		f.unknownMethod(ctx)
	}
}

var opts = []grpc.CallOption{grpc.ForceCodec(Codec{})}

// unary calls method with one frame and checks the outcome.
func (f *Fuzzer) unary(ctx context.Context, method string) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	in, out := f.frame(method), Frame(nil)
	f.stats.Frames++
	err := f.conn.Invoke(ctx, method, &in, &out, opts...)
	f.check(method, err, false)
}

// produceStream sends some frames on a ProduceStream, then closes it or
// cancels it, reading the answers.
func (f *Fuzzer) produceStream(ctx context.Context) {
	f.send(ctx, produceStream, produceStream, f.rng.IntN(6), f.rng.IntN(8) == 0)
}

// send opens a stream of method, sends n frames, then closes its side
// (or, with abort, cancels the call), reads the answers to the end and
// checks how it ended, as a call of what.
func (f *Fuzzer) send(ctx context.Context, method, what string, n int, abort bool) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	s, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, opts...)
	if err != nil {
		f.check(what, err, false)
		return
	}
	for range n {
		in := f.frame(method)
		f.stats.Frames++
		if s.SendMsg(&in) != nil {
			break // RecvMsg has the status
		}
	}
	if abort {
		cancel()
	} else if err := s.CloseSend(); err != nil {
		f.check(what, err, false)
		return
	}
	for {
		var out Frame
		if err := s.RecvMsg(&out); err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			f.check(what, err, abort)
			return
		}
	}
}

// consumeStream opens a ConsumeStream with one frame and reads a few
// records, or waits at the tail until a short deadline.
func (f *Fuzzer) consumeStream(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(10+f.rng.IntN(200))*time.Millisecond)
	defer cancel()
	s, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, consumeStream, opts...)
	if err != nil {
		f.check(consumeStream, err, true)
		return
	}
	in := f.frame(consumeStream)
	f.stats.Frames++
	if s.SendMsg(&in) == nil {
		s.CloseSend() // RecvMsg has any error
	}
	for n := f.rng.IntN(20); ; n-- {
		var out Frame
		if err := s.RecvMsg(&out); err != nil {
			f.check(consumeStream, err, true)
			return
		}
		if n == 0 {
			cancel()
		}
	}
}

// wrongCount sends no frame or two where a method takes one: gRPC itself
// refuses the call.
func (f *Fuzzer) wrongCount(ctx context.Context) {
	method := []string{produce, consume, consumeStream, describeTopic}[f.rng.IntN(4)]
	f.send(ctx, method, method+" (wrong message count)", 2*f.rng.IntN(2), false)
}

// unknownMethod calls a method or service that does not exist.
func (f *Fuzzer) unknownMethod(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	// Header values stay printable ASCII: a malformed HTTP/2 header is
	// refused by the transport (PROTOCOL_ERROR) before gRPC routes it.
	method := []string{"/log.v1.Log/Truncate", "/log.v1.Nope/Produce", "/log.v1.Log/", "/log.v1.Log/Produce/x",
		"/grpc.health.v1.Health/Watch2", fmt.Sprintf("/log.v1.Log/%x", f.rng.Uint64())}[f.rng.IntN(6)]
	in, out := f.frame(produce), Frame(nil)
	f.stats.Frames++
	err := f.conn.Invoke(ctx, method, &in, &out, opts...)
	f.check("unknown method", err, false)
}

// check records a call's outcome. ended says the fuzzer canceled the call
// or gave it a deadline of its own: Canceled and DeadlineExceeded are
// then its doing, as they are once the context of Call has ended.
func (f *Fuzzer) check(method string, err error, ended bool) {
	c := status.Code(err)
	f.stats.add(method, c)
	if (ended || over(f.outer)) && (c == codes.Canceled || c == codes.DeadlineExceeded) {
		return
	}
	if err := Sane(err); err != nil {
		f.stats.bad(method, err)
	}
}

// frame returns a frame for method: most often a well-formed message with
// random fields, or one mutated, or random bytes.
func (f *Fuzzer) frame(method string) Frame {
	switch n := f.rng.IntN(100); {
	case n < 55:
		return f.message(method)
	case n < 85:
		return f.mutate(f.message(method))
	case n < 93:
		return f.randomBytes(f.size())
	default:
		// Two messages back to back: protobuf merges them.
		return append(f.message(method), f.message(method)...)
	}
}

// message returns a well-formed message for method, its fields random,
// in random order, sometimes repeated or with unknown fields.
func (f *Fuzzer) message(method string) Frame {
	var fields []Frame
	add := func(fl Frame) { fields = append(fields, fl) }
	switch method {
	case produce, produceStream:
		if f.rng.IntN(10) > 0 {
			add(bytesField(1, f.record()))
		}
		if f.rng.IntN(10) > 0 {
			add(bytesField(2, f.topicBytes()))
		}
	case consume, consumeStream:
		if f.rng.IntN(5) > 0 {
			add(varintField(1, f.offset()))
		}
		if f.rng.IntN(10) > 0 {
			add(bytesField(2, f.topicBytes()))
		}
	case listTopics, describeTopic, deleteTopic:
		if f.rng.IntN(10) > 0 {
			add(bytesField(1, f.topicBytes()))
		}
	}
	if f.rng.IntN(10) == 0 && len(fields) > 0 {
		add(fields[f.rng.IntN(len(fields))]) // the last one wins
	}
	if f.rng.IntN(10) == 0 {
		add(f.unknownField())
	}
	f.rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	var b Frame
	for _, fl := range fields {
		b = append(b, fl...)
	}
	return b
}

// record returns a Record: a value of a random size, sometimes an offset
// and a time (the server sets both).
func (f *Fuzzer) record() Frame {
	var b Frame
	if f.rng.IntN(10) > 0 {
		b = append(b, bytesField(1, f.randomBytes(f.size()))...)
	}
	if f.rng.IntN(4) == 0 {
		b = append(b, varintField(2, f.offset())...)
	}
	if f.rng.IntN(4) == 0 {
		ts := append(varintField(1, f.offset()), varintField(2, uint64(f.rng.Int32()))...)
		b = append(b, bytesField(5, ts)...)
	}
	return b
}

// size returns a record size: mostly small, else around the server's
// limit and over gRPC's.
func (f *Fuzzer) size() int {
	max := f.cfg.MaxRecordBytes
	switch f.rng.IntN(10) {
	case 0:
		return []int{0, max - 1, max, max + 1, 2 * max}[f.rng.IntN(5)]
	case 1:
		return max + 16<<10 + f.rng.IntN(1024) // over MaxRecvMsgSize
	default:
		return f.rng.IntN(64)
	}
}

// offset returns an offset: small ones, the edges of uint64, or any.
func (f *Fuzzer) offset() uint64 {
	switch f.rng.IntN(6) {
	case 0:
		return 0
	case 1:
		return uint64(f.rng.IntN(100))
	case 2:
		return []uint64{math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64, math.MaxUint64 - 1, 1 << 62}[f.rng.IntN(5)]
	default:
		return f.rng.Uint64()
	}
}

// topic returns a topic name: a given one, a made-up valid one, an
// invalid one or a huge one.
func (f *Fuzzer) topic() string {
	switch n := f.rng.IntN(20); {
	case n < 6 && len(f.cfg.Topics) > 0:
		return f.cfg.Topics[f.rng.IntN(len(f.cfg.Topics))]
	case n < 10:
		return fmt.Sprintf("fuzz/%d", f.rng.IntN(8))
	case n < 11:
		return ""
	case n < 12:
		return strings.Repeat("a", 249+f.rng.IntN(2)) // the longest valid name, and one over
	case n < 13:
		return strings.Repeat("t/", 1+f.rng.IntN(40<<10)) // huge, maybe over gRPC's limit
	default:
		return []string{"/", "/a", "a/", "a//b", ".", "..", "a/../b", "a b", "é", "a\x00b", "a\nb", "*", "alice/*", "default", "+x", "a+b"}[f.rng.IntN(16)]
	}
}

// topicBytes returns a topic's bytes, now and then not UTF-8 (which a
// protobuf library would not even encode).
func (f *Fuzzer) topicBytes() []byte {
	if f.rng.IntN(20) == 0 {
		return []byte{'a', 0xff, 0xfe, 'b'}
	}
	return []byte(f.topic())
}

// unknownField returns a field no message of log.v1 has, of any wire
// type, or a known number with the wrong wire type.
func (f *Fuzzer) unknownField() Frame {
	num := protowire.Number(1 + f.rng.IntN(20))
	if f.rng.IntN(2) == 0 {
		num = protowire.Number(100 + f.rng.IntN(1000))
	}
	switch f.rng.IntN(4) {
	case 0:
		return varintField(num, f.rng.Uint64())
	case 1:
		return bytesField(num, f.randomBytes(f.rng.IntN(32)))
	case 2:
		return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), f.rng.Uint32())
	default:
		return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), f.rng.Uint64())
	}
}

// mutate changes b in a few random ways: bit flips, bytes set, inserted,
// deleted or repeated, truncation, a huge length.
func (f *Fuzzer) mutate(b Frame) Frame {
	for range 1 + f.rng.IntN(4) {
		if len(b) == 0 {
			return f.randomBytes(1 + f.rng.IntN(16))
		}
		i := f.rng.IntN(len(b))
		switch f.rng.IntN(7) {
		case 0:
			b[i] ^= 1 << f.rng.IntN(8)
		case 1:
			b[i] = byte(f.rng.IntN(256))
		case 2:
			b = slices.Insert(b, i, f.randomBytes(1+f.rng.IntN(8))...)
		case 3:
			b = slices.Delete(b, i, min(len(b), i+1+f.rng.IntN(8)))
		case 4:
			b = b[:i]
		case 5:
			j := min(len(b), i+1+f.rng.IntN(16))
			b = slices.Insert(b, j, slices.Clone(b[i:j])...)
		default:
			b = slices.Insert(b, i, protowire.AppendVarint(nil, uint64(f.rng.Int64()))...)
		}
	}
	return b
}

func (f *Fuzzer) randomBytes(n int) Frame {
	b := make(Frame, n)
	for i := range b {
		b[i] = byte(f.rng.Uint32())
	}
	return b
}

func bytesField(num protowire.Number, v []byte) Frame {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func varintField(num protowire.Number, v uint64) Frame {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}
