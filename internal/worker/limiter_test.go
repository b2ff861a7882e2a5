package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/enrollq/enrollq/internal/ratelimit"
)

func TestDrainingLimiterAllow(t *testing.T) {
	t.Parallel()
	drained, drain := context.WithCancel(context.Background())
	l := drainingLimiter{Limiter: ratelimit.NewCooldown(ratelimit.NewLocal(0, 1)), drained: drained}
	if !l.Allow() {
		t.Error("Allow() = false before the drain, want true")
	}
	drain()
	if l.Allow() {
		t.Error("Allow() = true after the drain, want false")
	}
	if err := l.Wait(context.Background()); !errors.Is(err, errDraining) {
		t.Errorf("Wait() = %v after the drain, want errDraining", err)
	}

	// A limiter that cannot grant at once (the fleet's, in Redis) never
	// allows: its calls take the bounded wait.
	l = drainingLimiter{Limiter: waitOnly{}, drained: context.Background()}
	if l.Allow() {
		t.Error("Allow() = true over a limiter without Allow, want false")
	}
}

type waitOnly struct{}

func (waitOnly) Wait(ctx context.Context) error { return ctx.Err() }
