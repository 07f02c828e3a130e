package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/logd/logd/api/client"
	logv1 "github.com/logd/logd/api/v1"
)

// The admin commands: topics, describe and delete-topic, over log.v1.Admin.
// Each needs the action admin on the topics it touches; topics lists only
// those.

const topicsExample = `  # every topic (as root), as a table
  logctl topics
  # alice's topics: only those alice may administer are listed
  logctl --as alice topics
  # topics under a prefix, one JSON object per line
  logctl topics --prefix alice/ --format json | jq -r '.name + " " + (.records|tostring)'`

func (a *app) topicsCmd() *cobra.Command {
	var prefix, format string
	c := &cobra.Command{
		Use:   "topics [--prefix P] [--format table|json]",
		Short: "List the topics you may administer, with their offsets and size",
		Long: `List the topics whose name starts with --prefix that you may administer
(the ACL action admin), sorted by name. Topics you may not administer are
left out, so a tenant sees its own topics; with none, the list is empty (not
an error).

--format table prints NAME, LOWEST (the oldest offset kept), NEXT (the offset
the next record gets), RECORDS, BYTES (store and index files) and SEGMENTS;
--format json prints one object per topic and line, with the fields of
'logctl describe --format json'.`,
		Example: topicsExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return usagef("--format %q: want table or json", format)
			}
			return a.adminCall(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				topics, err := c.ListTopics(ctx, prefix)
				if err != nil {
					return err
				}
				if format == "json" {
					enc := json.NewEncoder(a.stdout)
					for _, t := range topics {
						if err := enc.Encode(jsonTopicOf(t)); err != nil {
							return failf("write output: %v", err)
						}
					}
					return nil
				}
				if len(topics) == 0 {
					fmt.Fprintln(a.stderr, "logctl: no topics (only those you may administer are listed)")
					return nil
				}
				return writeTopicTable(a.stdout, topics)
			})
		},
	}
	c.Flags().StringVar(&prefix, "prefix", "", "list only topics whose name starts with `P`")
	c.Flags().StringVar(&format, "format", "table", "output `format`: table or json")
	c.RegisterFlagCompletionFunc("format", fixedCompletions("table", "json"))
	return c
}

// writeTopicTable writes topics as an aligned table with a header.
func writeTopicTable(out io.Writer, topics []*logv1.TopicDescription) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tLOWEST\tNEXT\tRECORDS\tBYTES\tSEGMENTS")
	for _, t := range topics {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", t.GetName(), t.GetLowestOffset(), t.GetNextOffset(),
			t.GetRecords(), t.GetSizeBytes(), t.GetSegments())
	}
	if err := tw.Flush(); err != nil {
		return failf("write output: %v", err)
	}
	return nil
}

const describeExample = `  logctl describe alice/orders
  logctl --as alice describe alice/orders --format json | jq .next_offset`

func (a *app) describeCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "describe TOPIC [--format text|json]",
		Short: "Show a topic's offsets, size, record times and settings",
		Long: `Show what logd knows of a topic: its offsets (the oldest kept, the newest,
the next), records, bytes and segments on disk, the append times of its
oldest and newest record, the retention, durability and segment settings
it runs with, the consumers following its tail, and whether its log has
failed (a failed fsync; restarting logd recovers it). Needs the ACL action
admin on the topic. Describing a topic that does not exist fails (exit 1)
and does not create it.`,
		Example:           describeExample,
		Args:              topicArg,
		ValidArgsFunction: a.completeTopics,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return usagef("--format %q: want text or json", format)
			}
			return a.adminCall(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				t, err := c.DescribeTopic(ctx, args[0])
				if err != nil {
					return err
				}
				if format == "json" {
					err = json.NewEncoder(a.stdout).Encode(jsonTopicOf(t))
				} else {
					_, err = io.WriteString(a.stdout, describeText(t))
				}
				if err != nil {
					return failf("write output: %v", err)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&format, "format", "text", "output `format`: text or json")
	c.RegisterFlagCompletionFunc("format", fixedCompletions("text", "json"))
	return c
}

const deleteTopicExample = `  logctl delete-topic alice/scratch --yes
  logctl --as alice delete-topic alice/old-orders --yes`

func (a *app) deleteTopicCmd() *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "delete-topic TOPIC --yes",
		Short: "Delete a topic and all its records",
		Long: `Delete a topic and all its records, for good. --yes is required, to confirm.
Needs the ACL action admin on the topic.

Producers and consumers of the topic at that moment get an error saying it
was deleted (consume --follow ends with exit 1); the next produce creates
the topic again, empty, from offset 0.`,
		Example:           deleteTopicExample,
		Args:              topicArg,
		ValidArgsFunction: a.completeTopics,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usagef("delete-topic removes topic %q and all its records for good; add --yes to confirm", args[0])
			}
			return a.adminCall(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				t, err := c.DeleteTopic(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "deleted topic %s (%s, %s in %s)\n", t.GetName(),
					plural(t.GetRecords(), "record"), sizeText(t.GetSizeBytes()), plural(uint64(t.GetSegments()), "segment"))
				return nil
			})
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return c
}

// adminCall dials logd and runs fn with a context bounded by --timeout;
// fn's errors from the server become logctl's (see callError).
func (a *app) adminCall(ctx context.Context, fn func(context.Context, *client.Client) error) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	uctx, cancel := a.unary(ctx)
	defer cancel()
	return a.callError(ctx, fn(uctx, c), "")
}

