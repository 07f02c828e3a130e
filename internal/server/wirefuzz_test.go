package server

import (
	"context"
	"flag"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/logd/logd/internal/log"
	"github.com/logd/logd/internal/wirefuzz"
)

var fuzzSeed = flag.Uint64("seed", 0, "seed of TestBadInputOverTheWire (0: from the clock)")

// TestBadInputOverTheWire sends random and mutated frames (package
// wirefuzz) from 8 clients at once, two per principal, for a bounded
// time, while a well-behaved client checks the answers it gets. Every
// outcome must be a sane status, the well-behaved client must be served
// correctly during and after, and once the clients are gone and the
// server is shut down no goroutine may be left. test/ runs the same
// against the logd binary.
func TestBadInputOverTheWire(t *testing.T) {
	if testing.Short() {
		t.Skip("long: seconds of fuzzing")
	}
	seed := *fuzzSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./internal/server -run '^TestBadInputOverTheWire$' -seed %d)", seed, seed)
	// The last cleanup to run: after the connections are closed and the
	// server has shut down (both registered later).
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, before, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
		}
	})
	const (
		maxRecord = 4096
		maxCalls  = 1000 // per fuzzer, if 3 s allow so many
	)
	ts := startServer(t, func(c *Config, l *log.Config) {
		l.MaxRecordBytes = maxRecord
		l.Logger, c.Logger = zap.NewNop(), zap.NewNop() // thousands of calls
	})
	var conns []*grpc.ClientConn
	targets := wirefuzz.DefaultTargets(func(cn string) grpc.ClientConnInterface {
		conn := dial(t, ts.addr, certDir, cn)
		conns = append(conns, conn)
		return conn
	}, 2, maxRecord)
	good := client(t, ts, "alice")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	stats, steady, err := wirefuzz.RunBeside(ctx, targets, seed, maxCalls, good)
	t.Logf("fuzzed: %v", stats)
	t.Logf("steady client: %d records produced and read back meanwhile", steady)
	if err != nil {
		t.Errorf("steady client during the fuzzing: %v", err)
	}
	if err := stats.Err(); err != nil {
		t.Error(err)
	}
	for _, conn := range conns {
		conn.Close()
	}

	// After: still served.
	after, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if n, err := wirefuzz.Steady(after, good, wirefuzz.SteadyTopic); err != nil || n == 0 {
		t.Errorf("steady client after the fuzzing: %d records, %v", n, err)
	}
}
