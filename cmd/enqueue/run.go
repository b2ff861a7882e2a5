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
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/logging"
	"github.com/enrollq/enrollq/internal/producer"
	"github.com/enrollq/enrollq/internal/redisconn"
	"github.com/enrollq/enrollq/internal/sandbox"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/source"
	"github.com/enrollq/enrollq/internal/worker"
)

const pollInterval = 200 * time.Millisecond

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

	if cfg.redisURL == "" {
		return runLocal(ctx, cfg, stdin, stdout, log)
	}
	rdb, err := redisconn.Open(ctx, cfg.redisURL, 5*time.Second)
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
	}
	return runFleet(ctx, cfg, rdb, stdin, stdout, log)
}

// runLocal runs the campaign start to end in this process: an embedded
// Redis, the same worker as a fleet's, and, with --sandbox, the stand-in
// API.
func runLocal(ctx context.Context, cfg config, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	if cfg.resume {
		return usageError{errors.New("--resume needs --redis-url: a local run keeps no queue to resume")}
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return fmt.Errorf("start embedded redis: %w", err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	if cfg.sandbox {
		base, stop, err := startSandbox(cfg, log)
		if err != nil {
			return err
		}
		defer stop()
		cfg.api.BaseURL = base
		cfg.api.APIKey = "sandbox"
	}

	w, err := worker.New(worker.Config{
		Redis: rdb, Queue: cfg.queue, Concurrency: cfg.workers,
		Rate: cfg.rate, Burst: cfg.burst, Client: cfg.api, Logger: log,
	})
	if err != nil {
		return err
	}

	sum, err := enqueueCSV(ctx, cfg, rdb, stdin, stdout, log)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	prog, err := follow(ctx, cfg, rdb, stdout, true)
	w.Shutdown()
	if err != nil {
		return err
	}
	return finish(ctx, cfg, rdb, sum, prog, stdout)
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
	sum, err := enqueueCSV(ctx, cfg, rdb, stdin, stdout, log)
	if err != nil {
		return err
	}
	if !cfg.wait {
		fmt.Fprintf(stdout, "enqueued for the workers on queue %q; follow with --wait or the web UI\n", cfg.queue)
		return nil
	}
	prog, err := follow(ctx, cfg, rdb, stdout, false)
	if err != nil {
		return err
	}
	return finish(ctx, cfg, rdb, sum, prog, stdout)
}

// enqueueCSV checks the whole input, then enqueues it, and prints the
// summary. A structurally broken file enqueues nothing.
func enqueueCSV(ctx context.Context, cfg config, rdb redis.UniversalClient, stdin io.Reader, stdout io.Writer, log *slog.Logger) (producer.Summary, error) {
	path, cleanup, err := inputFile(cfg.csvPath, stdin)
	if err != nil {
		return producer.Summary{}, err
	}
	defer cleanup()

	open := func() (*source.CSV, func(), error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("--csv: %w", err)
		}
		recs, err := source.NewCSV(f, source.CSVConfig{IDColumn: cfg.idColumn})
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s: %w", cfg.csvPath, err)
		}
		return recs, func() { f.Close() }, nil
	}

	recs, closeFile, err := open()
	if err != nil {
		return producer.Summary{}, err
	}
	// The first pass checks the structure and finds the repeats, so that
	// the second needs no memory per id.
	repeats := source.NewRepeats()
	_, err = producer.Validate(recs, repeats.Add)
	closeFile()
	if err != nil {
		return producer.Summary{}, fmt.Errorf("%s: %w (nothing was enqueued)", cfg.csvPath, err)
	}
	repeats.Finish()

	recs, closeFile, err = open()
	if err != nil {
		return producer.Summary{}, err
	}
	defer closeFile()
	pc := producer.Config{
		Redis: rdb, Queue: cfg.queue, Campaign: cfg.campaign,
		Concurrency: cfg.concurrency, MaxRetry: cfg.maxRetry, Logger: log, Screen: repeats,
	}
	if cfg.deadline > 0 {
		pc.Deadline = time.Now().Add(cfg.deadline)
	}
	sum, err := producer.Enqueue(ctx, pc, recs)
	printSummary(stdout, cfg.campaign, sum)
	if err != nil {
		return sum, fmt.Errorf("enqueue stopped after %d rows: %w", sum.Read, err)
	}
	return sum, nil
}

