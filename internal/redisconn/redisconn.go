// Package redisconn opens the Redis connection the programs share, with
// errors that name the server but never its password, and checks the
// server's settings that could lose tasks.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBadURL marks a Redis URL that does not parse: a mistake in the
// command line, not an outage.
var ErrBadURL = errors.New("--redis-url")

// Open parses a redis:// or rediss:// URL and checks that the server
// answers within timeout.
func Open(ctx context.Context, rawURL string, timeout time.Duration) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadURL, redactParseError(err))
	}
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s (db %d) is unreachable: %w", opts.Addr, opts.DB, err)
	}
	return rdb, nil
}

// redactParseError keeps the parser's reason but not the URL it quotes,
// which may hold a password.
func redactParseError(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return "not a valid redis URL (" + err.Error() + "); want redis://[:password@]host:port[/db]"
}

// WarnEviction logs a warning when the server may evict keys under memory
// pressure: an evicted task or result is a lost profile.
func WarnEviction(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	res, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		log.Debug("cannot read maxmemory-policy", "error", err)
		return
	}
	if p := res["maxmemory-policy"]; p != "" && p != "noeviction" {
		log.Warn("redis may evict keys under memory pressure; tasks and results could be lost",
			"maxmemory_policy", p, "fix", "CONFIG SET maxmemory-policy noeviction")
	}
}
