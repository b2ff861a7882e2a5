package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/source"
)

// carryOver makes a local run continue an earlier one: the embedded Redis
// starts empty, so the created rows of an existing --out whose URL still
// lives are stored as this campaign's results before anything is
// enqueued. Those with more than campaign.RemintBefore left are then
// "already enqueued" and get no call; those with less are minted again,
// and keep their URL if the new call fails (see campaign.Remint); every
// other profile (failed, expired, pending, or not in the file) runs again.
// Only profiles of this input are carried over. It returns how many were
// kept without a call.
func (r *campaignRun) carryOver(ctx context.Context) (int, error) {
	if len(r.prior) == 0 {
		return 0, nil
	}
	var keep []campaign.Result
	_, err := r.pass(func(rec source.Record) {
		if res, ok := r.prior[rec.ID]; ok {
			delete(r.prior, rec.ID)
			keep = append(keep, res)
		}
	})
	if err != nil {
		return 0, err
	}
	kept := 0
	cutoff := time.Now().Add(campaign.RemintBefore)
	for _, res := range keep {
		if _, err := r.store.Put(ctx, res); err != nil {
			return kept, fmt.Errorf("keep the URL of %s from %s: %w", res.ProfileID, r.cfg.out, err)
		}
		if res.ExpiresAt.After(cutoff) {
			kept++
		}
	}
	return kept, nil
}

// readExistingOut reads the created rows of an existing --out whose URL
// still lives (none when there is no such file). It refuses a file that is
// not a results file (a customer list named by mistake, say) before
// anything is enqueued: the run would replace it.
func readExistingOut(path, campaignName string) (map[string]campaign.Result, error) {
	rows, err := sink.ReadCreated(path, campaignName, time.Now(), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--out %s exists and is not a results file of enqueue: %w (name another file, or move it away; nothing was enqueued)", path, err)
	}
	return rows, nil
}
