package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/logging"
	"github.com/enrollq/enrollq/internal/redisconn"
	"github.com/enrollq/enrollq/internal/sandbox"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/tasks"
	"github.com/enrollq/enrollq/internal/worker"
)

var formatOf = sink.FormatOf

// run is the whole program; main only wires signals and exit codes.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.logLevel)
	if err != nil {
		return usageError{err}
	}
	redis.SetLogger(logging.Redis{L: log})
	if isTerminal(stderr) {
		cfg.progressOut = stderr
	}

	if cfg.redisURL == "" {
		return runLocal(ctx, cfg, stdin, stdout, log)
	}
	// Each enqueue goroutine holds one connection at a time.
	rdb, err := redisconn.Open(ctx, cfg.redisURL, 5*time.Second, redisconn.MinPool(cfg.concurrency+8))
	if errors.Is(err, redisconn.ErrBadURL) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	defer rdb.Close()
	redisconn.WarnEviction(ctx, rdb, log)

	switch {
	case cfg.resume:
		return resume(rdb, cfg.queue, stdout)
	case cfg.retryFailed:
		return retryFailed(ctx, cfg, rdb, stdout, log)
	case cfg.refresh:
		return refresh(ctx, cfg, rdb, stdout, log)
	case cfg.status:
		return status(ctx, cfg, rdb, stdout)
	}
	return runFleet(ctx, cfg, rdb, stdin, stdout, log)
}

// runLocal runs the campaign start to end in this process: an embedded
// Redis, the same worker as a fleet's, and, with --sandbox, the stand-in
// API. Whatever ends the run (done, Ctrl-C, a paused queue), it writes
// every input profile to --out, those without a result as pending: the
// embedded Redis is gone once the process exits, so a run of the same
// command starts from the live URLs of that file (see carryOver).
//
// While it runs, --out is also written every --checkpoint (a minute), so
// a run that is killed (SIGKILL, a second Ctrl-C) or cannot write at its
// end loses at most the URLs of the last interval.
func runLocal(ctx context.Context, cfg config, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return fmt.Errorf("start embedded redis: %w", err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	r, err := prepare(ctx, cfg, rdb, stdin, stdout, log)
	if err != nil {
		return err
	}
	defer r.close()

	if cfg.sandbox {
		base, stop, err := startSandbox(cfg, log)
		if err != nil {
			return err
		}
		defer stop()
		cfg.api.BaseURL = base
		cfg.api.APIKey = "sandbox"
	}
	wc := worker.Config{
		Redis: rdb, Queue: cfg.queue, Concurrency: cfg.workers,
		Rate: cfg.rate, Burst: cfg.burst, Client: cfg.api, Logger: log,
		ShutdownTimeout: localShutdownTimeout(cfg.api.Timeout),
		// A pause ends a local run and its embedded Redis with it.
		Handler: tasks.HandlerConfig{ResumeHint: localResumeHint(cfg.out)},
	}
	var outbox *sink.Outbox
	if cfg.sink.Target != "" {
		cfg.sink.Logger, cfg.sink.Redis, cfg.sink.Queue = log, rdb, cfg.queue
		s, err := sink.OpenResults(ctx, cfg.sink)
		if err != nil {
			return err
		}
		defer s.Close()
		wc.Sink = s
		if outbox, _ = s.(*sink.Outbox); outbox != nil {
			octx, stop := context.WithCancel(context.WithoutCancel(ctx))
			defer stop()
			go outbox.Run(octx)
		}
		log.Info("result sink", "sink", s.String())
	}
	w, err := worker.New(wc)
	if err != nil {
		return err
	}

	if r.carried, err = r.carryOver(ctx); err != nil {
		return err
	}
	if err := r.enqueue(ctx); err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	followErr := r.follow(ctx, true)
	if ctx.Err() != nil {
		w.Drain() // Ctrl-C: no call after it but those in flight
	}
	w.Shutdown()
	if outbox != nil {
		// The embedded Redis, and the outbox in it, end with the run.
		if err := outbox.Drain(ctx); err != nil {
			followErr = errors.Join(followErr, err)
		}
	}
	return r.finish(ctx, followErr)
}

func startSandbox(cfg config, log *slog.Logger) (string, func(), error) {
	faults, err := sandbox.ParseFaults(cfg.sbFail)
	if err != nil {
		return "", nil, usageError{fmt.Errorf("--sandbox-fail: %w", err)}
	}
	sb, err := sandbox.New(sandbox.Config{
		Faults: faults, Latency: cfg.sbLatency, TTL: cfg.sbTTL,
		Rate: cfg.sbRate, Burst: cfg.sbBurst, Logger: log.With("component", "sandbox"),
	})
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("start sandbox: %w", err)
	}
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
	return "http://" + l.Addr().String(), stop, nil
}

// runFleet enqueues for a fleet of workers, and with --wait follows the
// campaign to its end and writes --out.
func runFleet(ctx context.Context, cfg config, rdb *redis.Client, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	limitMemory()
	if err := checkQueue(ctx, cfg, campaign.NewStore(rdb, 0)); err != nil {
		return err
	}
	r, err := prepare(ctx, cfg, rdb, stdin, stdout, log)
	if err != nil {
		return err
	}
	defer r.close()
	if err := r.enqueue(ctx); err != nil {
		return err
	}
	if !cfg.wait {
		if r.sum.Enqueued > 0 {
			fmt.Fprintf(stdout, "enqueued for the workers on queue %q; follow with --wait, the web UI or the metrics\n", cfg.queue)
		}
		return r.noneValid()
	}
	return r.finish(ctx, r.follow(ctx, false))
}

// producerMemoryLimit is the fleet producer's soft memory limit. Its live
// heap stays a few MiB whatever the input's size (records stream, repeats
// are found in two passes), so the limit only makes the garbage collector
// return garbage sooner instead of letting the heap double between
// collections.
const producerMemoryLimit = 40 << 20

// limitMemory sets producerMemoryLimit unless GOMEMLIMIT says otherwise.
// Local mode keeps every result in its embedded Redis, so it sets none.
func limitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(producerMemoryLimit)
	}
}

// localResumeHint is what a local run's pause log advises once the
// account's fault is fixed: the run ends, so the same command again.
func localResumeHint(out string) string {
	if out == "" {
		return "run the same command again"
	}
	return "run the same command again: the profiles done so far are carried over from " + out
}
