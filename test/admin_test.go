package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// adminTopic is the part of logctl's --format json topic the tests read.
type adminTopic struct {
	Name          string  `json:"name"`
	LowestOffset  uint64  `json:"lowest_offset"`
	HighestOffset *uint64 `json:"highest_offset"`
	NextOffset    uint64  `json:"next_offset"`
	Records       uint64  `json:"records"`
	SizeBytes     uint64  `json:"size_bytes"`
	Segments      uint32  `json:"segments"`
	RetentionAge  float64 `json:"retention_age_seconds"`
	SyncPolicy    string  `json:"sync_policy"`
	TailConsumers uint32  `json:"tail_consumers"`
	OldestTime    string  `json:"oldest_record_time"`
}

// jsonTopics parses logctl's JSON lines of topics.
func jsonTopics(t testing.TB, out string) []adminTopic {
	t.Helper()
	var topics []adminTopic
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var at adminTopic
		if err := json.Unmarshal(sc.Bytes(), &at); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		topics = append(topics, at)
	}
	return topics
}

// tableRows parses logctl topics' table: the header, then one row of
// fields per topic.
func tableRows(t testing.TB, out string) [][]string {
	t.Helper()
	var rows [][]string
	for line := range strings.Lines(out) {
		rows = append(rows, strings.Fields(line))
	}
	if len(rows) == 0 || !slices.Equal(rows[0], []string{"NAME", "LOWEST", "NEXT", "RECORDS", "BYTES", "SEGMENTS"}) {
		t.Fatalf("topics table without its header:\n%s", out)
	}
	return rows[1:]
}

