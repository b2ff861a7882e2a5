// Package ratelimit paces API calls so that the whole fleet stays under the
// organisation's rate limit.
//
// Two stages, both waited on before every call:
//
//   - Local, a golang.org/x/time/rate token bucket in each process. It is
//     the only stage in local mode, and in a fleet it keeps one process
//     from hammering Redis for tokens it cannot get.
//   - Fleet, a GCRA limiter in Redis (github.com/go-redis/redis_rate/v10)
//     keyed by a hash of the API key and the endpoint, so that N workers
//     share one budget: --rate is requests per second for all of them.
//
// A 429 from the API sets a shared cool-down key; every worker waits it
// out before its next call, not only the task that was refused. When the
// API's anthropic-ratelimit-requests-* headers say its bucket is nearly
// empty, the same cool-down spaces the next calls one refill apart, so the
// fleet slows to the API's pace before it is refused (and never speeds up
// beyond --rate: the headers only ever add waiting).
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/enrollq/enrollq/internal/client"
)

// Local is an in-process token bucket. A rate of 0 means no limit.
type Local struct {
	l *rate.Limiter
}

// NewLocal returns a limiter of perSecond calls a second with the given
// burst (at least 1).
func NewLocal(perSecond float64, burst int) *Local {
	if perSecond <= 0 {
		return &Local{l: rate.NewLimiter(rate.Inf, 1)}
	}
	return &Local{l: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))}
}

// Wait blocks until a call may go. It returns at once with an error when
// the wait would outlast ctx's deadline.
func (l *Local) Wait(ctx context.Context) error { return l.l.Wait(ctx) }

// Allow takes a token if one is free now, without waiting.
func (l *Local) Allow() bool { return l.l.Allow() }

// Limit reports the current rate in calls a second (+Inf when unlimited).
func (l *Local) Limit() float64 { return float64(l.l.Limit()) }

// FleetConfig configures a Fleet limiter.
type FleetConfig struct {
	// Redis holds the shared bucket and cool-down. Required.
	Redis redis.UniversalClient
	// Rate is calls a second for the whole fleet. Required, > 0.
	Rate float64
	// Burst is how many calls may go at once after a quiet spell. Default
	// 1: the safest against an API whose own burst is unknown.
	Burst int
	// APIKey and Endpoint name the budget; the key is hashed, never stored.
	APIKey   string
	Endpoint string
	// MaxCooldown caps a cool-down set by a 429. Default
	// client.MaxRetryAfter.
	MaxCooldown time.Duration
}

// Fleet is the fleet-wide limiter. It is safe for concurrent use.
type Fleet struct {
	rdb      redis.UniversalClient
	gcra     *redis_rate.Limiter
	limit    redis_rate.Limit
	local    *Local
	key      string
	cooldown string
	maxCool  time.Duration
}

// NewFleet returns a Fleet limiter, or an error naming the bad field.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	switch {
	case cfg.Redis == nil:
		return nil, errors.New("fleet limiter: Redis is required")
	case cfg.Rate <= 0 || math.IsInf(cfg.Rate, 0) || math.IsNaN(cfg.Rate):
		return nil, fmt.Errorf("fleet limiter: rate %v: must be a positive number", cfg.Rate)
	}
	if cfg.MaxCooldown <= 0 {
		cfg.MaxCooldown = client.MaxRetryAfter
	}
	burst := max(cfg.Burst, 1)
	sum := sha256.Sum256([]byte(cfg.APIKey))
	base := "enrollq:rl:{" + hex.EncodeToString(sum[:8]) + ":" + cfg.Endpoint + "}"
	return &Fleet{
		rdb:  cfg.Redis,
		gcra: redis_rate.NewLimiter(cfg.Redis),
		// GCRA takes a whole number of calls per period: a thousand-second
		// period keeps a rate like 0.5 or 12.5 a second exact.
		limit: redis_rate.Limit{
			Rate: int(math.Round(cfg.Rate * 1000)), Period: 1000 * time.Second,
			Burst: burst + slack(cfg.Rate),
		},
		local:    NewLocal(cfg.Rate, burst),
		key:      base + ":gcra",
		cooldown: base + ":cooldown",
		maxCool:  cfg.MaxCooldown,
	}, nil
}

// slack is how many calls the shared bucket lets a late caller catch up
// on: about 50 ms of the rate, at least one. A worker that wakes a little
// after its slot (timer and Redis round trip) would otherwise push every
// later slot back, and the fleet would run a few percent under its rate.
func slack(perSecond float64) int {
	return max(1, int(math.Ceil(perSecond*0.05)))
}

// Wait blocks until the fleet may make one more call: the local bucket,
// then any shared cool-down, then a token from the shared bucket.
func (f *Fleet) Wait(ctx context.Context) error {
	if err := f.local.Wait(ctx); err != nil {
		return err
	}
	for {
		cool, err := f.cooldownLeft(ctx)
		if err != nil {
			return err
		}
		if cool > 0 {
			if err := sleep(ctx, cool); err != nil {
				return err
			}
			continue
		}

		res, err := f.gcra.Allow(ctx, f.key, f.limit)
		if err != nil {
			return fmt.Errorf("take fleet token: %w", err)
		}
		if res.Allowed > 0 {
			return nil
		}
		if err := sleep(ctx, res.RetryAfter); err != nil {
			return err
		}
	}
}