// inputFile returns a path to read twice: the file itself, or standard
// input spooled to a private temporary file.
func inputFile(path string, stdin io.Reader) (string, func(), error) {
	if path != "-" {
		return path, func() {}, nil
	}
	f, err := os.CreateTemp("", "enrollq-stdin-*.csv")
	if err != nil {
		return "", nil, fmt.Errorf("spool standard input: %w", err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	_, err = io.Copy(f, stdin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("spool standard input: %w", err)
	}
	return f.Name(), cleanup, nil
}

func printSummary(w io.Writer, name string, s producer.Summary) {
	for _, p := range s.Problems {
		fmt.Fprintln(w, p.String())
	}
	if more := s.Invalid + s.Repeats - len(s.Problems); more > 0 {
		fmt.Fprintf(w, "(%d more problems not listed)\n", more)
	}
	fmt.Fprintf(w, "campaign %s\n", name)
	fmt.Fprintf(w, "  rows read         %d\n", s.Read)
	fmt.Fprintf(w, "  enqueued          %d\n", s.Enqueued)
	fmt.Fprintf(w, "  already enqueued  %d\n", s.AlreadyEnqueued)
	fmt.Fprintf(w, "  repeats           %d\n", s.Repeats)
	fmt.Fprintf(w, "  invalid           %d\n", s.Invalid)
}

// follow polls the campaign until every profile has a result. In local
// mode a paused queue ends the run (nobody else would resume it); in fleet
// mode it is reported and waited out.
func follow(ctx context.Context, cfg config, rdb redis.UniversalClient, stdout io.Writer, local bool) (campaign.Progress, error) {
	store := campaign.NewStore(rdb, 0)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()

	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	lastReport := time.Now()
	for {
		prog, err := store.Progress(ctx, cfg.campaign)
		if err != nil {
			return prog, err
		}
		if prog.Pending() == 0 {
			return prog, nil
		}
		if qi, err := insp.GetQueueInfo(cfg.queue); err == nil && qi.Paused {
			if local {
				return prog, fmt.Errorf("the API refused the account (key, billing or permission) and the queue was paused; %d of %d profiles have no result (see the log above)", prog.Pending(), prog.Total)
			}
			if time.Since(lastReport) > 10*time.Second {
				fmt.Fprintf(stdout, "queue %q is paused: fix the fault the workers logged, then run enqueue --resume\n", cfg.queue)
				lastReport = time.Now()
			}
		} else if time.Since(lastReport) > 5*time.Second {
			fmt.Fprintf(stdout, "progress: %d/%d done (%d created, %d failed)\n", prog.Done(), prog.Total, prog.Created, prog.Failed)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return prog, fmt.Errorf("stopped while waiting: %d of %d profiles done; the tasks stay queued: %w", prog.Done(), prog.Total, ctx.Err())
		case <-tick.C:
		}
	}
}

// finish writes --out and the final counts. It fails when any profile of
// this run has no URL, after writing what there is.
func finish(ctx context.Context, cfg config, rdb redis.UniversalClient, sum producer.Summary, prog campaign.Progress, stdout io.Writer) error {
	store := campaign.NewStore(rdb, 0)
	if cfg.out != "" {
		cols, err := store.Columns(ctx, cfg.campaign)
		if err != nil {
			return err
		}
		results, err := store.Results(ctx, cfg.campaign)
		if err != nil {
			return err
		}
		if err := sink.WriteFile(cfg.out, cols, results); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d results to %s\n", len(results), cfg.out)
	}
	fmt.Fprintf(stdout, "results: %d created, %d failed, of %d profiles\n", prog.Created, prog.Failed, prog.Total)
	if prog.Created > 0 {
		fmt.Fprintln(stdout, "links expire about an hour after they were created: send them soon")
	}
	if prog.Failed > 0 {
		return errSomeFailed{prog.Failed}
	}
	return nil
}

type errSomeFailed struct{ n int64 }

func (e errSomeFailed) Error() string {
	return fmt.Sprintf("%d profiles failed; their reasons are in the results", e.n)
}

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// resume unpauses a queue paused by an account fault.
func resume(rdb redis.UniversalClient, queue string, stdout io.Writer) error {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	if err := insp.UnpauseQueue(queue); err != nil {
		return fmt.Errorf("resume queue %q: %w", queue, err)
	}
	fmt.Fprintf(stdout, "queue %q resumed\n", queue)
	return nil
}

// retryFailed enqueues a campaign's failed profiles again, on purpose:
// their results and archived tasks are cleared first, so that the task id
// of the earlier run does not block the new one.
func retryFailed(ctx context.Context, cfg config, rdb redis.UniversalClient, stdout io.Writer, log *slog.Logger) error {
	store := campaign.NewStore(rdb, 0)
	results, err := store.Results(ctx, cfg.campaign)
	if err != nil {
		return err
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	client := asynq.NewClientFromRedisClient(rdb)

	n := 0
	for _, r := range results {
		if r.Status != campaign.StatusFailed {
			continue
		}
		if err := requeue(ctx, cfg, store, insp, client, r); err != nil {
			return fmt.Errorf("retry %s: %w (%d re-enqueued before it)", r.ProfileID, err, n)
		}
		n++
	}
	fmt.Fprintf(stdout, "campaign %s: %d failed profiles enqueued again\n", cfg.campaign, n)
	log.Info("failed profiles re-enqueued", "campaign", cfg.campaign, "count", n)
	return nil
}
