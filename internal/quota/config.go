package quota

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/casbin/casbin/v2/util"
)

// ErrInvalid is wrapped by the errors of Parse and LoadFile for a quota
// file that does not parse or holds a bad value; the message names the
// key.
var ErrInvalid = errors.New("quota: invalid quota file")

// Rate is a token bucket: Rate tokens a second, at most Burst at once (a
// request larger than Burst never passes). A Rate of 0 means no limit.
// Burst 0 means one second's worth: Rate rounded up, at least 1.
type Rate struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst,omitempty"`
}

// maxRate bounds a rate, so that a second's worth fits a burst.
const maxRate = 1 << 50

// Limits are one principal's quotas. A nil field inherits the default's;
// a Rate of 0 or Streams 0 means no limit.
type Limits struct {
	// Produce is in bytes of record values a second.
	Produce *Rate `json:"produce,omitempty"`
	// Consume is in bytes of record values a second.
	Consume *Rate `json:"consume,omitempty"`
	// Requests is in calls a second.
	Requests *Rate `json:"requests,omitempty"`
	// Streams caps the principal's open streams.
	Streams *int `json:"streams,omitempty"`
}

// TopicLimits are one topic pattern's quotas.
type TopicLimits struct {
	// MaxBytes caps the topic's bytes on disk (store and index files);
	// 0 means no cap.
	MaxBytes int64 `json:"max_bytes"`
}

// Config is a quota file: default limits for every principal, overrides
// per principal (a certificate CN), and caps per topic pattern. The zero
// Config (an empty file) limits nothing. A Config must not be changed
// once passed to New or Set.
type Config struct {
	Default    Limits                 `json:"default"`
	Principals map[string]Limits      `json:"principals,omitempty"`
	Topics     map[string]TopicLimits `json:"topics,omitempty"`

	// rules are Topics, most specific first; see TopicCap.
	rules []topicRule
}

type topicRule struct {
	pattern  string
	wildcard bool
	maxBytes int64
}

// LoadFile reads and parses a quota file; an empty path means no limits.
func LoadFile(path string) (*Config, error) {
	if path == "" {
		return &Config{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses a quota file (JSON; see the package documentation) and
// checks every value. Empty input means no limits. Unknown keys are
// errors, so that a typo does not silently lift a limit.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c, nil
}

func (c *Config) validate() error {
	if err := c.Default.validate("default"); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(c.Principals)) {
		if strings.TrimSpace(name) == "" {
			return errors.New(`principals: empty principal name`)
		}
		if err := c.Principals[name].validate(fmt.Sprintf("principals[%q]", name)); err != nil {
			return err
		}
	}
	c.rules = nil
	for _, p := range slices.Sorted(maps.Keys(c.Topics)) {
		key := fmt.Sprintf("topics[%q]", p)
		i := strings.IndexByte(p, '*')
		switch {
		case p == "":
			return errors.New("topics: empty pattern")
		case i >= 0 && i != len(p)-1:
			return fmt.Errorf(`%s: '*' may only end a pattern ("alice/*", "*")`, key)
		}
		max := c.Topics[p].MaxBytes
		if max < 0 {
			return fmt.Errorf("%s.max_bytes: %d is negative", key, max)
		}
		c.rules = append(c.rules, topicRule{pattern: p, wildcard: i >= 0, maxBytes: max})
	}
	// Most specific first: exact names, then the longest prefix.
	slices.SortStableFunc(c.rules, func(a, b topicRule) int {
		if a.wildcard != b.wildcard {
			if !a.wildcard {
				return -1
			}
			return 1
		}
		return len(b.pattern) - len(a.pattern)
	})
	return nil
}

func (l Limits) validate(key string) error {
	for _, r := range []struct {
		name string
		r    *Rate
	}{{"produce", l.Produce}, {"consume", l.Consume}, {"requests", l.Requests}} {
		if r.r == nil {
			continue
		}
		k := key + "." + r.name
		switch {
		case r.r.Rate < 0 || math.IsNaN(r.r.Rate) || math.IsInf(r.r.Rate, 0):
			return fmt.Errorf("%s.rate: %v is not a rate (0 means no limit)", k, r.r.Rate)
		case r.r.Rate > maxRate:
			return fmt.Errorf("%s.rate: %v is over %v (use 0 for no limit)", k, r.r.Rate, float64(maxRate))
		case r.r.Burst < 0:
			return fmt.Errorf("%s.burst: %d is negative", k, r.r.Burst)
		case r.r.Rate == 0 && r.r.Burst != 0:
			return fmt.Errorf("%s.burst: set without a rate", k)
		}
	}
	if l.Streams != nil && *l.Streams < 0 {
		return fmt.Errorf("%s.streams: %d is negative (0 means no cap)", key, *l.Streams)
	}
	return nil
}

// effective are the limits that apply to one principal: its overrides
// over the default. A zero Rate or streams means no limit.
type effective struct {
	produce, consume, requests Rate
	streams                    int
}

func (c *Config) limitsFor(principal string) effective {
	l := c.Default
	if o, ok := c.Principals[principal]; ok {
		if o.Produce != nil {
			l.Produce = o.Produce
		}
		if o.Consume != nil {
			l.Consume = o.Consume
		}
		if o.Requests != nil {
			l.Requests = o.Requests
		}
		if o.Streams != nil {
			l.Streams = o.Streams
		}
	}
	var e effective
	for _, f := range []struct {
		dst *Rate
		src *Rate
	}{{&e.produce, l.Produce}, {&e.consume, l.Consume}, {&e.requests, l.Requests}} {
		if f.src != nil && f.src.Rate > 0 {
			*f.dst = Rate{Rate: f.src.Rate, Burst: f.src.Burst}
			if f.dst.Burst == 0 {
				f.dst.Burst = max(1, int(math.Ceil(f.src.Rate)))
			}
		}
	}
	if l.Streams != nil {
		e.streams = *l.Streams
	}
	return e
}

// TopicCap returns the cap on topic's bytes on disk, 0 if none: that of
// the most specific pattern that matches it (an exact name, else the
// longest "prefix*"). Patterns match as the ACL's keyMatch does:
// "alice/*" matches every topic under "alice/", "*" every topic.
func (c *Config) TopicCap(topic string) int64 {
	if c == nil {
		return 0
	}
	for _, r := range c.rules {
		if util.KeyMatch(topic, r.pattern) {
			return r.maxBytes
		}
	}
	return 0
}
