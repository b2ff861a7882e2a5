package ratelimit

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/redistest"
)

// TestFleetSharesOneBudget runs three limiters (three workers) on one key
// and counts what they let through: together they keep to the one rate.
func TestFleetSharesOneBudget(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	key := redistest.Name(t)
	const rate = 40.0
	var fleet []*Fleet
	for range 3 {
		f, err := NewFleet(FleetConfig{Redis: rdb, Rate: rate, Burst: 1, APIKey: key, Endpoint: "enrollment_url"})
		if err != nil {
			t.Fatal(err)
		}
		fleet = append(fleet, f)
	}

	const window = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 30 {
		f := fleet[i%3]
		wg.Go(func() {
			for f.Wait(ctx) == nil {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()

	// The most a GCRA bucket allows in a window: the rate, plus its burst
	// and slack at the start.
	most := int64(rate*window.Seconds()) + 1 + int64(slack(rate)) + 1
	least := int64(rate*window.Seconds()*0.9) - 1
	if got := allowed.Load(); got > most || got < least {
		t.Errorf("allowed %d calls in %v at %v/s shared by 3 limiters, want %d..%d", got, window, rate, least, most)
	}
}

func TestFleetCooldownStopsEveryone(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	key := redistest.Name(t)
	a, _ := NewFleet(FleetConfig{Redis: rdb, Rate: 1000, APIKey: key, Endpoint: "e"})
	b, _ := NewFleet(FleetConfig{Redis: rdb, Rate: 1000, APIKey: key, Endpoint: "e"})

	a.Observe(context.Background(), client.Link{}, &client.Error{
		Kind: client.KindAPI, StatusCode: 429, RetryAfter: 400 * time.Millisecond, HasRetryAfter: true,
	})
	start := time.Now()
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("the other limiter waited %v after a 429 asking 400ms, want about 400ms", waited)
	}

	// A wait longer than the caller's deadline fails at once.
	a.Observe(context.Background(), client.Link{}, &client.Error{
		Kind: client.KindAPI, StatusCode: 429, RetryAfter: 5 * time.Second, HasRetryAfter: true,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := b.Wait(ctx); err == nil {
		t.Error("Wait returned nil during a 5s cool-down with a 100ms deadline")
	}
	if time.Since(start) > 50*time.Millisecond {
		t.Errorf("Wait took %v to give up, want at once", time.Since(start))
	}
}

func TestFleetKeysByAPIKeyAndEndpoint(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	a, _ := NewFleet(FleetConfig{Redis: rdb, Rate: 1, APIKey: name + "a", Endpoint: "e"})
	b, _ := NewFleet(FleetConfig{Redis: rdb, Rate: 1, APIKey: name + "b", Endpoint: "e"})
	if a.key == b.key {
		t.Fatal("two API keys share one bucket")
	}
	c, _ := NewFleet(FleetConfig{Redis: rdb, Rate: 1, APIKey: name + "a", Endpoint: "other"})
	if a.key == c.key {
		t.Fatal("two endpoints share one bucket")
	}
	if strings.Contains(a.key, name+"a") {
		t.Errorf("the bucket key %q holds the API key", a.key)
	}
}

func TestNewFleetValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewFleet(FleetConfig{Rate: 1}); err == nil {
		t.Error("NewFleet accepted no Redis")
	}
	if _, err := NewFleet(FleetConfig{Redis: redistest.New(t), Rate: 0}); err == nil {
		t.Error("NewFleet accepted rate 0")
	}
}

func TestLocalCooldown(t *testing.T) {
	t.Parallel()
	c := NewCooldown(NewLocal(0, 1))
	c.Observe(context.Background(), client.Link{}, &client.Error{
		Kind: client.KindAPI, StatusCode: 429, RetryAfter: 200 * time.Millisecond, HasRetryAfter: true,
	})
	start := time.Now()
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("waited %v after a 200ms cool-down", d)
	}
	// A 500 sets no cool-down.
	c.Observe(context.Background(), client.Link{}, &client.Error{Kind: client.KindAPI, StatusCode: 500})
	start = time.Now()
	c.Wait(context.Background())
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("waited %v with no cool-down", d)
	}
}

func TestAllow(t *testing.T) {
	t.Parallel()
	l := NewLocal(1, 1)
	if !l.Allow() {
		t.Error("Local(1/s).Allow() = false on a full bucket, want true")
	}
	if l.Allow() {
		t.Error("Local(1/s).Allow() = true on an empty bucket, want false")
	}

	c := NewCooldown(NewLocal(0, 1))
	for i := range 3 {
		if !c.Allow() {
			t.Fatalf("unlimited Cooldown.Allow() #%d = false, want true", i)
		}
	}
	c.Observe(context.Background(), client.Link{}, &client.Error{
		Kind: client.KindAPI, StatusCode: 429, RetryAfter: time.Minute, HasRetryAfter: true,
	})
	if c.Allow() {
		t.Error("Cooldown.Allow() = true during a cool-down, want false")
	}
}

func TestHeaderPace(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		rl   client.RateLimitInfo
		want time.Duration
	}{
		{"no headers", client.RateLimitInfo{Limit: -1, Remaining: -1}, 0},
		{"zero value", client.RateLimitInfo{}, 0},
		{"plenty left", client.RateLimitInfo{Limit: 60, Remaining: 30, Reset: now.Add(31 * time.Second)}, 0},
		// 60 a minute, empty: full in 61 s at the most, 60 s at the
		// least; one token is a second.
		{"empty", client.RateLimitInfo{Limit: 60, Remaining: 0, Reset: now.Add(61 * time.Second)}, time.Second},
		// At the low-water mark (a tenth): 54 tokens missing over 54 s.
		{"low water", client.RateLimitInfo{Limit: 60, Remaining: 6, Reset: now.Add(55 * time.Second)}, time.Second},
		{"just above low water", client.RateLimitInfo{Limit: 60, Remaining: 7, Reset: now.Add(54 * time.Second)}, 0},
		// A bucket full again within the reset's one-second rounding
		// (the sandbox at 40/s, burst 5) says nothing: no wait.
		{"refills within rounding", client.RateLimitInfo{Limit: 5, Remaining: 0, Reset: now.Add(time.Second)}, 0},
		{"reset past", client.RateLimitInfo{Limit: 5, Remaining: 0, Reset: now.Add(-time.Second)}, 0},
		{"full", client.RateLimitInfo{Limit: 1, Remaining: 1, Reset: now.Add(5 * time.Second)}, 0},
	}
	for _, tt := range tests {
		if got := headerPace(tt.rl, now); got != tt.want {
			t.Errorf("%s: headerPace(%+v) = %v, want %v", tt.name, tt.rl, got, tt.want)
		}
	}
}

// TestFleetFollowsRateLimitHeaders: an answer saying the API's bucket is
// empty makes every worker of the fleet wait for one refill.
func TestFleetFollowsRateLimitHeaders(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	key := redistest.Name(t)
	a, _ := NewFleet(FleetConfig{Redis: rdb, Rate: 1000, APIKey: key, Endpoint: "e"})
	b, _ := NewFleet(FleetConfig{Redis: rdb, Rate: 1000, APIKey: key, Endpoint: "e"})

	// 4 missing tokens, full in 2.6 s at the least: 650 ms a token.
	a.Observe(context.Background(), client.Link{RateLimit: client.RateLimitInfo{
		Limit: 4, Remaining: 0, Reset: time.Now().Add(3600 * time.Millisecond),
	}}, nil)
	start := time.Now()
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 550*time.Millisecond || waited > 1500*time.Millisecond {
		t.Errorf("waited %v after an empty-bucket answer, want about 650ms", waited)
	}

	// A shorter pace never cuts a longer cool-down short.
	a.Observe(context.Background(), client.Link{}, &client.Error{
		Kind: client.KindAPI, StatusCode: 429, RetryAfter: 800 * time.Millisecond, HasRetryAfter: true,
	})
	a.Observe(context.Background(), client.Link{RateLimit: client.RateLimitInfo{
		Limit: 10, Remaining: 0, Reset: time.Now().Add(2 * time.Second),
	}}, nil) // 100 ms a token
	start = time.Now()
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 700*time.Millisecond {
		t.Errorf("waited %v, want the 429's 800ms to stand", waited)
	}
}

func TestLocalCooldownFollowsRateLimitHeaders(t *testing.T) {
	t.Parallel()
	c := NewCooldown(NewLocal(0, 1))
	c.Observe(context.Background(), client.Link{}, &client.Error{
		Kind: client.KindAPI, StatusCode: 500,
		RateLimit: client.RateLimitInfo{Limit: 2, Remaining: 0, Reset: time.Now().Add(1600 * time.Millisecond)},
	})
	start := time.Now()
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > time.Second {
		t.Errorf("waited %v after an empty-bucket 500, want about 300ms", d)
	}
}
