package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sink"
)

// carryOver makes a local run continue an earlier one: the embedded Redis
// starts empty, so the created rows of an existing --out whose URL has
// more than campaign.RemintBefore left are stored as this campaign's
// results before anything is enqueued. Their profiles are then "already
// enqueued" and get no call; every other profile (failed, expired,
// pending, or not in the file) runs again. Only profiles of this input
// are carried over. It returns how many were.
func (r *campaignRun) carryOver(ctx context.Context) (int, error) {
	if r.cfg.out == "" {
		return 0, nil // a run that feeds only a --sink
	}
	rows, err := sink.ReadCreated(r.cfg.out, r.cfg.campaign, time.Now(), campaign.RemintBefore)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("--out %s exists but its URLs cannot be kept: %w (move it away to start afresh; nothing was enqueued)", r.cfg.out, err)
	}
	if len(rows) == 0 {
		return 0, nil
	}

	recs, closeFile, err := r.open()
	if err != nil {
		return 0, err
	}
	defer closeFile()
	n := 0
	for {
		rec, err := recs.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		res, ok := rows[rec.ID]
		if !ok {
			continue
		}
		delete(rows, rec.ID)
		if _, err := r.store.Put(ctx, res); err != nil {
			return n, fmt.Errorf("keep the URL of %s from %s: %w", rec.ID, r.cfg.out, err)
		}
		n++
	}
}

// checkExistingOut refuses an existing --out that is not a results file
// (a customer list named by mistake, say), before anything is enqueued:
// the run would replace it. A results file of an earlier run is fine.
func checkExistingOut(path, campaignName string) error {
	_, err := sink.ReadCreated(path, campaignName, time.Now(), campaign.RemintBefore)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("--out %s exists and is not a results file of enqueue: %w (name another file, or move it away; nothing was enqueued)", path, err)
}
