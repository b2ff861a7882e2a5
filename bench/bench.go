package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/redisconn"
)

// serversTimeout bounds the wait for the workers to register with asynq.
const serversTimeout = 30 * time.Second

// bench holds what every scenario shares.
type bench struct {
	cfg config
	log io.Writer // progress lines

	dir       string // binaries, inputs, outputs and logs
	removeDir bool
	bin       binaries

	rdb  *redis.Client
	insp *asynq.Inspector

	// runID makes queue, campaign and API key names unique to this run.
	runID string
}

// newBench prepares the work directory, builds the binaries and connects
// to Redis.
func newBench(ctx context.Context, cfg config, log io.Writer) (*bench, error) {
	b := &bench{cfg: cfg, log: log, runID: time.Now().UTC().Format("20060102T150405")}
	var err error
	if cfg.WorkDir != "" {
		b.dir = cfg.WorkDir
		err = os.MkdirAll(b.dir, 0o700)
	} else {
		b.dir, err = os.MkdirTemp("", "enrollq-bench-")
		b.removeDir = true
	}
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}

	b.logf("building the commands into %s", b.dir)
	if b.bin, err = buildBinaries(ctx, b.dir, cfg.Rev, log); err != nil {
		b.close()
		return nil, err
	}
	if cfg.WorkerBin != "" {
		b.bin.worker = cfg.WorkerBin
		b.logf("workers run %s", cfg.WorkerBin)
	}
	if b.rdb, err = redisconn.Open(ctx, cfg.RedisURL, 5*time.Second); err != nil {
		b.close()
		return nil, err
	}
	b.insp = asynq.NewInspectorFromRedisClient(b.rdb)
	return b, nil
}

// close empties the bench's database and removes the temporary directory.
func (b *bench) close() {
	if b.rdb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := b.flush(ctx); err != nil {
			b.logf("warning: %v", err)
		}
		cancel()
		b.insp.Close()
		b.rdb.Close()
	}
	if b.removeDir {
		os.RemoveAll(b.dir)
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// flush empties the bench's database. ASYNC frees a million tasks in the
// background instead of blocking the server for seconds.
func (b *bench) flush(ctx context.Context) error {
	if err := b.rdb.FlushDBAsync(ctx).Err(); err != nil {
		return fmt.Errorf("empty the bench database: %w", err)
	}
	return nil
}

// runAll runs the chosen scenarios one after another. A scenario that
// fails is reported and the next one runs; the error lists them all.
func (b *bench) runAll(ctx context.Context) (*report, error) {
	rep := newReport(b.runID)
	rep.machine = describeMachine(ctx, b.rdb)
	rep.source = b.bin.source
	var errs []error
	for _, name := range b.cfg.Scenarios {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: not run: %w", name, ctx.Err()))
			continue
		}
		if err := b.flush(ctx); err != nil {
			return rep, err
		}
		start := time.Now()
		b.logf("%s: starting", name)
		err := b.runScenario(ctx, name, rep)
		if err != nil {
			b.logf("%s: %v", name, err)
			rep.failed = append(rep.failed, name)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		b.logf("%s: done in %s", name, time.Since(start).Round(100*time.Millisecond))
	}
	rep.elapsed = time.Since(rep.started)
	return rep, errors.Join(errs...)
}

func (b *bench) runScenario(ctx context.Context, name string, rep *report) error {
	switch name {
	case scCurl:
		res, err := b.runCurl(ctx)
		if err != nil {
			return err
		}
		rep.fleet = append(rep.fleet, res)
	case scOverhead:
		res, err := b.runOverhead(ctx)
		rep.overhead = res
		if err != nil {
			return err
		}
	case scEnqueue:
		res, err := b.runEnqueue(ctx)
		if err != nil {
			return err
		}
		rep.enqueue = &res
	case scExport:
		res, err := b.runExport(ctx)
		if err != nil {
			return err
		}
		rep.export = &res
	default:
		res, err := b.runFleet(ctx, b.fleetScenario(name))
		if err != nil {
			return err
		}
		rep.fleet = append(rep.fleet, res)
	}
	return nil
}

// names are a scenario's queue, campaign and API key, unique to the run.
type names struct {
	queue, campaign, apiKey string
}

func (b *bench) names(scenario string) names {
	base := "bench-" + scenario + "-" + b.runID
	// The key names the fleet limiter's bucket: a fresh one per scenario.
	return names{queue: base, campaign: base, apiKey: "sk-" + base}
}

// waitServers waits until every process of pids serves queue in asynq's
// view: the workers are ready, so that the clock can start.
func (b *bench) waitServers(ctx context.Context, queue string, pids []int) error {
	deadline := time.Now().Add(serversTimeout)
	for {
		servers, err := b.insp.Servers()
		if err != nil {
			return fmt.Errorf("list asynq servers: %w", err)
		}
		ready := 0
		for _, s := range servers {
			if _, ok := s.Queues[queue]; ok && slices.Contains(pids, s.PID) {
				ready++
			}
		}
		if ready >= len(pids) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d workers serve queue %s after %s", ready, len(pids), queue, serversTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startWorkers starts n worker processes with args, logging to
// SCENARIO-worker-I.log.
func (b *bench) startWorkers(n int, scenario string, env []string, bin string, args []string) ([]*proc, error) {
	var ps []*proc
	for i := range n {
		p, err := spawn(spec{
			name: fmt.Sprintf("worker %d", i+1), bin: bin, args: args, env: env,
			logPath: fmt.Sprintf("%s/%s-worker-%d.log", b.dir, scenario, i+1),
		})
		if err != nil {
			group(ps).killAll()
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func pidsOf(ps []*proc) []int {
	pids := make([]int, len(ps))
	for i, p := range ps {
		pids[i] = p.pid()
	}
	return pids
}
