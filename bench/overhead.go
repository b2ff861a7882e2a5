package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/tasks"
)

// Settings of the overhead scenario.
const (
	// drainPoll is how often the queue's processed count is read while it
	// drains; the rate's error is about one poll over the drain time.
	drainPoll = 50 * time.Millisecond

	// noopEnqueuers is how many goroutines enqueue the no-op tasks.
	noopEnqueuers = 32
)

// drainResult is one side of one run of the overhead scenario.
type drainResult struct {
	side  string
	procs int
	conc  int
	tasks int

	rate  float64 // tasks a second, from the first to the last completion
	span  time.Duration
	usage usage // CPU added up over the processes, the largest peak RSS

	// redisCPU is the Redis server's CPU time while the queue drained.
	redisCPU time.Duration

	// For the worker's side: API calls the sandbox answered, created
	// results, the sandbox's CPU time, and the TCP connections to it that
	// the worker closed (TIME_WAIT, last minute): how often it dialled
	// again.
	calls, created int64
	sandboxCPU     time.Duration
	closedConns    int
}

// overheadResult compares the worker with a no-op asynq handler at one
// concurrency: the same tasks, processes and concurrency on both sides,
// run in rounds so that a change in the machine's load hits both.
type overheadResult struct {
	conc            int
	noop, sdk, ours []drainResult // one per round, in round order
}

// medians returns, for each side, the run with the median rate.
func (o overheadResult) medians() (noop, sdk, ours drainResult) {
	return medianRun(o.noop), medianRun(o.sdk), medianRun(o.ours)
}

// ratio is the worker's rate over the no-op's: the median of the rounds'
// ratios (see sideRatio).
func (o overheadResult) ratio() float64 { return o.sideRatio(o.ours) }

// sideRatio is the median over the rounds of a side's rate over the
// no-op's in the same round. Pairing the runs of a round, a minute apart
// at most, cancels the slow swings of this machine's speed, which a ratio
// of two medians taken over all rounds keeps.
func (o overheadResult) sideRatio(side []drainResult) float64 {
	ratios := o.roundRatios(side)
	if len(ratios) == 0 {
		return 0
	}
	slices.Sort(ratios)
	return ratios[(len(ratios)-1)/2]
}

// roundRatios is a side's rate over the no-op's, round by round.
func (o overheadResult) roundRatios(side []drainResult) []float64 {
	var ratios []float64
	for i := range min(len(side), len(o.noop)) {
		if o.noop[i].rate > 0 {
			ratios = append(ratios, side[i].rate/o.noop[i].rate)
		}
	}
	return ratios
}

// medianRun is the run with the median rate (the lower one of two).
func medianRun(runs []drainResult) drainResult {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b drainResult) int { return cmp.Compare(a.rate, b.rate) })
	return sorted[(len(sorted)-1)/2]
}

// runOverhead drains the same number of tasks through a raw asynq no-op
// handler, an SDK-only handler and the worker against a sandbox with no
// limit and no latency: cfg.OverheadRuns rounds at each concurrency. The
// order of the sides turns round every other round (no-op first, then
// worker first), so that a machine that speeds up or slows down during a
// round favours neither.
func (b *bench) runOverhead(ctx context.Context) ([]overheadResult, error) {
	var all []overheadResult
	for _, conc := range b.cfg.OverheadConc {
		res := overheadResult{conc: conc}
		for run := 1; run <= b.cfg.OverheadRuns; run++ {
			label := fmt.Sprintf("%s-c%d-r%d", scOverhead, conc, run)
			sides := []struct {
				name  string
				drain func(context.Context, string, int) (drainResult, error)
				out   *[]drainResult
			}{
				{"no-op", b.drainNoop, &res.noop},
				{"SDK-only", b.drainSDK, &res.sdk},
				{"worker", b.drainOurs, &res.ours},
			}
			if run%2 == 0 {
				slices.Reverse(sides)
			}
			for _, side := range sides {
				d, err := side.drain(ctx, label, conc)
				if err != nil {
					return all, fmt.Errorf("%s, %s side: %w", label, side.name, err)
				}
				*side.out = append(*side.out, d)
			}
			i := len(res.noop) - 1
			b.logf("%s: no-op %.0f tasks/s, SDK call only %.0f tasks/s, worker %.0f tasks/s (%.1f%%)", label,
				res.noop[i].rate, res.sdk[i].rate, res.ours[i].rate, 100*res.ours[i].rate/res.noop[i].rate)
			if err := b.flush(ctx); err != nil {
				return all, err
			}
		}
		all = append(all, res)
	}
	return all, nil
}

