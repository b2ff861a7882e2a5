package main

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/tasks"
)

func requeue(ctx context.Context, cfg config, store *campaign.Store, insp *asynq.Inspector, client *asynq.Client, r campaign.Result) error {
	id := tasks.TaskID(r.Campaign, r.ProfileID)
	if err := insp.DeleteTask(cfg.queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
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
