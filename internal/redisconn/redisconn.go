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
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBadURL marks a Redis URL that does not parse: a mistake in the
// command line, not an outage.
var ErrBadURL = errors.New("--redis-url")

// Option adjusts the client's settings before it connects.
type Option func(*redis.Options)

// MinPool makes the connection pool hold at least n connections, so that n
// goroutines that each make one call at a time never queue for a
// connection (go-redis's default is ten per CPU: 20 on two cores).
func MinPool(n int) Option {
	return func(o *redis.Options) {
		o.PoolSize = max(o.PoolSize, n)
	}
}

// ServerConns is about how many connections an asynq server keeps busy
// beside its task slots: heartbeat, forwarder, recoverer, lease extender,
// pub/sub and the like.
const ServerConns = 16

// Open parses a redis:// or rediss:// URL and checks that the server
// answers within timeout.
//
// It speaks RESP2 unless the URL asks for another protocol (?protocol=3):
// nothing here uses RESP3's push messages, and checking for them costs
// every command a read of the socket (about 8% of the producer's CPU).
func Open(ctx context.Context, rawURL string, timeout time.Duration, options ...Option) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadURL, redactParseError(err))
	}
	if u, err := url.Parse(rawURL); err == nil && !u.Query().Has("protocol") {
		opts.Protocol = 2
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	for _, o := range options {
		o(opts)
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
