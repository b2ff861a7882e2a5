package sandbox

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// wantHeaders checks each header against its wanted value; "" wants the
// header absent.
func wantHeaders(t *testing.T, h http.Header, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if got := h.Get(name); got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Rate: 1, Burst: 3})

	for i, remaining := range []string{"2", "1", "0"} {
		a := b.do(t, newRequest("POST", enrollPath, ""))
		wantURL(t, a, "enrollment_url", epoch.Add(time.Hour))
		wantHeaders(t, a.header, map[string]string{
			"anthropic-ratelimit-requests-limit":     "3",
			"anthropic-ratelimit-requests-remaining": remaining,
			"anthropic-ratelimit-requests-reset":     epoch.Add(time.Duration(i+1) * time.Second).Format(time.RFC3339),
			"retry-after":                            "",
		})
	}

	a := b.do(t, newRequest("POST", enrollPath, ""))
	wantError(t, a, http.StatusTooManyRequests, "rate_limit_error", "")
	wantHeaders(t, a.header, map[string]string{
		"retry-after":                            "1",
		"anthropic-ratelimit-requests-limit":     "3",
		"anthropic-ratelimit-requests-remaining": "0",
		"anthropic-ratelimit-requests-reset":     "2026-12-03T19:15:03Z",
	})

	other := newRequest("POST", enrollPath, "")
	other.Header.Set("X-Api-Key", "another-key")
	wantURL(t, b.do(t, other), "enrollment_url", epoch.Add(time.Hour))

	b.clock.Advance(time.Second)
	wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(time.Hour+time.Second))

	st := b.srv.Stats()
	if st.Rejected429 != 1 {
		t.Errorf("rate_limited = %d, want 1", st.Rejected429)
	}
	if got := st.ByStatus["429"]; got != 1 {
		t.Errorf(`by_status["429"] = %d, want 1`, got)
	}
	if got := st.ByStatus["200"]; got != 5 {
		t.Errorf(`by_status["200"] = %d, want 5`, got)
	}
}

func TestTokenBucketBearerAndXAPIKeyShareABucket(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Rate: 1})
	b.do(t, newRequest("POST", enrollPath, ""))

	r := newRequest("POST", enrollPath, "")
	r.Header.Del("X-Api-Key")
	r.Header.Set("Authorization", "Bearer "+testKey)
	wantError(t, b.do(t, r), http.StatusTooManyRequests, "rate_limit_error", "")
}

func TestRetryAfterRoundsUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rate float64
		want string
	}{
		{0.25, "4"},
		{0.4, "3"},
		{3, "1"},
		{1000, "1"},
	} {
		b := setup(t, Config{Rate: tc.rate})
		b.do(t, newRequest("POST", enrollPath, ""))
		a := b.do(t, newRequest("POST", enrollPath, ""))
		wantError(t, a, http.StatusTooManyRequests, "rate_limit_error", "")
		if got := a.header.Get("retry-after"); got != tc.want {
			t.Errorf("rate %v: retry-after = %q, want %q", tc.rate, got, tc.want)
		}
	}
}

func TestRefusedRequestsTakeNoToken(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Rate: 1})
	r := newRequest("POST", enrollPath, "")
	r.Header.Del("Anthropic-Version")
	wantError(t, b.do(t, r), http.StatusBadRequest, "invalid_request_error", "")
	wantHeaders(t, b.do(t, r).header, map[string]string{"anthropic-ratelimit-requests-limit": ""})

	wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(time.Hour))
}

func TestNoRateHeadersWithoutRate(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	a := b.do(t, newRequest("POST", enrollPath, ""))
	wantHeaders(t, a.header, map[string]string{
		"anthropic-ratelimit-requests-limit":     "",
		"anthropic-ratelimit-requests-remaining": "",
		"anthropic-ratelimit-requests-reset":     "",
	})
}

// TestBucketsOfIdleKeysAreDropped: with any key accepted, a client that
// sends ever new keys keeps only the buckets still refilling; a bucket
// dropped was full, so its key's next call is answered as before.
func TestBucketsOfIdleKeysAreDropped(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Rate: 10, Burst: 2})
	call := func(key string) int {
		t.Helper()
		r := newRequest("POST", enrollPath, "")
		r.Header.Set("X-Api-Key", key)
		return b.do(t, r).status
	}
	buckets := func() int {
		b.srv.mu.Lock()
		defer b.srv.mu.Unlock()
		return len(b.srv.limiters)
	}

	// Key 0 empties its bucket and stays empty: it must keep it.
	call("key-0")
	call("key-0")
	if got := call("key-0"); got != http.StatusTooManyRequests {
		t.Fatalf("key-0's third call at once: %d, want 429", got)
	}
	for i := 1; i < minSweep; i++ {
		call(fmt.Sprintf("key-%d", i))
	}
	if got := buckets(); got != minSweep {
		t.Fatalf("%d buckets after %d keys, want %d", got, minSweep, minSweep)
	}

	// A tenth of a second later every bucket but key 0's (two calls, at
	// 10/s: empty for 0.2 s) is full again; the next new key sweeps them.
	b.clock.Advance(100 * time.Millisecond)
	call("key-new")
	if got := buckets(); got != 2 {
		t.Errorf("%d buckets after the sweep, want 2 (key-0 refilling, key-new)", got)
	}
	if got := call("key-0"); got != http.StatusOK {
		t.Errorf("key-0 0.1 s after its 429 (a token back): %d, want 200", got)
	}
	if got := call("key-0"); got != http.StatusTooManyRequests {
		t.Errorf("key-0 again at once: %d, want 429: its bucket was kept, not made full", got)
	}
}
