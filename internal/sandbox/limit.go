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
	lim := s.limiter(key)
	now := s.cfg.Now()
	ok := lim.AllowN(now, 1)
	tokens := lim.TokensAt(now)

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

// limiter returns key's token bucket, creating a full one on first use.
// TODO: with Config.Keys empty any key gets a bucket and none is dropped;
// a client that sends millions of distinct keys grows this map unbounded.
func (s *Server) limiter(key string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	lim, ok := s.limiters[key]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(s.cfg.Rate), s.cfg.Burst)
		s.limiters[key] = lim
	}
	return lim
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