// topicArg checks that a command got exactly one TOPIC argument.
func topicArg(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) != 1:
		return usagef("want one TOPIC argument, got %d (see %s --help)", len(args), cmd.CommandPath())
	case args[0] == "":
		return usagef("TOPIC must not be empty")
	}
	return nil
}

// completeTopics completes a TOPIC argument with the topics the caller
// may administer, asking logd (briefly; nothing if it cannot).
func (a *app) completeTopics(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 || a.resolveFiles() != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.dial()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	topics, err := c.ListTopics(ctx, toComplete)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, t := range topics {
		names = append(names, t.GetName())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// jsonTopic is a topic in --format json.
type jsonTopic struct {
	Name                string  `json:"name"`
	LowestOffset        uint64  `json:"lowest_offset"`
	HighestOffset       *uint64 `json:"highest_offset,omitempty"`
	NextOffset          uint64  `json:"next_offset"`
	Records             uint64  `json:"records"`
	SizeBytes           uint64  `json:"size_bytes"`
	Segments            uint32  `json:"segments"`
	OldestRecordTime    string  `json:"oldest_record_time,omitempty"`
	NewestRecordTime    string  `json:"newest_record_time,omitempty"`
	RetentionBytes      uint64  `json:"retention_bytes"`
	RetentionAgeSeconds float64 `json:"retention_age_seconds"`
	SyncPolicy          string  `json:"sync_policy"`
	SegmentBytes        uint64  `json:"segment_bytes"`
	MaxRecordBytes      uint64  `json:"max_record_bytes"`
	TailConsumers       uint32  `json:"tail_consumers"`
	Failure             string  `json:"failure,omitempty"`
}

func jsonTopicOf(t *logv1.TopicDescription) jsonTopic {
	j := jsonTopic{
		Name:                t.GetName(),
		LowestOffset:        t.GetLowestOffset(),
		HighestOffset:       t.HighestOffset,
		NextOffset:          t.GetNextOffset(),
		Records:             t.GetRecords(),
		SizeBytes:           t.GetSizeBytes(),
		Segments:            t.GetSegments(),
		RetentionBytes:      t.GetRetention().GetBytes(),
		RetentionAgeSeconds: t.GetRetention().GetAge().AsDuration().Seconds(),
		SyncPolicy:          t.GetSyncPolicy(),
		SegmentBytes:        t.GetSegmentBytes(),
		MaxRecordBytes:      t.GetMaxRecordBytes(),
		TailConsumers:       t.GetTailConsumers(),
		Failure:             t.GetFailure(),
	}
	if t.GetOldestRecordTime() != nil {
		j.OldestRecordTime = t.GetOldestRecordTime().AsTime().UTC().Format(time.RFC3339Nano)
	}
	if t.GetNewestRecordTime() != nil {
		j.NewestRecordTime = t.GetNewestRecordTime().AsTime().UTC().Format(time.RFC3339Nano)
	}
	return j
}

// describeText is describe's text output: one "label  value" line per
// fact.
func describeText(t *logv1.TopicDescription) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	line("topic", "%s", t.GetName())
	if t.HighestOffset != nil {
		line("offsets", "%d..%d (%s; the next gets %d)", t.GetLowestOffset(), t.GetHighestOffset(), plural(t.GetRecords(), "record"), t.GetNextOffset())
	} else {
		line("offsets", "none: empty (the next record gets %d)", t.GetNextOffset())
	}
	line("size", "%s (%d bytes) in %s", sizeText(t.GetSizeBytes()), t.GetSizeBytes(), plural(uint64(t.GetSegments()), "segment"))
	if t.GetOldestRecordTime() != nil {
		line("oldest record", "%s", t.GetOldestRecordTime().AsTime().UTC().Format(time.RFC3339Nano))
	}
	if t.GetNewestRecordTime() != nil {
		line("newest record", "%s", t.GetNewestRecordTime().AsTime().UTC().Format(time.RFC3339Nano))
	}
	line("retention", "%s", retentionText(t.GetRetention()))
	line("sync", "%s", t.GetSyncPolicy())
	line("segment size", "%s", sizeText(t.GetSegmentBytes()))
	line("max record", "%s", sizeText(t.GetMaxRecordBytes()))
	line("tail consumers", "%d", t.GetTailConsumers())
	if f := t.GetFailure(); f != "" {
		line("state", "FAILED, refusing appends until logd restarts: %s", f)
	} else {
		line("state", "ok")
	}
	tw.Flush()
	return b.String()
}

// retentionText says what retention keeps: "everything", "1 GiB",
// "168h0m0s", "1 GiB or 168h0m0s, whichever removes more".
func retentionText(r *logv1.Retention) string {
	var parts []string
	if n := r.GetBytes(); n > 0 {
		parts = append(parts, "at most "+sizeText(n))
	}
	if d := r.GetAge().AsDuration(); d > 0 {
		parts = append(parts, "records younger than "+d.String())
	}
	if len(parts) == 0 {
		return "none: every record is kept"
	}
	return "whole segments removed, keeping " + strings.Join(parts, " and ")
}

// sizeText is a byte count for people: "512 B", "1.5 KiB", "64 MiB".
func sizeText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(uint64(v)) {
		return fmt.Sprintf("%d %ciB", uint64(v), "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
