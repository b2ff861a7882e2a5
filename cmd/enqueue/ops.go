package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/tasks"
)

type errSomeFailed struct{ n int64 }

func (e errSomeFailed) Error() string {
	return fmt.Sprintf("%d profiles have no usable URL (failed, expired or pending); the reasons are in the results", e.n)
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
	// A mistyped --queue would otherwise read "is not paused", as if it
	// were running. (asynq v0.26's error for a missing queue is none that
	// errors.Is knows, so the queue's existence is asked first.)
	queues, err := insp.Queues()
	if err != nil {
		return fmt.Errorf("list queues: %w", err)
	}
	if !slices.Contains(queues, queue) {
		return usageError{fmt.Errorf("--queue %s: no such queue in this Redis (check --queue and --redis-url; --status --campaign NAME names a campaign's queue)", queue)}
	}
	// Resuming a running queue is done already: a second --resume (or one
	// in a runbook run twice) succeeds.
	if info, err := insp.GetQueueInfo(queue); err == nil && !info.Paused {
		fmt.Fprintf(stdout, "queue %q is not paused: nothing to resume\n", queue)
		return nil
	}
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
	pick := func(r campaign.Result) bool { return r.Status == campaign.StatusFailed }
	n, queue, err := requeueWhere(ctx, cfg, rdb, pick, time.Time{}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "campaign %s (queue %s): re-enqueued failed profiles: %d\n", cfg.campaign, queue, n)
	log.Info("failed profiles re-enqueued", "campaign", cfg.campaign, "queue", queue, "count", n)
	return nil
}

// refresh enqueues again the profiles of a campaign whose URL has expired
// or expires within --within, so that a delayed mailing gets fresh links.
// Their results stay in place until the worker stores the new URL over
// them (one row per profile, the newest), and a refresh that fails keeps
// a URL that is still alive.
func refresh(ctx context.Context, cfg config, rdb redis.UniversalClient, stdout io.Writer, log *slog.Logger) error {
	cutoff := time.Now().Add(cfg.within)
	pick := func(r campaign.Result) bool {
		return r.Status == campaign.StatusCreated && !r.ExpiresAt.After(cutoff)
	}
	n, queue, err := requeueWhere(ctx, cfg, rdb, pick, cutoff, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "campaign %s (queue %s): re-enqueued profiles whose URL expires by %s (within %s): %d\n",
		cfg.campaign, queue, cutoff.UTC().Format(time.RFC3339), cfg.within, n)
	if n > 0 {
		fmt.Fprintf(stdout, "once the workers are done, write the results again: export --campaign %s --out FILE\n", cfg.campaign)
	}
	log.Info("expiring profiles re-enqueued", "campaign", cfg.campaign, "queue", queue, "count", n)
	return nil
}

// requeueWhere enqueues again each of the campaign's results that pick
// selects, on the campaign's queue (see requeueQueue), and returns how
// many it enqueued and on which queue. With a zero refreshBefore each
// result is cleared first; otherwise the tasks are refreshes of URLs that
// expire by refreshBefore (see tasks.Payload).
func requeueWhere(ctx context.Context, cfg config, rdb redis.UniversalClient, pick func(campaign.Result) bool, refreshBefore time.Time, log *slog.Logger) (int, string, error) {
	store := campaign.NewStore(rdb, 0)
	prog, err := store.Progress(ctx, cfg.campaign)
	if err != nil {
		return 0, "", err
	}
	if prog.Total == 0 {
		return 0, "", fmt.Errorf("campaign %q has no profiles in this Redis (check --campaign and --redis-url)", cfg.campaign)
	}
	if cfg.queue, err = requeueQueue(ctx, cfg, store, log); err != nil {
		return 0, "", err
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	client := asynq.NewClientFromRedisClient(rdb)

	// Each result is re-enqueued as it is read: the ones read later are
	// other profiles', which this does not touch.
	n := 0
	err = store.EachResult(ctx, cfg.campaign, func(r campaign.Result) error {
		if !pick(r) {
			return nil
		}
		if err := requeue(ctx, cfg, store, insp, client, r, refreshBefore); err != nil {
			return fmt.Errorf("re-enqueue %s: %w (%d re-enqueued before it)", r.ProfileID, err, n)
		}
		n++
		return nil
	})
	return n, cfg.queue, err
}

// requeueQueue is the queue --refresh and --retry-failed put a campaign's
// tasks on: the one it was enqueued on, where its workers listen. --queue,
// when given, must name that one. A campaign enqueued before the store
// kept its queue has none recorded: then it is --queue, given or its
// default, which is recorded when given.
func requeueQueue(ctx context.Context, cfg config, store *campaign.Store, log *slog.Logger) (string, error) {
	on, err := store.Queue(ctx, cfg.campaign)
	switch {
	case err != nil:
		return "", err
	case on == "" && !cfg.queueSet:
		log.Warn("campaign has no recorded queue (enqueued by an older enqueue): using the default; give --queue if its workers serve another",
			"campaign", cfg.campaign, "queue", cfg.queue)
		return cfg.queue, nil
	case on == "":
		on = cfg.queue
	case cfg.queueSet && cfg.queue != on:
		return "", usageError{fmt.Errorf("--queue %s: campaign %s was enqueued on queue %s, where its workers listen; leave out --queue, or give --queue %s",
			cfg.queue, cfg.campaign, on, on)}
	}
	// Recorded for the next command, and kept as long as the tasks.
	var conflict *campaign.QueueConflictError
	if err := store.ClaimQueue(ctx, cfg.campaign, on); errors.As(err, &conflict) {
		return "", usageError{fmt.Errorf("--queue %s: %w", on, err)}
	} else if err != nil {
		return "", err
	}
	return on, nil
}

func requeue(ctx context.Context, cfg config, store *campaign.Store, insp *asynq.Inspector, client *asynq.Client, r campaign.Result, refreshBefore time.Time) error {
	id := tasks.TaskID(r.Campaign, r.ProfileID)
	if err := insp.DeleteTask(cfg.queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		return err
	}
	// The result's attempts are the prior ones plus the store's count,
	// which a retry clears and a refresh goes on with.
	counted, err := store.Calls(ctx, r.Campaign, r.ProfileID)
	if err != nil {
		return err
	}
	if refreshBefore.IsZero() {
		if err := store.Forget(ctx, r.Campaign, r.ProfileID); err != nil {
			return err
		}
		counted = 0
	}
	task, err := tasks.NewTask(tasks.Payload{
		Campaign: r.Campaign, ProfileID: r.ProfileID, Seq: r.Seq, Columns: r.Columns,
		EnqueuedAt: time.Now(), RefreshBefore: refreshBefore,
		PriorAttempts: max(r.Attempts-counted, 0),
	})
	if err != nil {
		return err
	}
	_, err = client.EnqueueContext(ctx, task, tasks.Options(cfg.queue, r.Campaign, r.ProfileID, cfg.maxRetry)...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil // still queued from before: it will run
	}
	return err
}
