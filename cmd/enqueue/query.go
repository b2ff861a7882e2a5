package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/enrollq/enrollq/internal/source"
	"github.com/enrollq/enrollq/internal/sqldb"
)

// connectTimeout bounds connecting to --db-url.
const connectTimeout = 10 * time.Second

// querySpool runs --query once, in a read-only transaction bounded by
// --query-timeout, and streams its rows into a private temporary file that
// the run's passes then read as they read a CSV file. It returns the
// spool's path and a function that removes it. An error while the rows
// stream fails the run before anything is enqueued, saying how many rows
// were read.
func querySpool(ctx context.Context, cfg config, log *slog.Logger) (string, func(), error) {
	db, err := sqldb.Open(ctx, cfg.dbURL, connectTimeout)
	if errors.Is(err, sqldb.ErrBadURL) {
		return "", nil, usageError{fmt.Errorf("--db-url: %w", err)}
	}
	if err != nil {
		return "", nil, fmt.Errorf("--db-url: %w", err)
	}
	defer db.Close()

	f, err := os.CreateTemp("", "enrollq-query-*.spool") // mode 0600
	if err != nil {
		return "", nil, fmt.Errorf("spool query: %w", err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	fail := func(err error) (string, func(), error) {
		f.Close()
		cleanup()
		return "", nil, err
	}

	qctx, cancel := context.WithTimeout(ctx, cfg.queryTimeout)
	defer cancel()
	tx, err := db.BeginReadOnly(qctx, cfg.queryTimeout)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback() // read-only: nothing to commit
	start := time.Now()
	n, err := source.SpoolQuery(qctx, tx, cfg.query, source.QueryConfig{IDColumn: cfg.idColumn}, f)
	if err != nil {
		if qctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (--query-timeout %s)", err, cfg.queryTimeout)
		}
		return fail(fmt.Errorf("--query on %s: %w (nothing was enqueued)", db, db.Scrub(err)))
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("spool query: %w", err)
	}
	log.Info("query read", "rows", n, "elapsed", time.Since(start).Round(time.Millisecond))
	return f.Name(), cleanup, nil
}
