package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/logging"
	"github.com/enrollq/enrollq/internal/redisconn"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/worker"
)

// redisRetry is how long the worker keeps trying to reach Redis at start.
const redisRetry = time.Minute

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg        worker.Config
		redisURL   string
		api        client.Flags
		sinkFlags  sink.Flags
		logLevel   string
		localLimit bool
	)
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis URL (env REDIS_URL); required")
	fs.StringVar(&cfg.Queue, "queue", worker.DefaultQueue, "asynq queue to serve")
	fs.IntVar(&cfg.Concurrency, "concurrency", worker.DefaultConcurrency, "tasks run at once")
	fs.Float64Var(&cfg.Rate, "rate", worker.DefaultRate, "API calls per second for the whole fleet (0: no limit)")
	fs.IntVar(&cfg.Burst, "burst", worker.DefaultBurst, "API calls allowed at once")
	fs.BoolVar(&localLimit, "local-limit", false, "limit this process alone instead of the fleet (not for shared keys)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", worker.DefaultShutdownTimeout, "time in-flight calls get to finish on SIGTERM; the rest go back to the queue")
	api.Register(fs)
	sinkFlags.Register(fs)
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9090)")
	fs.StringVar(&cfg.UI.Addr, "ui-addr", "", "serve the asynq web UI at http://ADDR/ and campaign progress at /campaigns (e.g. 127.0.0.1:8080)")
	fs.BoolVar(&cfg.UI.ReadOnly, "ui-read-only", false, "web UI without buttons that change tasks or queues")
	fs.StringVar(&cfg.UI.AuthFile, "ui-auth-file", "", "file holding user:password for the web UI's basic auth (required off loopback)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case cfg.Queue == "":
		return usageError{errors.New("--queue: must not be empty")}
	case cfg.Concurrency < 1:
		return usageError{fmt.Errorf("--concurrency %d: must be at least 1", cfg.Concurrency)}
	case cfg.Rate < 0:
		return usageError{fmt.Errorf("--rate %v: must be 0 (no limit) or more", cfg.Rate)}
	case cfg.Burst < 1:
		return usageError{fmt.Errorf("--burst %d: must be at least 1", cfg.Burst)}
	case cfg.ShutdownTimeout <= 0:
		return usageError{fmt.Errorf("--shutdown-timeout %s: must be positive", cfg.ShutdownTimeout)}
	}
	cfg.UI.FlagPrefix = "ui-"
	if cfg.UI.Addr != "" {
		if err := cfg.UI.Validate(); err != nil {
			return usageError{err}
		}
	}

	log, err := logging.New(stderr, logLevel)
	if err != nil {
		return usageError{err}
	}
	redis.SetLogger(logging.Redis{L: log})
	if redisURL == "" {
		return usageError{errors.New("--redis-url (or REDIS_URL) is required; for a run without Redis use cmd/enqueue's local mode")}
	}
	if cfg.Client, err = api.Config(false); err != nil {
		return usageError{err}
	}
	if err := worker.CheckTimeouts(cfg.Client.Timeout, cfg.ShutdownTimeout); err != nil {
		return usageError{err}
	}
	cfg.Fleet = !localLimit
	cfg.Logger = log
	var sinkCfg sink.ResultsConfig
	if sinkFlags.Set() {
		if sinkCfg, err = sinkFlags.Config(); err != nil {
			return usageError{err}
		}
	}

	// Every task slot makes one Redis call at a time; asynq's own loops
	// (heartbeat, forwarder, recoverer, lease extender, pub/sub) need more.
	rdb, err := openRedis(ctx, redisURL, log, redisconn.MinPool(cfg.Concurrency+redisconn.ServerConns))
	if err != nil {
		return err
	}
	defer rdb.Close()
	redisconn.WarnEviction(ctx, rdb, log)
	cfg.Redis = rdb
	cfg.UI.RedisURL = redisURL

	if sinkFlags.Set() {
		sinkCfg.Logger, sinkCfg.Redis, sinkCfg.Queue = log, rdb, cfg.Queue
		s, err := sink.OpenResults(ctx, sinkCfg)
		if err != nil {
			return err
		}
		defer s.Close()
		cfg.Sink = s
		if ob, ok := s.(*sink.Outbox); ok {
			go ob.Run(ctx) // undelivered results stay in Redis for the next worker
		}
		log.Info("result sink", "sink", s.String())
	}

	return worker.Run(ctx, cfg)
}

// openRedis keeps trying for redisRetry with backoff, so that a worker
// started before its Redis (as in Compose) waits for it.
func openRedis(ctx context.Context, url string, log interface {
	Warn(string, ...any)
}, options ...redisconn.Option) (*redis.Client, error) {
	delay := 500 * time.Millisecond
	deadline := time.Now().Add(redisRetry)
	for {
		rdb, err := redisconn.Open(ctx, url, 5*time.Second, options...)
		if err == nil {
			return rdb, nil
		}
		if errors.Is(err, redisconn.ErrBadURL) {
			return nil, usageError{err}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		log.Warn("redis not reachable yet; retrying", "error", err, "retry_in", delay.String())
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, err
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
