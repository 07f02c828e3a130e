package quota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Kind names a quota. It is the "quota" label of the quota metric and
// the quota named in refusals.
type Kind string

// Kinds.
const (
	ProduceBytes Kind = "produce_bytes" // bytes of record values produced a second
	ConsumeBytes Kind = "consume_bytes" // bytes of record values consumed a second
	Requests     Kind = "requests"      // calls a second
	Streams      Kind = "streams"       // open streams
	TopicBytes   Kind = "topic_bytes"   // a topic's bytes on disk
)

// kinds are the Kinds, in the order of a bucket's report arrays.
var kinds = [...]Kind{ProduceBytes, ConsumeBytes, Requests, Streams, TopicBytes}

// ErrExceeded is what every *Exceeded is (errors.Is).
var ErrExceeded = errors.New("quota: exceeded")

// Exceeded is a refusal: a call that would take a principal (or a topic)
// over a quota. Nothing of the call was done.
type Exceeded struct {
	Kind      Kind
	Principal string
	// Topic is the topic of the call, if known (always for TopicBytes).
	Topic string
	// Limit is the rate (tokens a second) for the rate kinds, the cap for
	// Streams and TopicBytes.
	Limit float64
	// Burst is the bucket's size for the rate kinds.
	Burst int
	// Asked is what the call asked for: bytes, or 1 for a request.
	Asked int64
	// Used is, for TopicBytes, the topic's bytes on disk.
	Used int64
	// RetryAfter is when the same call would pass, as far as this quota
	// can tell; 0 if waiting alone will not make it pass.
	RetryAfter time.Duration
	// OverBurst says that Asked is larger than the bucket: the call can
	// never pass.
	OverBurst bool
}

func (e *Exceeded) Is(target error) bool { return target == ErrExceeded }

func (e *Exceeded) Error() string {
	who := fmt.Sprintf("principal %q", e.Principal)
	switch {
	case e.Kind == TopicBytes:
		msg := fmt.Sprintf("quota: appending %d bytes would take topic %q from %d to %d bytes on disk, over its %s quota of %d",
			e.Asked, e.Topic, e.Used, e.Used+e.Asked, e.Kind, int64(e.Limit))
		if e.RetryAfter > 0 {
			return msg + fmt.Sprintf("; retention may free space in %v", e.RetryAfter.Round(time.Millisecond))
		}
		return msg
	case e.Kind == Streams:
		return fmt.Sprintf("quota: %s has %d streams open, its %s quota; end one first", who, int64(e.Limit), e.Kind)
	case e.OverBurst:
		return fmt.Sprintf("quota: %s is more than the %s burst of %s (%s): it can never pass; send less at once or raise the burst",
			e.Kind.amount(e.Asked), e.Kind, who, e.describe())
	}
	return fmt.Sprintf("quota: %s is over its %s quota (%s); retry in %v", who, e.Kind, e.describe(), e.RetryAfter.Round(time.Millisecond))
}

// describe says what the limit is, for a rate kind.
func (e *Exceeded) describe() string {
	if e.Kind == Requests {
		return fmt.Sprintf("%g requests/s, burst %d", e.Limit, e.Burst)
	}
	return fmt.Sprintf("%g bytes/s, burst %d bytes", e.Limit, e.Burst)
}

