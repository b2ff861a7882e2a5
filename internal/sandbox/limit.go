package sandbox

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// admit takes a token from key's bucket. It sets the rate-limit headers on
// every answer that follows, and returns the 429 to send when the bucket is
// empty. With no Config.Rate it admits everything and sets no header.
func (s *Server) admit(ex *exchange, key string) *apiError {
	if s.cfg.Rate == 0 {
		return nil
	}
	now := s.cfg.Now()
	ok, tokens := s.take(key, now)

	h := ex.w.Header()
	full := now.Add(seconds((float64(s.cfg.Burst) - tokens) / s.cfg.Rate))
	h.Set(hdrLimit, strconv.Itoa(s.cfg.Burst))
	h.Set(hdrRemaining, strconv.Itoa(max(0, int(math.Floor(tokens)))))
	h.Set(hdrReset, ceilSecond(full).UTC().Format(time.RFC3339))
	if ok {
		return nil
	}

	wait := retryAfterSeconds(seconds((1 - tokens) / s.cfg.Rate))
	h.Set(hdrRetryAfter, strconv.Itoa(wait))
	return &apiError{status: http.StatusTooManyRequests, typ: typeRateLimit,
		message: fmt.Sprintf("This request would exceed the rate limit of %v requests per second "+
			"with a burst of %d; retry after %d s", s.cfg.Rate, s.cfg.Burst, wait)}
}

// minSweep is the number of buckets below which take drops none.
const minSweep = 1024

// take takes a token from key's bucket, made full on first use, and
// returns whether there was one and the tokens left. A full bucket is the
// same as a new one, so when the buckets have doubled since the last
// sweep, the full ones are dropped: a client that sends ever new keys
// (the sandbox takes any key when Config.Keys is empty) keeps only the
// buckets used within a refill time. The lock covers the take too, so
// that no token is taken from a bucket just dropped.
func (s *Server) take(key string, now time.Time) (bool, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lim, ok := s.limiters[key]
	if !ok {
		if len(s.limiters) >= max(s.sweepAt, minSweep) {
			for k, l := range s.limiters {
				if l.TokensAt(now) >= float64(s.cfg.Burst) {
					delete(s.limiters, k)
				}
			}
			s.sweepAt = 2 * len(s.limiters)
		}
		lim = rate.NewLimiter(rate.Limit(s.cfg.Rate), s.cfg.Burst)
		s.limiters[key] = lim
	}
	return lim.AllowN(now, 1), lim.TokensAt(now)
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1, as
// retry-after carries it.
func retryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

func seconds(f float64) time.Duration {
	return time.Duration(f * float64(time.Second))
}

// ceilSecond rounds t up to a whole second, so that a reset time printed
// without fractions is never early.
func ceilSecond(t time.Time) time.Time {
	if down := t.Truncate(time.Second); down.Before(t) {
		return down.Add(time.Second)
	}
	return t
}