// Observe sets the shared cool-down after a 429 that named a wait, or when
// the rate-limit headers say the API's bucket is nearly empty, so that
// every worker honours it. A cool-down only ever grows: a shorter one never
// cuts a longer one short.
func (f *Fleet) Observe(ctx context.Context, link client.Link, err error) {
	wait := pause(link, err)
	if wait <= 0 {
		return
	}
	wait = min(wait, f.maxCool)
	until := time.Now().Add(wait).UnixMilli()
	ttl := (wait + time.Second).Milliseconds()
	// Best effort: a lost cool-down costs at most one more 429 per worker.
	_ = extendCooldown.Run(ctx, f.rdb, []string{f.cooldown}, until, ttl).Err()
}

// extendCooldown sets KEYS[1] to ARGV[1] (Unix ms) with a TTL of ARGV[2] ms,
// unless it already holds a later time.
var extendCooldown = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0`)

// cooldownLeft reads the shared cool-down. The key holds its end as Unix
// milliseconds (its TTL only cleans it up), so the wait does not depend on
// the server expiring keys on time; workers' clocks are assumed to agree
// within a few milliseconds (NTP).
func (f *Fleet) cooldownLeft(ctx context.Context) (time.Duration, error) {
	until, err := f.rdb.Get(ctx, f.cooldown).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cool-down: %w", err)
	}
	return min(time.Until(time.UnixMilli(until)), f.maxCool), nil
}

// Limit reports the fleet rate in calls a second.
func (f *Fleet) Limit() float64 { return f.local.Limit() }

// Cooldown is the in-process counterpart of the fleet's shared cool-down,
// for local mode: after a 429 with a hint, every task of the process waits.
type Cooldown struct {
	*Local
	until chan time.Time
}

// NewCooldown wraps l with a cool-down.
func NewCooldown(l *Local) *Cooldown {
	c := &Cooldown{Local: l, until: make(chan time.Time, 1)}
	c.until <- time.Time{}
	return c
}

// Wait waits out any cool-down, then the bucket.
func (c *Cooldown) Wait(ctx context.Context) error {
	u := <-c.until
	c.until <- u
	if d := time.Until(u); d > 0 {
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
	return c.Local.Wait(ctx)
}

// Allow takes a token if no cool-down runs and one is free now. It hides
// Local's Allow, which knows nothing of the cool-down.
func (c *Cooldown) Allow() bool {
	u := <-c.until
	c.until <- u
	return !time.Now().Before(u) && c.Local.Allow()
}

// Observe starts a cool-down after a 429 with a wait hint, or when the
// rate-limit headers say the API's bucket is nearly empty.
func (c *Cooldown) Observe(_ context.Context, link client.Link, err error) {
	wait := pause(link, err)
	if wait <= 0 {
		return
	}
	next := time.Now().Add(min(wait, client.MaxRetryAfter))
	u := <-c.until
	if next.After(u) {
		u = next
	}
	c.until <- u
}

// pause is how long every caller should wait after one answer: a 429's
// retry-after, or the pace that the rate-limit headers call for.
func pause(link client.Link, err error) time.Duration {
	var e *client.Error
	if errors.As(err, &e) {
		if e.StatusCode == 429 && e.HasRetryAfter && e.RetryAfter > 0 {
			return e.RetryAfter
		}
		return headerPace(e.RateLimit, time.Now())
	}
	if err != nil {
		return 0
	}
	return headerPace(link.RateLimit, time.Now())
}

// resetGranularity is how coarse anthropic-ratelimit-requests-reset is: it
// carries whole seconds, so the bucket may be full up to a second earlier
// than it says.
const resetGranularity = time.Second

// headerPace reads the anthropic-ratelimit-requests-* headers of one answer.
// Once remaining is down to a tenth of the limit (at least 1), the next
// call should wait for one token to refill: the time until the bucket is
// full, spread over the tokens it lacks. That time is taken at its
// shortest (reset less its one-second rounding), so a bucket that refills
// within the rounding adds no wait at all and a fast API is never slowed.
func headerPace(rl client.RateLimitInfo, now time.Time) time.Duration {
	if rl.Limit <= 0 || rl.Remaining < 0 || rl.Reset.IsZero() {
		return 0
	}
	lowWater := max(1, rl.Limit/10)
	missing := rl.Limit - rl.Remaining
	if rl.Remaining > lowWater || missing <= 0 {
		return 0
	}
	untilFull := rl.Reset.Sub(now) - resetGranularity
	if untilFull <= 0 {
		return 0
	}
	return untilFull / time.Duration(missing)
}

// sleep waits d or until ctx ends. A wait that would outlast ctx's
// deadline fails at once, as rate.Limiter.Wait does.
func sleep(ctx context.Context, d time.Duration) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return fmt.Errorf("wait of %s would outlast the deadline: %w", d.Round(time.Millisecond), context.DeadlineExceeded)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
