package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
)

// defaultStatusSample is how long --status watches a campaign to measure
// the rate its ETA is based on.
const defaultStatusSample = 2 * time.Second

// statusReport is what --status prints: the campaign's counts, the state
// of its queue, and how long the rest should take at the measured rate.
type statusReport struct {
	Campaign string `json:"campaign"`
	Total    int64  `json:"total"`
	Created  int64  `json:"created"`
	Failed   int64  `json:"failed"`
	Pending  int64  `json:"pending"`

	Queue         string `json:"queue"`
	QueueFound    bool   `json:"queue_found"`
	QueuePaused   bool   `json:"queue_paused"`
	QueueSize     int    `json:"queue_size"`   // every task of the queue, all campaigns
	QueueQueued   int    `json:"queue_queued"` // pending, active, scheduled, retry and aggregating: still to run
	QueueActive   int    `json:"queue_active"`
	QueueRetry    int    `json:"queue_retry"`
	QueueArchived int    `json:"queue_archived"`
	Workers       int    `json:"workers"` // worker processes serving the queue

	// CampaignQueue is the queue the campaign was enqueued on, "" for one
	// enqueued by an older enqueue; Queue is it unless --queue says
	// otherwise.
	CampaignQueue string `json:"campaign_queue,omitempty"`

	// Done: every profile has a result and the queue has no task left to
	// run. A refresh or a retry leaves the old results counted until the
	// new ones replace them; the queue's tasks say it is not over.
	Done bool `json:"done"`

	// Stranded is Pending when the queue has no task left to run: those
	// profiles were counted by an enqueue that was killed before it
	// enqueued their tasks, and only running the same input again ends
	// the campaign.
	Stranded int64 `json:"stranded,omitempty"`

	// RatePerSecond is results a second over the sample; ETASeconds is
	// Pending at that rate, absent when the rate is zero or not measured.
	RatePerSecond float64  `json:"rate_per_second"`
	ETASeconds    *float64 `json:"eta_seconds,omitempty"`
}

// status prints a campaign's counts at any time, from any machine that
// reaches the fleet's Redis. It fails only when the campaign is unknown.
// The queue it reports on is --queue when given, else the campaign's own.
func status(ctx context.Context, cfg config, rdb redis.UniversalClient, stdout io.Writer) error {
	store := campaign.NewStore(rdb, 0)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()

	first, err := store.Progress(ctx, cfg.campaign)
	if err != nil {
		return err
	}
	if first.Total == 0 {
		return fmt.Errorf("campaign %q has no profiles in this Redis (check --campaign and --redis-url)", cfg.campaign)
	}
	on, err := store.Queue(ctx, cfg.campaign)
	if err != nil {
		return err
	}
	if on != "" && !cfg.queueSet {
		cfg.queue = on
	}
	// Whether the queue had a task to run before the sample, for the
	// stranded check below: one look could catch an enqueue between two
	// batches.
	idleBefore := queueIdle(insp, cfg.queue)
	last := first
	if first.Pending() > 0 && cfg.sample > 0 {
		select {
		case <-time.After(cfg.sample):
		case <-ctx.Done():
			return ctx.Err()
		}
		if last, err = store.Progress(ctx, cfg.campaign); err != nil {
			return err
		}
	}

	rep := statusReport{
		Campaign: cfg.campaign, Total: last.Total, Created: last.Created,
		Failed: last.Failed, Pending: last.Pending(), Queue: cfg.queue, CampaignQueue: on,
	}
	if cfg.sample > 0 && first.Pending() > 0 {
		rep.RatePerSecond = float64(last.Done()-first.Done()) / cfg.sample.Seconds()
	}
	if rep.RatePerSecond > 0 {
		eta := float64(rep.Pending) / rep.RatePerSecond
		rep.ETASeconds = &eta
	}
	// GetQueueInfo's error for a missing queue is none that errors.Is
	// knows (asynq v0.26), so the queue's existence is asked first.
	queues, err := insp.Queues()
	if err != nil {
		return fmt.Errorf("list queues: %w", err)
	}
	if slices.Contains(queues, cfg.queue) {
		qi, err := insp.GetQueueInfo(cfg.queue)
		if err != nil {
			return fmt.Errorf("read queue %q: %w", cfg.queue, err)
		}
		rep.QueueFound, rep.QueuePaused = true, qi.Paused
		rep.QueueSize, rep.QueueActive, rep.QueueRetry, rep.QueueArchived = qi.Size, qi.Active, qi.Retry, qi.Archived
		rep.QueueQueued = toRun(qi)
	}
	rep.Done = rep.Pending == 0 && rep.QueueQueued == 0
	// Stranded only on the campaign's own queue (another queue's tasks
	// say nothing of it), when the queue had nothing to run before and
	// after the sample and no result came in between.
	ownQueue := on == "" || on == cfg.queue
	if ownQueue && rep.Pending > 0 && rep.QueueQueued == 0 && idleBefore && last.Done() == first.Done() {
		rep.Stranded = rep.Pending
	}
	if servers, err := insp.Servers(); err == nil {
		for _, s := range servers {
			if _, ok := s.Queues[cfg.queue]; ok {
				rep.Workers++
			}
		}
	}

	if cfg.json {
		enc := json.NewEncoder(stdout)
		return enc.Encode(rep)
	}
	printStatus(stdout, rep, cfg.sample)
	return nil
}

