package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/redisconn"
)

// noopCommand is the hidden subcommand that serves a queue with a handler
// that does nothing: the raw asynq throughput the worker is compared with.
const noopCommand = "noop-worker"

// noopTaskType is the type of the tasks the no-op worker handles.
const noopTaskType = "bench:noop"

// runNoopWorker serves --queue with a handler that returns nil, with the
// asynq settings of internal/worker that bear on throughput, until ctx
// ends.
func runNoopWorker(ctx context.Context, args []string, stderr io.Writer) error {
	return serveBare(ctx, noopCommand, args, stderr, noopTaskType,
		func(context.Context, *asynq.Task) error { return nil })
}

// serveBare parses the flags of a bare worker (name), and serves --queue's
// tasks of type typ with handle, on the worker's Redis pool and asynq
// settings, until ctx ends.
func serveBare(ctx context.Context, name string, args []string, stderr io.Writer, typ string,
	handle func(context.Context, *asynq.Task) error) error {
	var (
		redisURL    string
		queue       string
		concurrency int
	)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&redisURL, "redis-url", defaultRedisURL, "Redis URL")
	fs.StringVar(&queue, "queue", "", "asynq queue to serve; required")
	fs.IntVar(&concurrency, "concurrency", 10, "tasks at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if queue == "" {
		return errors.New(name + ": --queue is required")
	}

	// The same pool as the worker's, so that the sides differ only in
	// the handler.
	rdb, err := redisconn.Open(ctx, redisURL, 5*time.Second, redisconn.MinPool(concurrency+redisconn.ServerConns))
	if err != nil {
		return err
	}
	defer rdb.Close()

	srv := newBareServer(rdb, queue, concurrency)
	mux := asynq.NewServeMux()
	mux.HandleFunc(typ, handle)
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	<-ctx.Done()
	srv.Shutdown()
	return nil
}

// newBareServer is an asynq server with the settings of internal/worker
// that bear on throughput, for the no-op and SDK-only sides.
func newBareServer(rdb redis.UniversalClient, queue string, concurrency int) *asynq.Server {
	return asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{queue: 1},
		TaskCheckInterval:        100 * time.Millisecond, // as internal/worker
		DelayedTaskCheckInterval: time.Second,
		LogLevel:                 asynq.WarnLevel,
	})
}
