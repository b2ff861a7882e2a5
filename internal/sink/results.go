package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sqldb"
)

// Results receives each result as a worker stores it: a Table or a
// Webhook. Put returns once the result is durably handed on; an error
// makes the task run again.
type Results interface {
	Put(ctx context.Context, r campaign.Result) error
	Close() error
	// String names the sink without its secrets, for logs.
	String() string
}

// ResultsConfig says where results go as they are stored.
type ResultsConfig struct {
	// Target is a database URL (postgres://, postgresql://, mysql://) or a
	// webhook URL (https://, or http:// to a loopback address). It is a
	// secret: messages name only its kind and host.
	Target string

	// Table is the result table of a database Target. Default
	// DefaultTable.
	Table string

	// Webhook configures a webhook Target; its URL is Target.
	Webhook WebhookConfig

	// Redis and Queue, when Redis is set, put the table or webhook behind
	// an Outbox in Redis (see Outbox): the caller must then run its Run.
	Redis redis.UniversalClient
	Queue string

	Logger *slog.Logger
}

// IsResultsTarget reports whether target names a database or webhook
// (rather than an output file).
func IsResultsTarget(target string) bool {
	return sqldb.IsURL(target) || isWebURL(target)
}

func isWebURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://")
}

// OpenResults opens the sink cfg.Target names.
func OpenResults(ctx context.Context, cfg ResultsConfig) (Results, error) {
	switch {
	case sqldb.IsURL(cfg.Target):
		table := cfg.Table
		if table == "" {
			table = DefaultTable
		}
		t, err := OpenTable(ctx, cfg.Target, table)
		switch {
		case err != nil && cfg.Redis != nil && errors.Is(err, sqldb.ErrUnreachable):
			// Results wait in the outbox: a database down at start holds
			// up no API call, as one that goes down later does not.
			log := cfg.Logger
			if log == nil {
				log = slog.Default()
			}
			log.Warn("result table's database unreachable at start; results wait in the outbox until it answers",
				"sink", "table "+table+" on "+sqldb.Redacted(cfg.Target), "error", err)
			return newTableOutbox(cfg.Redis, cfg.Queue, &laterTable{url: cfg.Target, name: table}, cfg.Logger), nil
		case err != nil:
			return nil, err
		case cfg.Redis == nil:
			return t, nil
		}
		return NewTableOutbox(cfg.Redis, cfg.Queue, t, cfg.Logger), nil
	case isWebURL(cfg.Target):
		wc := cfg.Webhook
		wc.URL = cfg.Target
		if wc.Logger == nil {
			wc.Logger = cfg.Logger
		}
		hook, err := NewWebhook(wc)
		if err != nil {
			return nil, err
		}
		if cfg.Redis == nil {
			return hook, nil
		}
		return NewOutbox(cfg.Redis, cfg.Queue, hook), nil
	}
	return nil, errors.New("sink: want a postgres://, mysql:// or https:// URL")
}

// Validate checks cfg without connecting anywhere.
func (cfg ResultsConfig) Validate() error {
	switch {
	case sqldb.IsURL(cfg.Target):
		if cfg.Table != "" {
			return ValidateTable(cfg.Table)
		}
		return nil
	case isWebURL(cfg.Target):
		wc := cfg.Webhook
		wc.URL = cfg.Target
		return wc.validate()
	}
	return fmt.Errorf("sink: want a postgres://, mysql:// or https:// URL")
}

// laterTable is a Table opened at its first delivery that finds the
// database up: the outbox's target when the database was down at start.
type laterTable struct {
	url, name string

	mu sync.Mutex
	t  *Table
}

// laterOpenTimeout bounds each try to open the table.
const laterOpenTimeout = 5 * time.Second

func (l *laterTable) table(ctx context.Context) (*Table, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t != nil {
		return l.t, nil
	}
	octx, cancel := context.WithTimeout(ctx, laterOpenTimeout)
	defer cancel()
	t, err := OpenTable(octx, l.url, l.name)
	if err != nil {
		return nil, err
	}
	l.t = t
	return t, nil
}

func (l *laterTable) deliver(ctx context.Context, body []byte, delivery string) error {
	t, err := l.table(ctx)
	if err != nil {
		return err
	}
	return t.deliver(ctx, body, delivery)
}

func (l *laterTable) String() string { return "table " + l.name + " on " + sqldb.Redacted(l.url) }

func (l *laterTable) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t == nil {
		return nil
	}
	return l.t.Close()
}
