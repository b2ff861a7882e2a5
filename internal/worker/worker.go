// Package worker runs enrollq's task handler in an asynq server. The same
// Worker serves a fleet (cmd/worker, any number of processes on one Redis)
// and local mode (cmd/enqueue with an embedded Redis): one handler, two
// ways to run.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/logging"
	"github.com/enrollq/enrollq/internal/metrics"
	"github.com/enrollq/enrollq/internal/ratelimit"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/tasks"
	"github.com/enrollq/enrollq/internal/webui"
)

// Defaults for Config.
const (
	DefaultQueue           = "enrollq"
	DefaultConcurrency     = 10
	DefaultRate            = 10
	DefaultBurst           = 1
	DefaultShutdownTimeout = 25 * time.Second
)

// Config configures a Worker.
type Config struct {
	// Redis is the queue's server. Required.
	Redis redis.UniversalClient

	// Queue is the asynq queue to serve. Default DefaultQueue.
	Queue string

	// Concurrency is how many tasks run at once. Default
	// DefaultConcurrency.
	Concurrency int

	// Rate is API calls a second and Burst the calls allowed at once. With
	// Fleet, Rate is the budget of every worker together. Rate <= 0 turns
	// the limit off. Default DefaultRate, DefaultBurst.
	Rate  float64
	Burst int

	// Fleet shares the rate limit and 429 cool-downs through Redis. Off,
	// the limit is this process's alone (local mode).
	Fleet bool

	// Client configures the API client. Its APIKey is required unless
	// Caller is set.
	Client client.Config

	// Caller replaces the API client (tests).
	Caller tasks.Caller

	// ShutdownTimeout is how long in-flight tasks get to finish on stop;
	// past it, they go back to the queue. It must exceed Client.Timeout.
	// Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// Handler tunes the task handler; its Caller, Store, Limiter and
	// Pauser are filled in by New.
	Handler tasks.HandlerConfig

	// Sink, when set, receives each result (a database table or a
	// webhook) before the result store records it, so that a failed
	// hand-off makes the task run again instead of losing the result.
	Sink ResultSink

	// MetricsAddr, when set, serves Prometheus metrics at /metrics.
	MetricsAddr string

	// UI, when its Addr is set, serves the asynq web UI and the campaign
	// page.
	UI webui.Config

	// Logger receives the worker's and asynq's logs. Default
	// slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Client.Timeout <= 0 {
		c.Client.Timeout = 20 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if c.Redis == nil {
		return errors.New("worker: Redis is required")
	}
	return CheckTimeouts(c.Client.Timeout, c.ShutdownTimeout)
}

// CheckTimeouts refuses an API call timeout (Client.Timeout, the
// commands' --timeout) that a call could outlive its task with: it must
// be shorter than the shutdown budget and the task timeout.
func CheckTimeouts(call, shutdown time.Duration) error {
	switch {
	case call >= shutdown:
		return fmt.Errorf("--timeout %s must be shorter than --shutdown-timeout %s", call, shutdown)
	case call >= tasks.TaskTimeout:
		return fmt.Errorf("--timeout %s must be shorter than the task timeout %s", call, tasks.TaskTimeout)
	}
	return nil
}

// Worker is a running asynq server with the enrollq handler.
type Worker struct {
	cfg       Config
	srv       *asynq.Server
	inspector *asynq.Inspector
	handler   *tasks.Handler
	metrics   *metrics.Metrics
	drain     context.CancelFunc // ends the limiter waits, see Drain
	drainOnce sync.Once
}

