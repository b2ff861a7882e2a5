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

	p, err := spawn(spec{
		name: "enqueue", bin: b.bin.enqueue, env: childEnv("REDIS_URL=" + b.cfg.RedisURL),
		args:    []string{"--csv", input, "--queue", n.queue, "--campaign", n.campaign},
		logPath: filepath.Join(b.dir, scEnqueue+"-enqueue.log"),
	})
	if err != nil {
		return res, err
	}
	defer p.kill()
	timeout := time.Duration(res.ids)*time.Second/5000 + time.Minute
	if err := p.wait(ctx, timeout); err != nil {
		return res, fmt.Errorf("%w (see %s-enqueue.log)", err, scEnqueue)
	}
	res.wall = p.ended.Sub(p.started)
	res.rate = float64(res.ids) / res.wall.Seconds()
	if res.usage, err = p.finalUsage(); err != nil {
		return res, err
	}

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
