package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/producer"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/source"
)

// callTimes records when each call was made.
type callTimes struct {
	mu sync.Mutex
	at []time.Time
}

func (c *callTimes) Create(ctx context.Context, profileID string) (client.Link, error) {
	c.mu.Lock()
	c.at = append(c.at, time.Now())
	c.mu.Unlock()
	return client.Link{URL: client.Secret("https://example.com/" + profileID), ExpiresAt: time.Now().Add(time.Hour), RequestID: "req_x"}, nil
}

func (c *callTimes) last() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.at) == 0 {
		return time.Time{}
	}
	return c.at[len(c.at)-1]
}

// TestRunStopsCallingOnSignal stops a worker whose ten tasks wait for a
// slow rate limit: no call is made after the stop, and Run returns at
// once instead of when the waiting tasks have had their turns.
func TestRunStopsCallingOnSignal(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	redistest.DeleteQueueAtEnd(t, rdb, name)
	var in strings.Builder
	in.WriteString("user_profile_id\n")
	for i := range 30 {
		fmt.Fprintf(&in, "uprof_01D%023d\n", i)
	}
	recs, err := source.NewCSV(strings.NewReader(in.String()), source.CSVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := producer.Enqueue(context.Background(), producer.Config{Redis: rdb, Queue: name, Campaign: name}, recs); err != nil {
		t.Fatal(err)
	}

	calls := &callTimes{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Redis: rdb, Queue: name, Concurrency: 10, Rate: 2, Caller: calls,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	time.Sleep(1250 * time.Millisecond) // between two turns of the limiter
	stopped := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(stopped); d > time.Second {
		t.Errorf("Run returned %s after the stop, want under 1s", d)
	}
	if last := calls.last(); last.After(stopped.Add(100 * time.Millisecond)) {
		t.Errorf("a call was made %s after the stop, want none", last.Sub(stopped))
	}
}
