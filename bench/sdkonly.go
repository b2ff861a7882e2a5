package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/hibiken/asynq"

	"github.com/enrollq/enrollq/internal/client"
)

// sdkCommand is the hidden subcommand that serves a queue with a handler
// that makes one SDK call per task and stores nothing: the floor that the
// API call alone sets, between the no-op and the worker.
const sdkCommand = "sdk-worker"

// sdkTaskType is the type of the tasks the SDK-only worker handles.
const sdkTaskType = "bench:sdk"

// runSDKWorker serves --queue with the asynq settings of the no-op worker
// and a handler that reads the profile id from the payload and mints a URL
// through internal/client (the SDK, as the worker calls it), then
// returns. The API key and base URL come from ANTHROPIC_API_KEY and
// ANTHROPIC_BASE_URL.
func runSDKWorker(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := client.New(client.Config{APIKey: os.Getenv("ANTHROPIC_API_KEY"), BaseURL: os.Getenv("ANTHROPIC_BASE_URL")})
	if err != nil {
		return fmt.Errorf("%s: %w", sdkCommand, err)
	}
	return serveBare(ctx, sdkCommand, args, stderr, sdkTaskType, func(ctx context.Context, t *asynq.Task) error {
		var p struct {
			ProfileID string `json:"user_profile_id"`
		}
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		_, err := c.Create(ctx, p.ProfileID)
		return err
	})
}

// drainSDK enqueues the tasks with the payloads the producer writes and
// drains them with the SDK-only worker against a sandbox with no limit
// and no latency.
func (b *bench) drainSDK(ctx context.Context, label string, conc int) (drainResult, error) {
	n := b.names(label + "-sdk")
	if err := b.enqueueBare(ctx, n, sdkTaskType, func(i int) ([]byte, error) {
		return taskPayload(n.campaign, i)
	}); err != nil {
		return drainResult{}, err
	}
	sb, err := b.startSandbox(ctx, label+"-sdk", sandboxLimit{})
	if err != nil {
		return drainResult{}, err
	}
	defer sb.kill()
	env := childEnv("ANTHROPIC_BASE_URL="+sb.baseURL, "ANTHROPIC_API_KEY="+n.apiKey)
	args := []string{sdkCommand, "--redis-url", b.cfg.RedisURL, "--queue", n.queue, "--concurrency", fmt.Sprint(conc)}
	res, err := b.drain(ctx, "SDK call only", label+"-sdk", n.queue, conc, env, b.bin.self, args)
	if err != nil {
		return res, err
	}
	st, err := sb.stats(ctx)
	if err != nil {
		return res, err
	}
	res.calls, res.created = st.Requests, st.ByStatus["200"]
	u, err := sb.liveUsage()
	if err != nil {
		return res, err
	}
	res.sandboxCPU = u.cpu
	if res.closedConns, err = closedConnsTo(sb.baseURL); err != nil {
		return res, fmt.Errorf("count connections to the sandbox: %w", err)
	}
	return res, sb.stop()
}