// New builds a Worker; Start runs it.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	caller := cfg.Caller
	if caller == nil {
		c, err := client.New(cfg.Client)
		if err != nil {
			return nil, err
		}
		caller = c
	}

	limiter, observer, err := newLimiter(cfg)
	if err != nil {
		return nil, err
	}
	drained, drain := context.WithCancel(context.Background())
	limiter = drainingLimiter{Limiter: limiter, drained: drained}

	inspector := asynq.NewInspectorFromRedisClient(cfg.Redis)
	hc := cfg.Handler
	hc.Caller = caller
	store := campaign.NewStore(cfg.Redis, 0)
	hc.Store = store
	if cfg.Sink != nil {
		hc.Store = sinkStore{Store: store, sink: cfg.Sink, log: cfg.Logger}
	}
	hc.Limiter = limiter
	hc.Observe = observer
	hc.Pauser = inspector
	hc.Logger = cfg.Logger
	var m *metrics.Metrics
	if cfg.MetricsAddr != "" {
		m = metrics.New(cfg.Redis, inspector)
		m.SetRate(rateOf(cfg))
		hc.Metrics = m
	}
	h, err := tasks.NewHandler(hc)
	if err != nil {
		drain()
		return nil, err
	}

	backoff := tasks.Backoff{Base: hc.Backoff.Base, Max: hc.Backoff.Max}
	if backoff.Base <= 0 {
		backoff = tasks.Backoff{Base: tasks.DefaultBackoffBase, Max: tasks.DefaultBackoffMax}
	}
	srv := asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   map[string]int{cfg.Queue: 1},
		IsFailure:                tasks.IsFailure,
		RetryDelayFunc:           tasks.RetryDelay(backoff),
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   logging.Asynq{L: cfg.Logger},
		LogLevel:                 asynq.WarnLevel,
		TaskCheckInterval:        100 * time.Millisecond,
		DelayedTaskCheckInterval: time.Second,
		HealthCheckFunc: func(err error) {
			if err != nil {
				cfg.Logger.Warn("redis health check failed; asynq keeps retrying", "error", err)
			}
		},
	})
	return &Worker{cfg: cfg, srv: srv, inspector: inspector, handler: h, metrics: m, drain: drain}, nil
}

// ResultSink receives results as they are stored; *sink.Outbox (the
// commands' choice), *sink.Table and *sink.Webhook are three.
type ResultSink interface {
	Put(ctx context.Context, r campaign.Result) error
}

var (
	_ ResultSink  = (*sink.Table)(nil)
	_ ResultSink  = (*sink.Webhook)(nil)
	_ tasks.Store = sinkStore{}

	_ tasks.Allower = drainingLimiter{}
	_ tasks.Allower = (*ratelimit.Cooldown)(nil)
)

// sinkStore hands each result to the sink, then records it in Redis. In
// that order a crash or a sink outage between the two leaves no result in
// Redis, so the task runs again (minting a new URL, which the sink takes
// as the newest) rather than skip a result the sink never got. A failure
// reaches the sink even when Redis then keeps a live URL over it; the
// table sink applies the same rule, a webhook receiver sees the status.
// The Redis put and an outbox's append are two round trips, not one
// transaction: a crash between them costs a second delivery, never a lost
// one.
//
// The commands open a table or a webhook behind an outbox in Redis
// (sink.OpenResults), so the sink's own outage costs the task nothing:
// the append is to Redis, and the outbox waits the outage out. A sink
// handed in directly (a *sink.Table or *sink.Webhook) is written in the
// task; then, on the task's last attempt, a sink that still refuses does
// not cost the profile its result: it is recorded in Redis all the same
// (where export and --wait find it) and the miss is logged at Error,
// naming the profile.
type sinkStore struct {
	*campaign.Store
	sink ResultSink
	log  *slog.Logger
	// last reports whether ctx is the task's last attempt; default
	// lastAttempt.
	last func(ctx context.Context) bool
}

func (s sinkStore) Put(ctx context.Context, r campaign.Result) (bool, error) {
	if err := s.sink.Put(ctx, r); err != nil {
		last := s.last
		if last == nil {
			last = lastAttempt
		}
		if !last(ctx) || ctx.Err() != nil {
			return false, err
		}
		s.log.Error("result sink refused the result on the task's last attempt: kept in Redis only; "+
			"write it out with cmd/export", "campaign", r.Campaign, "user_profile_id", r.ProfileID,
			"status", r.Status, "error", err)
	}
	return s.Store.Put(ctx, r)
}

// PutCall keeps the order of Put, sink first, for a first run's result:
// it counts the call first, so that the sink gets the attempts that
// Redis will hold. (*campaign.Store).PutCall would skip the sink.
func (s sinkStore) PutCall(ctx context.Context, r campaign.Result) (bool, int64, error) {
	calls, err := s.Store.CountCall(ctx, r.Campaign, r.ProfileID)
	if err != nil {
		return false, 0, err
	}
	r.Attempts += calls - 1
	kept, err := s.Put(ctx, r)
	return kept, calls, err
}

// lastAttempt reports whether asynq will archive the task if this attempt
// fails.
func lastAttempt(ctx context.Context) bool {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried >= maxRetry
}

func rateOf(cfg Config) float64 {
	if cfg.Rate <= 0 {
		return math.Inf(1)
	}
	return cfg.Rate
}

