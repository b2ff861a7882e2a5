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