// drainNoop enqueues the tasks with a plain asynq client, payloads as
// large as the producer's, and drains them with the no-op worker.
func (b *bench) drainNoop(ctx context.Context, label string, conc int) (drainResult, error) {
	n := b.names(label + "-noop")
	if err := b.enqueueNoop(ctx, n); err != nil {
		return drainResult{}, err
	}
	args := []string{noopCommand, "--redis-url", b.cfg.RedisURL, "--queue", n.queue,
		"--concurrency", fmt.Sprint(conc)}
	return b.drain(ctx, "asynq no-op handler", label+"-noop", n.queue, conc, childEnv(), b.bin.self, args)
}

// taskPayload is the payload the producer writes for the i-th profile of
// a campaign.
func taskPayload(campaignName string, i int) ([]byte, error) {
	t, err := tasks.NewTask(tasks.Payload{
		Campaign: campaignName, ProfileID: profileID(i), Seq: int64(i + 2),
		Columns: map[string]string{"email": email(i)}, EnqueuedAt: time.Now().UTC(),
	})
	if err != nil {
		return nil, err
	}
	return t.Payload(), nil
}

// enqueueNoop enqueues cfg.OverheadTasks no-op tasks, their payloads as
// large as the producer's.
func (b *bench) enqueueNoop(ctx context.Context, n names) error {
	sample, err := taskPayload(n.campaign, 0)
	if err != nil {
		return err
	}
	filler := make([]byte, len(sample))
	for i := range filler {
		filler[i] = 'x'
	}
	return b.enqueueBare(ctx, n, noopTaskType, func(int) ([]byte, error) { return filler, nil })
}

