package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

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
	prog, err := store.Progress(ctx, cfg.campaign)
	if err != nil {
		return err
	}
	if prog.Total == 0 {
		return fmt.Errorf("campaign %q has no profiles in this Redis (check --campaign and --redis-url)", cfg.campaign)
	}
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
	fmt.Fprintf(stdout, "campaign %s: re-enqueued failed profiles: %d\n", cfg.campaign, n)
	log.Info("failed profiles re-enqueued", "campaign", cfg.campaign, "count", n)
	return nil
}

func requeue(ctx context.Context, cfg config, store *campaign.Store, insp *asynq.Inspector, client *asynq.Client, r campaign.Result) error {
	id := tasks.TaskID(r.Campaign, r.ProfileID)
	if err := insp.DeleteTask(cfg.queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		return err
	}
	if err := store.Forget(ctx, r.Campaign, r.ProfileID); err != nil {
		return err
	}
	task, err := tasks.NewTask(tasks.Payload{
		Campaign: r.Campaign, ProfileID: r.ProfileID, Seq: r.Seq, Columns: r.Columns,
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