// TestAdminLogctl runs logctl topics, describe and delete-topic against
// the real logd with the default policy: what each principal sees, the
// output formats, refusals and exit codes, a delete while a consumer
// follows the topic, and the gauges of the deleted topic.
func TestAdminLogctl(t *testing.T) {
	p := startLogd(t, t.TempDir(), "", "--sync", "none", "--retention-age", "36h")
	for topic, n := range map[string]int{"alice/orders": 10, "alice/tmp": 3, "bob/b": 2} {
		var in strings.Builder
		for i := range n {
			fmt.Fprintf(&in, "%s %d\n", topic, i)
		}
		owner, _, _ := strings.Cut(topic, "/")
		wantLogctl(t, p, 0, in.String(), []string{"--as", owner, "produce", "--topic", topic})
	}
	wantLogctl(t, p, 0, "", []string{"produce", "--topic", "ops", "--value", "x"})

	t.Run("Topics", func(t *testing.T) {
		r := wantLogctl(t, p, 0, "", []string{"topics"})
		rows := tableRows(t, r.stdout)
		var names []string
		for _, row := range rows {
			names = append(names, row[0])
		}
		if want := []string{"alice/orders", "alice/tmp", "bob/b", "ops"}; !slices.Equal(names, want) {
			t.Fatalf("root's topics %v, want %v:\n%s", names, want, r.stdout)
		}
		// 10 records of 14 bytes ("alice/orders 0"), each with a 24-byte
		// frame header and a 12-byte index entry, in one segment.
		if got := rows[0][1:]; !slices.Equal(got, []string{"0", "10", "10", "500", "1"}) {
			t.Errorf("alice/orders row %v, want lowest 0, next 10, 10 records, 500 bytes, 1 segment", rows[0])
		}

		r = wantLogctl(t, p, 0, "", []string{"--as", "alice", "topics"})
		if rows := tableRows(t, r.stdout); len(rows) != 2 || rows[0][0] != "alice/orders" || rows[1][0] != "alice/tmp" {
			t.Errorf("alice's topics:\n%s\nwant alice/orders and alice/tmp only", r.stdout)
		}
		r = wantLogctl(t, p, 0, "", []string{"--as", "bob", "topics", "--format", "json"})
		if got := jsonTopics(t, r.stdout); len(got) != 1 || got[0].Name != "bob/b" || got[0].Records != 2 || got[0].NextOffset != 2 {
			t.Errorf("bob's topics as JSON %+v, want bob/b with 2 records", got)
		}
		r = wantLogctl(t, p, 0, "", []string{"--as", "alice", "topics", "--prefix", "alice/t", "--format", "json"})
		if got := jsonTopics(t, r.stdout); len(got) != 1 || got[0].Name != "alice/tmp" {
			t.Errorf("alice's topics under alice/t %+v, want alice/tmp", got)
		}
		// A principal that may administer nothing gets an empty list.
		r = wantLogctl(t, p, 0, "", []string{"--as", "nobody", "topics"}, "no topics")
		if r.stdout != "" {
			t.Errorf("nobody's topics: got %q on stdout, want nothing", r.stdout)
		}
	})

	t.Run("Describe", func(t *testing.T) {
		r := wantLogctl(t, p, 0, "", []string{"--as", "alice", "describe", "alice/orders"})
		for _, want := range []string{
			"topic           alice/orders\n",
			"offsets         0..9 (10 records; the next gets 10)\n",
			"size            500 B (500 bytes) in 1 segment\n",
			"retention       whole segments removed, keeping records younger than 36h0m0s\n",
			"sync            none\n",
			"tail consumers  0\n",
			"state           ok\n",
			"oldest record   ",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("describe: no line %q in:\n%s", want, r.stdout)
			}
		}
		r = wantLogctl(t, p, 0, "", []string{"describe", "bob/b", "--format", "json"})
		got := jsonTopics(t, r.stdout)
		if len(got) != 1 {
			t.Fatalf("describe --format json: %q, want one object", r.stdout)
		}
		d := got[0]
		if d.Name != "bob/b" || d.HighestOffset == nil || *d.HighestOffset != 1 || d.RetentionAge != 36*3600 || d.SyncPolicy != "none" || d.Segments != 1 {
			t.Errorf("describe --format json: %+v", d)
		}
		if _, err := time.Parse(time.RFC3339Nano, d.OldestTime); err != nil {
			t.Errorf("oldest_record_time %q: %v", d.OldestTime, err)
		}
	})

	t.Run("Refusals", func(t *testing.T) {
		wantLogctl(t, p, 1, "", []string{"--as", "alice", "describe", "bob/b"},
			`logctl: alice may not administer topic "bob/b" (permission denied)`)
		wantLogctl(t, p, 1, "", []string{"--as", "bob", "delete-topic", "alice/orders", "--yes"},
			`logctl: bob may not administer topic "alice/orders" (permission denied)`)
		wantLogctl(t, p, 1, "", []string{"--as", "nobody", "describe", "ops"},
			`logctl: nobody may not administer topic "ops" (permission denied)`)
		wantLogctl(t, p, 1, "", []string{"--as", "alice", "describe", "alice/nosuch"},
			`topic "alice/nosuch" does not exist`)
		wantLogctl(t, p, 1, "", []string{"delete-topic", "nosuch", "--yes"},
			`topic "nosuch" does not exist`)
		wantLogctl(t, p, 1, "", []string{"describe", "a//b"}, "invalid topic name", "(invalid argument)")
		// Neither created a topic.
		r := wantLogctl(t, p, 0, "", []string{"topics", "--format", "json"})
		if got := len(jsonTopics(t, r.stdout)); got != 4 {
			t.Errorf("root sees %d topics after the refusals, want the 4 produced:\n%s", got, r.stdout)
		}
	})

	t.Run("BadUsage", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"delete-topic", "alice/tmp"}, "add --yes to confirm"},
			{[]string{"delete-topic"}, "want one TOPIC argument, got 0"},
			{[]string{"describe", "a", "b"}, "want one TOPIC argument, got 2"},
			{[]string{"describe", "a", "--format", "xml"}, `--format "xml"`},
			{[]string{"topics", "--format", "text"}, `--format "text"`},
			{[]string{"topics", "extra"}, `unknown command "extra"`},
		} {
			wantLogctl(t, p, 2, "", tc.args, tc.want)
		}
		// Help has examples.
		for _, cmd := range []string{"topics", "describe", "delete-topic"} {
			r := wantLogctl(t, p, 0, "", []string{cmd, "--help"})
			if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "logctl ") {
				t.Errorf("%s --help has no examples:\n%s", cmd, r.stdout)
			}
		}
	})

	t.Run("DeleteWhileFollowed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		defer cancel()
		cmd := logctlCmd(ctx, p, "--as", "alice", "consume", "--topic", "alice/tmp", "--from", "end", "--follow")
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Wait until logd counts the follower at the tail.
		deadline := time.Now().Add(streamTimeout)
		for {
			r := wantLogctl(t, p, 0, "", []string{"--as", "alice", "describe", "alice/tmp", "--format", "json"})
			if got := jsonTopics(t, r.stdout); len(got) == 1 && got[0].TailConsumers == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("logd never counted the follower; its stderr:\n%s", stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}

		wantLogctl(t, p, 0, "", []string{"--as", "alice", "delete-topic", "alice/tmp", "--yes"},
			"deleted topic alice/tmp (3 records, ")
		select {
		case <-exited:
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("consume --follow of the deleted topic: exit %d, want 1; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), `topic "alice/tmp" was deleted`) {
				t.Errorf("consume --follow of the deleted topic: stderr does not say so:\n%s", stderr.String())
			}
		case <-time.After(stopTimeout):
			t.Fatalf("consume --follow still runs %v after its topic was deleted", stopTimeout)
		}
		checkLogctlRace(t, stderr.String())

		r := wantLogctl(t, p, 0, "", []string{"--as", "alice", "topics"})
		if rows := tableRows(t, r.stdout); len(rows) != 1 || rows[0][0] != "alice/orders" {
			t.Errorf("alice's topics after the delete:\n%s\nwant alice/orders only", r.stdout)
		}
		wantLogctl(t, p, 1, "", []string{"--as", "alice", "describe", "alice/tmp"}, `topic "alice/tmp" does not exist`)
		// No gauge reports the deleted topic; the others stay.
		pollMetrics(t, p.HTTPAddr, []expectation{
			{`logd_topic_next_offset{topic="alice/tmp"}`, absent()},
			{`logd_topic_size_bytes{topic="alice/tmp"}`, absent()},
			{`logd_topic_segments{topic="alice/tmp"}`, absent()},
			{`logd_topic_tail_consumers{topic="alice/tmp"}`, absent()},
			{`logd_topic_next_offset{topic="alice/orders"}`, eq(10)},
		}, metricsTimeout)

		// The next produce makes the topic anew, from offset 0.
		wantLogctl(t, p, 0, "", []string{"--as", "alice", "produce", "--topic", "alice/tmp", "--value", "again"},
			"produced 1 record to alice/tmp (offset 0)")
	})
}
