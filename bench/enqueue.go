package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// enqueueResult is the producer alone on a large input.
type enqueueResult struct {
	ids     int
	wall    time.Duration // the enqueue process, start to exit
	rate    float64       // tasks a second over wall
	usage   usage         // the producer's CPU and peak RSS
	pending int           // tasks in the queue afterwards
}

// runEnqueue enqueues cfg.EnqueueIDs profiles from a CSV file with no
// worker running, then empties the database again.
func (b *bench) runEnqueue(ctx context.Context) (enqueueResult, error) {
	res := enqueueResult{ids: b.cfg.EnqueueIDs}
	n := b.names(scEnqueue)
	input := filepath.Join(b.dir, scEnqueue+".csv")
	if err := writeProfiles(input, res.ids); err != nil {
		return res, err
	}
	defer os.Remove(input)

	var err error
	res.wall, res.usage, err = b.runAlone(ctx, scEnqueue, "enqueue", b.bin.enqueue, res.ids,
		"--csv", input, "--queue", n.queue, "--campaign", n.campaign)
	if err != nil {
		return res, err
	}
	res.rate = float64(res.ids) / res.wall.Seconds()

	qi, err := b.insp.GetQueueInfo(n.queue)
	if err != nil {
		return res, fmt.Errorf("read queue %s: %w", n.queue, err)
	}
	res.pending = qi.Pending
	if res.pending != res.ids {
		return res, fmt.Errorf("queue %s holds %d pending tasks after enqueuing %d ids", n.queue, res.pending, res.ids)
	}
	// The million tasks go with the next FLUSHDB ASYNC: DeleteQueue would
	// delete them in one script and block the shared server for seconds.
	return res, b.flush(ctx)
}

// runAlone runs one of the commands against the bench's Redis, with no
// other process of the bench, until it exits, and returns its wall time
// and usage. Its log is SCENARIO-NAME.log; it may take a minute plus a
// second per 5,000 of rows.
func (b *bench) runAlone(ctx context.Context, scenario, name, bin string, rows int, args ...string) (time.Duration, usage, error) {
	p, err := spawn(spec{
		name: name, bin: bin, env: childEnv("REDIS_URL=" + b.cfg.RedisURL), args: args,
		logPath: filepath.Join(b.dir, scenario+"-"+name+".log"),
	})
	if err != nil {
		return 0, usage{}, err
	}
	defer p.kill()
	timeout := time.Duration(rows)*time.Second/5000 + time.Minute
	if err := p.wait(ctx, timeout); err != nil {
		return 0, usage{}, fmt.Errorf("%w (see %s-%s.log)", err, scenario, name)
	}
	u, err := p.finalUsage()
	return p.ended.Sub(p.started), u, err
}
