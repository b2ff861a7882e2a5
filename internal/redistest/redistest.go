// Package redistest gives tests a Redis: the server at REDIS_URL when set
// (as CI sets it), otherwise an embedded miniredis, so that `go test ./...`
// passes on a machine with only Go.
//
// Tests that share a real server isolate themselves with Name: unique
// queue and campaign names, never FLUSHALL.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// New returns a client for the test's Redis, closed at the end of the test.
func New(t testing.TB) *redis.Client {
	t.Helper()
	if url := os.Getenv("REDIS_URL"); url != "" {
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("REDIS_URL: %v", err)
		}
		rdb := redis.NewClient(opts)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatalf("REDIS_URL is set but the server does not answer: %v", err)
		}
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// URL returns a redis:// URL for the test's Redis: REDIS_URL, or a fresh
// miniredis that lives as long as the test.
func URL(t testing.TB) string {
	t.Helper()
	if url := os.Getenv("REDIS_URL"); url != "" {
		return url
	}
	return "redis://" + miniredis.RunT(t).Addr()
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Real reports whether tests run against a real server.
func Real() bool { return os.Getenv("REDIS_URL") != "" }

// Name returns a name unique to this test run, for queues and campaigns.
// On a real server, the enrollq and asynq keys of the name (and of names
// that start with it) are deleted when the test ends, and the name leaves
// the campaign index: campaign keys would otherwise stay for their 30
// days, asynq's counters for good.
func Name(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := unsafe.ReplaceAllString(t.Name(), "-")
	if len(n) > 60 {
		n = n[:60]
	}
	name := "t-" + n + "-" + hex.EncodeToString(b)
	if Real() {
		t.Cleanup(func() { deleteNamed(t, name) })
	}
	return name
}

// campaignIndex is internal/campaign's index of campaigns by last use.
const campaignIndex = "enrollq:campaigns"

// deleteNamed deletes the enrollq keys whose hash tag starts with name
// from the server at REDIS_URL. A failure is reported, not fatal: the
// test itself is over.
func deleteNamed(t testing.TB, name string) {
	opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		return
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Names hold only [A-Za-z0-9._-], none of them special in a pattern;
	// asynq's keys of the name's queues too (its counters outlive
	// DeleteQueue).
	iter := rdb.Scan(ctx, 0, "*:{"+name+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if k := iter.Val(); strings.HasPrefix(k, "enrollq:") || strings.HasPrefix(k, "asynq:") {
			rdb.Del(ctx, k)
		}
	}
	members, _, err := rdb.ZScan(ctx, campaignIndex, 0, name+"*", 1000).Result()
	for i := 0; err == nil && i < len(members); i += 2 { // member, score
		rdb.ZRem(ctx, campaignIndex, members[i])
	}
	if err := errors.Join(iter.Err(), err); err != nil {
		t.Logf("redistest: delete the keys of %s: %v", name, err)
	}
}

// DeleteQueueAtEnd deletes the asynq queue name, with its tasks, when the
// test and its subtests end: a test's queue on a shared server leaves
// nothing behind.
func DeleteQueueAtEnd(t testing.TB, rdb redis.UniversalClient, name string) {
	t.Helper()
	t.Cleanup(func() {
		insp := asynq.NewInspectorFromRedisClient(rdb)
		insp.DeleteQueue(name, true)
		insp.Close()
	})
}
