package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/logging"
	"github.com/enrollq/enrollq/internal/redisconn"
	"github.com/enrollq/enrollq/internal/sink"
)

// run is the whole program; main only wires signals and exit codes.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr, time.Now())
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.logLevel)
	if err != nil {
		return usageError{err}
	}
	redis.SetLogger(logging.Redis{L: log})

	rdb, err := redisconn.Open(ctx, cfg.redisURL, 5*time.Second)
	if errors.Is(err, redisconn.ErrBadURL) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	defer rdb.Close()
	return export(ctx, cfg, campaign.NewStore(rdb, 0), stdout, log)
}

// export writes the campaign's results: every stored result in input
// order, then the profiles still without one, as pending.
func export(ctx context.Context, cfg config, store *campaign.Store, stdout io.Writer, log *slog.Logger) error {
	prog, err := store.Progress(ctx, cfg.campaign)
	if err != nil {
		return err
	}
	if prog.Total == 0 {
		return fmt.Errorf("campaign %q has no profiles in this Redis (check --campaign and --redis-url)", cfg.campaign)
	}
	columns, err := store.Columns(ctx, cfg.campaign)
	if err != nil {
		return err
	}
	unfinished, err := store.Unfinished(ctx, cfg.campaign)
	if err != nil {
		return err
	}

	now := time.Now()
	out, err := create(cfg.out, columns, now, cfg.minValidity)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer out.Abort() // a no-op after Commit
	failures := out
	if cfg.failures != "" {
		if failures, err = create(cfg.failures, columns, now, cfg.minValidity); err != nil {
			return fmt.Errorf("--failures: %w", err)
		}
		defer failures.Abort()
	}

	values := make([]string, len(columns))
	beforeSend := 0 // URLs handed on that die before --send-at
	rows := 0
	err = store.EachResult(ctx, cfg.campaign, func(r campaign.Result) error {
		for i, c := range columns {
			values[i] = r.Columns[c]
		}
		f := out
		switch {
		case sink.RowStatus(r, now, cfg.minValidity) != string(campaign.StatusCreated):
			f = failures
		case !cfg.sendAt.IsZero() && r.ExpiresAt.Before(cfg.sendAt):
			beforeSend++
		}
		if err := f.Write(values, r, r.ProfileID); err != nil {
			return fmt.Errorf("write %s: %w", f.Path(), err)
		}
		rows++
		return nil
	})
	if err != nil {
		return err
	}
	clear(values)
	for _, id := range unfinished {
		if err := failures.Write(values, campaign.Result{}, id); err != nil {
			return fmt.Errorf("write %s: %w", failures.Path(), err)
		}
	}

	if err := out.Commit(); err != nil {
		return err
	}
	if failures != out {
		if err := failures.Commit(); err != nil {
			return err
		}
	}
	report(stdout, cfg, now, out, failures, beforeSend)
	log.Info("campaign exported", "campaign", cfg.campaign, "rows", rows+len(unfinished))
	return nil
}

func create(path string, columns []string, now time.Time, minValidity time.Duration) (*sink.File, error) {
	if err := sink.CheckResults(path); err != nil {
		return nil, fmt.Errorf("%w (name another file, or move it away; it is left as it was)", err)
	}
	f, err := sink.Create(path, columns)
	if err != nil {
		return nil, err
	}
	f.Now = func() time.Time { return now }
	f.MinValidity = minValidity
	return f, nil
}

// report says what was written, what was left out and why, and what a
// stated send time means for the URLs handed on.
func report(w io.Writer, cfg config, now time.Time, out, failures *sink.File, beforeSend int) {
	c := out.Counts()
	fmt.Fprintf(w, "campaign %s: wrote %d rows to %s\n", cfg.campaign, c.Rows, cfg.out)
	if failures != out {
		fc := failures.Counts()
		fmt.Fprintf(w, "  and %d rows without a usable URL to %s\n", fc.Rows, cfg.failures)
		c.Failed, c.Expired, c.TooSoon, c.Pending = fc.Failed, fc.Expired, fc.TooSoon, fc.Pending
	}
	fmt.Fprintf(w, "  created %d, failed %d, expired %d, pending %d\n", c.Created, c.Failed, c.Expired, c.Pending)

	if c.Expired > 0 {
		fmt.Fprintf(w, "left out %d URLs (status expired): %d had expired, %d expire within --min-validity %s (error_type %s)\n",
			c.Expired, c.Expired-c.TooSoon, c.TooSoon, cfg.minValidity, sink.ErrExpiresTooSoon)
		fmt.Fprintf(w, "  mint them again: enqueue --refresh --campaign %s --within %s, then export again\n",
			cfg.campaign, refreshWindow(cfg, now))
	}
	if c.Pending > 0 {
		fmt.Fprintf(w, "%d profiles have no result yet (pending): export again once the workers are done\n", c.Pending)
	}
	if c.Created == 0 {
		return
	}
	fmt.Fprintf(w, "the first URL handed on expires at %s (in %s)\n",
		c.FirstExpiry.UTC().Format(time.RFC3339), c.FirstExpiry.Sub(now).Round(time.Minute))
	if beforeSend > 0 {
		fmt.Fprintf(w, "warning: %d of the %d URLs handed on expire before the send time %s, the first at %s; "+
			"refresh them closer to the send time (enqueue --refresh --campaign %s --within %s), then export again\n",
			beforeSend, c.Created, cfg.sendAt.UTC().Format(time.RFC3339), c.FirstExpiry.UTC().Format(time.RFC3339),
			cfg.campaign, refreshWindow(cfg, now))
	}
}

// refreshWindow is the --within that refreshes every URL that would not
// serve: those that die before the send time (or now) plus the margin.
func refreshWindow(cfg config, now time.Time) time.Duration {
	from := now
	if cfg.sendAt.After(now) {
		from = cfg.sendAt
	}
	return from.Add(cfg.minValidity).Sub(now).Round(time.Minute)
}