func newLimiter(cfg Config) (tasks.Limiter, tasks.Observer, error) {
	if !cfg.Fleet {
		l := ratelimit.NewCooldown(ratelimit.NewLocal(cfg.Rate, cfg.Burst))
		return l, l, nil
	}
	if cfg.Rate <= 0 {
		l := ratelimit.NewCooldown(ratelimit.NewLocal(0, 1))
		return l, l, nil
	}
	f, err := ratelimit.NewFleet(ratelimit.FleetConfig{
		Redis: cfg.Redis, Rate: cfg.Rate, Burst: cfg.Burst,
		APIKey: cfg.Client.APIKey, Endpoint: string(cfg.Client.Endpoint),
	})
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}

// Start begins processing in the background.
func (w *Worker) Start() error {
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeEnrollmentURL, w.handler)
	if err := w.srv.Start(mux); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	w.cfg.Logger.Info("worker started", "queue", w.cfg.Queue, "concurrency", w.cfg.Concurrency,
		"rate", w.cfg.Rate, "burst", w.cfg.Burst, "fleet_limit", w.cfg.Fleet)
	return nil
}

// Drain makes the worker start no more API calls, at once: it takes no
// new task, and tasks waiting for the rate limiter give up and go back to
// the queue. Calls already made finish (within Client.Timeout); Shutdown
// then waits for them only. It is safe to call more than once.
func (w *Worker) Drain() {
	w.drainOnce.Do(func() {
		w.drain()
		w.srv.Stop()
	})
}

// drainingLimiter ends every wait when drained ends, so that a worker
// told to stop does not make the calls its queued tasks were waiting for.
// drained is a context.WithCancel: context.AfterFunc then needs no
// goroutine per wait.
type drainingLimiter struct {
	tasks.Limiter
	drained context.Context
}

func (l drainingLimiter) Wait(ctx context.Context) error {
	if l.drained.Err() != nil {
		return errDraining
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.drained, cancel)
	defer stop()
	if err := l.Limiter.Wait(ctx); err != nil {
		if l.drained.Err() != nil {
			return errDraining
		}
		return err
	}
	return nil
}

// Allow grants a call at once only while the worker is not draining and
// the limiter under it can (see tasks.Allower).
func (l drainingLimiter) Allow() bool {
	if l.drained.Err() != nil {
		return false
	}
	al, ok := l.Limiter.(tasks.Allower)
	return ok && al.Allow()
}

var errDraining = errors.New("worker stopping: no new calls")

// Shutdown stops taking tasks, gives in-flight ones ShutdownTimeout to
// finish and puts the rest back in the queue.
func (w *Worker) Shutdown() {
	w.srv.Shutdown()
	w.inspector.Close()
	w.cfg.Logger.Info("worker stopped", "queue", w.cfg.Queue)
}

// Run starts a Worker, with its metrics and UI servers when configured,
// and stops them all when ctx ends.
func Run(ctx context.Context, cfg Config) error {
	w, err := New(cfg)
	if err != nil {
		return err
	}
	srvCtx, stopServers := context.WithCancel(context.Background())
	defer stopServers()
	errc := make(chan error, 2)
	if w.metrics != nil {
		go func() { errc <- webui.Serve(srvCtx, cfg.MetricsAddr, metricsMux(w.metrics, cfg.Redis)) }()
		w.cfg.Logger.Info("metrics listening", "addr", cfg.MetricsAddr)
	}
	if cfg.UI.Addr != "" {
		cfg.UI.Redis = cfg.Redis
		h, closeUI, err := webui.Handler(cfg.UI)
		if err != nil {
			return err
		}
		defer closeUI()
		go func() { errc <- webui.Serve(srvCtx, cfg.UI.Addr, h) }()
		w.cfg.Logger.Info("web ui listening", "addr", cfg.UI.Addr, "read_only", cfg.UI.ReadOnly)
	}
	if err := w.Start(); err != nil {
		return err
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	w.Drain()
	w.Shutdown()
	return err
}

// readyTimeout bounds /readyz's Redis ping.
const readyTimeout = 2 * time.Second

// metricsMux serves /metrics, /healthz (the process answers: for liveness
// probes) and /readyz (Redis answers too: for readiness probes; a restart
// would not bring Redis back, so liveness must not depend on it).
func metricsMux(m *metrics.Metrics, rdb redis.UniversalClient) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := rdb.Ping(ctx).Err(); err != nil {
			http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
