package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/logd/logd/internal/wirefuzz"
)

// TestBadInputOverTheWire sends random and mutated frames (package
// wirefuzz: bad topics, offsets, record sizes over --max-record-bytes and
// over gRPC's limit, undecodable protobuf, wrong message counts, unknown
// methods) to the logd binary from 16 connections at once, as every
// principal, unary calls and streams, for a few seconds, while a
// well-behaved client checks every answer it gets. logd must answer only
// sane statuses (wirefuzz.Sane), serve the well-behaved client correctly
// during and after, never panic (nor, built with -race, report a race),
// and get back to its goroutine count of before once the clients are
// gone. internal/server/TestBadInputOverTheWire runs the same in process,
// with goleak.
func TestBadInputOverTheWire(t *testing.T) {
	if testing.Short() {
		t.Skip("long: seconds of fuzzing")
	}
	const (
		maxRecord = 4096
		fuzzFor   = 4 * time.Second
		maxCalls  = 2000 // per fuzzer, if fuzzFor allows so many
		// Goroutines logd may run beyond its count before the fuzzing
		// once the clients are gone: the topics the fuzzers made hold
		// none, so this only absorbs a call still ending.
		slack = 5
	)
	seed := testSeed(t)
	p := startLogd(t, t.TempDir(), t.TempDir(), "--max-record-bytes", strconv.Itoa(maxRecord))
	good := p.Client(t, "alice")
	warm, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	if n, err := wirefuzz.Steady(warm, good, wirefuzz.SteadyTopic); err != nil || n == 0 {
		t.Fatalf("steady client before the fuzzing: %d records, %v", n, err)
	}
	cancel()
	baseline, _ := p.goroutines(t)

	var conns []*grpc.ClientConn
	targets := wirefuzz.DefaultTargets(func(cn string) grpc.ClientConnInterface {
		conn := p.Dial(t, p.configDir, cn)
		conns = append(conns, conn)
		return conn
	}, 4, maxRecord)
	ctx, cancel := context.WithTimeout(context.Background(), fuzzFor)
	defer cancel()
	stats, steady, err := wirefuzz.RunBeside(ctx, targets, seed, maxCalls, good)
	t.Logf("fuzzed: %v", stats)
	if err != nil {
		t.Errorf("steady client during the fuzzing, after %d records: %v", steady, err)
	}
	if err := stats.Err(); err != nil {
		t.Error(err)
	}
	during, _ := p.goroutines(t)
	for _, conn := range conns {
		conn.Close()
	}

	after := p.waitGoroutines(t, baseline+slack, 15*time.Second)
	t.Logf("logd goroutines: %d before, %d with the fuzzers connected, %d after they left; steady client: %d records meanwhile",
		baseline, during, after, steady)
	if p.hasExited() {
		t.Fatalf("%s exited: %v", p.name, p.waitErr)
	}
	actx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if n, err := wirefuzz.Steady(actx, good, wirefuzz.SteadyTopic); err != nil || n == 0 {
		t.Errorf("steady client after the fuzzing: %d records, %v", n, err)
	}
	if strings.Contains(p.stderr.String(), "panic") {
		t.Errorf("%s wrote \"panic\" to stderr", p.name)
	}
	p.Stop(t)
}