func printStatus(w io.Writer, r statusReport, sample time.Duration) {
	fmt.Fprintf(w, "campaign %s\n", r.Campaign)
	fmt.Fprintf(w, "  total    %d\n", r.Total)
	fmt.Fprintf(w, "  created  %d\n", r.Created)
	fmt.Fprintf(w, "  failed   %d\n", r.Failed)
	fmt.Fprintf(w, "  pending  %d\n", r.Pending)

	state := "running"
	switch {
	case !r.QueueFound:
		state = "not found (no task was ever enqueued on it)"
	case r.QueuePaused:
		state = "PAUSED (fix the fault the workers logged, then: enqueue --resume --queue " + r.Queue + ")"
	}
	fmt.Fprintf(w, "queue %s: %s\n", r.Queue, state)
	if r.CampaignQueue != "" && r.CampaignQueue != r.Queue {
		fmt.Fprintf(w, "  (campaign %s was enqueued on queue %s)\n", r.Campaign, r.CampaignQueue)
	}
	if r.QueueFound {
		fmt.Fprintf(w, "  tasks %d (to run %d, active %d, retry %d, archived %d; all campaigns), workers %d\n",
			r.QueueSize, r.QueueQueued, r.QueueActive, r.QueueRetry, r.QueueArchived, r.Workers)
	}

	switch {
	case r.Done:
		fmt.Fprintln(w, "done: every profile has a result")
	case r.Stranded > 0:
		fmt.Fprintln(w, strandedNote(r.Stranded, r.Queue))
	case r.Pending == 0:
		fmt.Fprintf(w, "every profile has a result; %d tasks still queued on %s (a refresh, a retry, or another campaign)\n",
			r.QueueQueued, r.Queue)
	case sample == 0:
	case r.ETASeconds != nil:
		eta := time.Duration(*r.ETASeconds * float64(time.Second))
		fmt.Fprintf(w, "rate %.1f/s over %s, about %s left\n", r.RatePerSecond, sample, eta.Round(time.Second))
	default:
		fmt.Fprintf(w, "no result in the last %s: no ETA (paused, no worker, or waiting out a rate limit)\n", sample)
	}
}

// strandedNote says what to do about profiles counted with no task.
func strandedNote(n int64, queue string) string {
	return fmt.Sprintf("%d profiles have no result and queue %s has no task left to run: an enqueue of this campaign "+
		"was killed (kill -9, a second Ctrl-C) before it enqueued them; run the same input again to enqueue them", n, queue)
}

// queueIdle reports whether queue has no task to run: none pending,
// active, scheduled, retrying or aggregating, or no such queue. An error
// reading it counts as not idle.
func queueIdle(insp *asynq.Inspector, queue string) bool {
	queues, err := insp.Queues()
	if err != nil {
		return false
	}
	if !slices.Contains(queues, queue) {
		return true
	}
	qi, err := insp.GetQueueInfo(queue)
	return err == nil && toRun(qi) == 0
}

// toRun counts a queue's tasks still to run: pending, active, scheduled,
// retrying and aggregating.
func toRun(qi *asynq.QueueInfo) int {
	return qi.Pending + qi.Active + qi.Scheduled + qi.Retry + qi.Aggregating
}