func (k Kind) amount(n int64) string {
	if k == Requests {
		return fmt.Sprintf("%d requests", n)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Quotas enforces a Config. Token buckets are made per principal on its
// first call and kept across Set, so a reload changes limits without
// handing out fresh bursts. Buckets that are full and have no open
// stream behave as new ones, so they are dropped once the number of
// principals doubles; the state thus stays proportional to the
// principals in recent use. A nil *Quotas limits nothing. All methods are
// safe for concurrent use.
type Quotas struct {
	cfg atomic.Pointer[Config]
	now func() time.Time

	mu sync.RWMutex
	// The fields below are guarded by mu; so are the limiter pointers of
	// every bucket (read under RLock, replaced under Lock).
	buckets map[string]*bucket
	sweepAt int
}

// minSweep is the number of principals below which Quotas keeps every
// bucket.
const minSweep = 64

// reportEvery and reportBurst bound the refusals Report lets through for
// logging: per principal and kind, reportBurst at once, then one every
// reportEvery.
const (
	reportEvery = time.Second
	reportBurst = 3
)

// bucket is one principal's state.
type bucket struct {
	// produce, consume and requests are nil for no limit; see Quotas.mu.
	produce, consume, requests *rate.Limiter
	maxStreams                 atomic.Int64 // 0: no cap
	open                       atomic.Int64
	report                     [len(kinds)]*rate.Limiter
	suppressed                 [len(kinds)]atomic.Int64
}

// New returns Quotas enforcing cfg (nil: no limits).
func New(cfg *Config) *Quotas {
	if cfg == nil {
		cfg = &Config{}
	}
	q := &Quotas{now: time.Now, buckets: map[string]*bucket{}, sweepAt: minSweep}
	q.cfg.Store(cfg)
	return q
}

// Config returns the Config in force.
func (q *Quotas) Config() *Config {
	if q == nil {
		return &Config{}
	}
	return q.cfg.Load()
}

// Set puts cfg in force (nil: no limits). Every bucket keeps its tokens:
// one whose limit is unchanged is untouched, one whose rate or burst
// changed gets the new ones with the tokens it has (SetLimit, SetBurst),
// and one that had no limit starts full. Each check sees the old limits
// or the new ones, never a mix.
func (q *Quotas) Set(cfg *Config) {
	if cfg == nil {
		cfg = &Config{}
	}
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cfg.Store(cfg)
	for name, b := range q.buckets {
		b.apply(cfg.limitsFor(name), now)
	}
}

// Reload loads the quota file at path and puts it in force, or returns
// the error and changes nothing. It is a reload.Source's Load.
func (q *Quotas) Reload(path string) error {
	cfg, err := LoadFile(path)
	if err != nil {
		return err
	}
	q.Set(cfg)
	return nil
}

// TopicCap returns the cap on topic's bytes on disk, 0 if none.
func (q *Quotas) TopicCap(topic string) int64 {
	if q == nil {
		return 0
	}
	return q.cfg.Load().TopicCap(topic)
}

func (b *bucket) apply(e effective, now time.Time) {
	set := func(lim **rate.Limiter, r Rate) {
		switch {
		case r.Rate == 0:
			*lim = nil
		case *lim == nil:
			*lim = rate.NewLimiter(rate.Limit(r.Rate), r.Burst)
		default:
			if (*lim).Limit() != rate.Limit(r.Rate) {
				(*lim).SetLimitAt(now, rate.Limit(r.Rate))
			}
			if (*lim).Burst() != r.Burst {
				(*lim).SetBurstAt(now, r.Burst)
			}
		}
	}
	set(&b.produce, e.produce)
	set(&b.consume, e.consume)
	set(&b.requests, e.requests)
	b.maxStreams.Store(int64(e.streams))
}

// idle says whether b behaves as a new bucket would: every limiter full,
// no stream open, no refusal waiting to be reported. q.mu must be held.
func (b *bucket) idle(now time.Time) bool {
	if b.open.Load() != 0 {
		return false
	}
	for _, l := range []*rate.Limiter{b.produce, b.consume, b.requests} {
		if l != nil && l.TokensAt(now) < float64(l.Burst()) {
			return false
		}
	}
	for i := range b.suppressed {
		if b.suppressed[i].Load() != 0 {
			return false
		}
	}
	return true
}

// use runs f with principal's bucket while holding q.mu for reading, so
// that neither Set nor a sweep changes it meanwhile.
func (q *Quotas) use(principal string, f func(*bucket)) {
	q.mu.RLock()
	b, ok := q.buckets[principal]
	if ok {
		f(b)
		q.mu.RUnlock()
		return
	}
	q.mu.RUnlock()

	q.mu.Lock()
	defer q.mu.Unlock()
	b, ok = q.buckets[principal]
	if !ok {
		now := q.now()
		if len(q.buckets) >= q.sweepAt {
			for name, old := range q.buckets {
				if old.idle(now) {
					delete(q.buckets, name)
				}
			}
			q.sweepAt = max(minSweep, 2*len(q.buckets))
		}
		b = &bucket{}
		for i := range b.report {
			b.report[i] = rate.NewLimiter(rate.Every(reportEvery), reportBurst)
		}
		b.apply(q.cfg.Load().limitsFor(principal), now)
		q.buckets[principal] = b
	}
	f(b)
}

// limiter returns b's limiter of a rate kind (nil: no limit).
func (b *bucket) limiter(kind Kind) *rate.Limiter {
	switch kind {
	case ProduceBytes:
		return b.produce
	case ConsumeBytes:
		return b.consume
	case Requests:
		return b.requests
	}
	panic("quota: not a rate kind: " + string(kind))
}

// take takes n tokens of kind from principal's bucket, waiting for them
// up to maxWait: it returns how long to wait before acting (0: at once),
// or a refusal that says after how long the call would pass. A refusal
// changes nothing: the tokens are checked before they are taken, rather
// than reserved and given back, since giving back a reservation restores
// nothing once a later one was made, and concurrent refused calls would
// then drain the bucket. With maxWait > 0, cancel gives back the tokens
// of a call that ends while waiting.
func (q *Quotas) take(principal, topic string, kind Kind, n int, maxWait time.Duration) (delay time.Duration, cancel func(), err error) {
	cancel = func() {}
	if q == nil {
		return 0, cancel, nil
	}
	q.use(principal, func(b *bucket) {
		lim := b.limiter(kind)
		if lim == nil {
			return
		}
		now := q.now()
		limit, burst := lim.Limit(), lim.Burst()
		refuse := func(retry time.Duration) {
			err = &Exceeded{Kind: kind, Principal: principal, Topic: topic, Limit: float64(limit), Burst: burst,
				Asked: int64(n), RetryAfter: retry, OverBurst: retry == 0}
		}
		if n > burst {
			refuse(0)
			return
		}
		if lim.AllowN(now, n) {
			return
		}
		// Short of tokens: the time until the missing ones come.
		wait := time.Duration((float64(n) - lim.TokensAt(now)) / float64(limit) * float64(time.Second))
		if wait > maxWait {
			refuse(max(wait, time.Nanosecond))
			return
		}
		r := lim.ReserveN(now, n)
		delay, cancel = r.DelayFrom(now), r.Cancel
	})
	return delay, cancel, err
}

// Allow takes one request of principal, or refuses it with an *Exceeded
// saying when to retry.
func (q *Quotas) Allow(principal string) error {
	_, _, err := q.take(principal, "", Requests, 1, 0)
	return err
}

// Take takes n bytes of kind (ProduceBytes or ConsumeBytes) for a call
// on topic at once, or refuses with an *Exceeded that says when to
// retry (or that n is over the burst), taking nothing.
func (q *Quotas) Take(principal, topic string, kind Kind, n int) error {
	_, _, err := q.take(principal, topic, kind, n, 0)
	return err
}

// Wait takes n bytes of kind, waiting for them as long as ctx allows. It
// returns an *Exceeded if n is over the burst or if ctx's deadline comes
// before the tokens would (with the delay), and ctx's error if ctx ends
// while waiting; either way it takes nothing.
func (q *Quotas) Wait(ctx context.Context, principal, topic string, kind Kind, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	maxWait := rate.InfDuration
	if dl, ok := ctx.Deadline(); ok {
		maxWait = time.Until(dl)
	}
	delay, cancel, err := q.take(principal, topic, kind, n, maxWait)
	if err != nil || delay == 0 {
		return err
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
}

// OpenStream counts a stream of principal against its cap, or refuses it
// with an *Exceeded. Call release when the stream ends.
func (q *Quotas) OpenStream(principal string) (release func(), err error) {
	if q == nil {
		return func() {}, nil
	}
	var b *bucket
	q.use(principal, func(bk *bucket) {
		for {
			n, max := bk.open.Load(), bk.maxStreams.Load()
			if max > 0 && n >= max {
				err = &Exceeded{Kind: Streams, Principal: principal, Limit: float64(max), Asked: 1}
				return
			}
			if bk.open.CompareAndSwap(n, n+1) {
				b = bk
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { b.open.Add(-1) }) }, nil
}

// Report says whether a refusal of principal by kind should be logged,
// so that a flood of refusals cannot flood the log: per principal and
// kind, a few at once and then one a second. With true it returns how
// many refusals were not logged since the last one that was.
func (q *Quotas) Report(principal string, kind Kind) (log bool, suppressed int64) {
	if q == nil {
		return true, 0
	}
	i := 0
	for i < len(kinds) && kinds[i] != kind {
		i++
	}
	if i == len(kinds) {
		return true, 0
	}
	q.use(principal, func(b *bucket) {
		if b.report[i].AllowN(q.now(), 1) {
			log, suppressed = true, b.suppressed[i].Swap(0)
		} else {
			b.suppressed[i].Add(1)
		}
	})
	return log, suppressed
}