// enqueueBare enqueues cfg.OverheadTasks tasks of type typ with a plain
// asynq client and the options the producer gives its tasks; payload
// makes the i-th one's payload.
func (b *bench) enqueueBare(ctx context.Context, n names, typ string, payload func(i int) ([]byte, error)) error {
	client := asynq.NewClientFromRedisClient(b.rdb)
	next := make(chan int)
	errs := make(chan error, noopEnqueuers)
	var wg sync.WaitGroup
	for range noopEnqueuers {
		wg.Go(func() {
			for i := range next {
				data, err := payload(i)
				if err == nil {
					opts := tasks.Options(n.queue, n.campaign, profileID(i), 0)
					_, err = client.EnqueueContext(ctx, asynq.NewTask(typ, data), opts...)
				}
				if err != nil {
					errs <- fmt.Errorf("enqueue %s task %d: %w", typ, i, err)
					return
				}
			}
		})
	}
	var sendErr error
send:
	for i := range b.cfg.OverheadTasks {
		select {
		case next <- i:
		case sendErr = <-errs:
			break send
		case <-ctx.Done():
			sendErr = ctx.Err()
			break send
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	return errors.Join(sendErr, <-errs)
}

// drainOurs enqueues the campaign with the producer and drains it with the
// worker, limit off, against a sandbox with no limit and no latency.
func (b *bench) drainOurs(ctx context.Context, label string, conc int) (drainResult, error) {
	n := b.names(label)
	input := filepath.Join(b.dir, label+".csv")
	if err := writeProfiles(input, b.cfg.OverheadTasks); err != nil {
		return drainResult{}, err
	}
	sb, err := b.startSandbox(ctx, label, sandboxLimit{})
	if err != nil {
		return drainResult{}, err
	}
	defer sb.kill()

	env := childEnv("REDIS_URL="+b.cfg.RedisURL, "ANTHROPIC_BASE_URL="+sb.baseURL, "ANTHROPIC_API_KEY="+n.apiKey)
	p, err := spawn(spec{
		name: "enqueue", bin: b.bin.enqueue, env: env,
		args:    []string{"--csv", input, "--queue", n.queue, "--campaign", n.campaign},
		logPath: filepath.Join(b.dir, label+"-enqueue.log"),
	})
	if err != nil {
		return drainResult{}, err
	}
	defer p.kill()
	if err := p.wait(ctx, 2*time.Minute); err != nil {
		return drainResult{}, fmt.Errorf("%w (see %s-enqueue.log)", err, label)
	}

	args := []string{"--queue", n.queue, "--concurrency", fmt.Sprint(conc), "--rate", "0", "--log-level", "warn"}
	res, err := b.drain(ctx, "enrollq worker", label, n.queue, conc, env, b.bin.worker, args)
	if err != nil {
		return res, err
	}
	return res, b.sandboxSide(ctx, sb, n.campaign, &res)
}

// sandboxSide fills in what the sandbox and the campaign tell of the
// worker's side, and stops the sandbox.
func (b *bench) sandboxSide(ctx context.Context, sb *runningSandbox, name string, res *drainResult) error {
	st, err := sb.stats(ctx)
	if err != nil {
		return err
	}
	res.calls = st.Requests
	u, err := sb.liveUsage()
	if err != nil {
		return err
	}
	res.sandboxCPU = u.cpu
	if res.closedConns, err = closedConnsTo(sb.baseURL); err != nil {
		return fmt.Errorf("count connections to the sandbox: %w", err)
	}
	prog, err := campaign.NewStore(b.rdb, 0).Progress(ctx, name)
	if err != nil {
		return err
	}
	res.created = prog.Created
	return sb.stop()
}

// drain starts cfg.OverheadProcs processes of bin on a queue that holds
// cfg.OverheadTasks tasks, and measures how fast they empty it.
func (b *bench) drain(ctx context.Context, side, label, queue string, conc int, env []string, bin string, args []string) (drainResult, error) {
	res := drainResult{side: side, procs: b.cfg.OverheadProcs, conc: conc, tasks: b.cfg.OverheadTasks}
	redisBefore, err := b.redisCPU(ctx)
	if err != nil {
		return res, err
	}
	workers, err := b.startWorkers(res.procs, label, env, bin, args)
	if err != nil {
		return res, err
	}
	defer group(workers).killAll()

	timeout := time.Duration(res.tasks)*time.Second/200 + time.Minute
	first, last, err := b.watchDrain(ctx, queue, res.tasks, timeout)
	if err != nil {
		return res, err
	}
	redisAfter, err := b.redisCPU(ctx)
	if err != nil {
		return res, err
	}
	res.redisCPU = redisAfter - redisBefore
	res.span = last.at.Sub(first.at)
	if res.span > 0 {
		res.rate = float64(last.processed-first.processed) / res.span.Seconds()
	}

	if res.usage, err = sumUsage(workers); err != nil {
		return res, err
	}
	return res, stopAll(workers)
}

// drainSample is the queue's processed count at a moment.
type drainSample struct {
	at        time.Time
	processed int
}

// watchDrain polls the queue until want tasks are processed. It returns
// the first sample that saw a completion and the first that saw them all.
func (b *bench) watchDrain(ctx context.Context, queue string, want int, timeout time.Duration) (first, last drainSample, err error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		qi, err := b.insp.GetQueueInfo(queue)
		if err != nil {
			return first, last, fmt.Errorf("read queue %s: %w", queue, err)
		}
		s := drainSample{at: time.Now(), processed: qi.ProcessedTotal}
		if first.at.IsZero() && s.processed > 0 {
			first = s
		}
		switch {
		case qi.FailedTotal > 0:
			return first, s, fmt.Errorf("queue %s: %d tasks failed", queue, qi.FailedTotal)
		case s.processed >= want:
			return first, s, nil
		case s.at.After(deadline):
			return first, s, fmt.Errorf("queue %s: %d of %d tasks processed after %s", queue, s.processed, want, timeout)
		}
		select {
		case <-ctx.Done():
			return first, s, ctx.Err()
		case <-tick.C:
		}
	}
}
