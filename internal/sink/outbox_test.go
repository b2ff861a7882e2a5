package sink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/sqldb"
	"github.com/enrollq/enrollq/internal/sqltest"
)

func quietHook(t *testing.T, url string, secret []byte) *sink.Webhook {
	t.Helper()
	wh, err := sink.NewWebhook(sink.WebhookConfig{URL: url, Secret: secret,
		Backoff: time.Millisecond, MaxWait: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

func runOutbox(t *testing.T, ob *sink.Outbox) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ob.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func drain(t *testing.T, ob *sink.Outbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ob.Drain(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestOutboxOutlastsAnOutage(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	queue := redistest.Name(t)
	rc, _ := newReceiver(t, "whsec-outbox")
	down := make(chan struct{})
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-down:
			rc.ServeHTTP(w, r)
		default:
			http.Error(w, "down", http.StatusBadGateway)
		}
	}))
	t.Cleanup(gate.Close)
	url := gate.URL + "/hook"
	t.Cleanup(func() { rdb.Del(context.Background(), "enrollq:webhook:{"+queue+"}") })

	// Two workers share the queue's outbox.
	a := sink.NewOutbox(rdb, queue, quietHook(t, url, []byte("whsec-outbox")))
	b := sink.NewOutbox(rdb, queue, quietHook(t, url, []byte("whsec-outbox")))
	const n = 200
	for i := range n {
		ob := a
		if i%2 == 1 {
			ob = b
		}
		r := campaign.Result{Campaign: "c", ProfileID: fmt.Sprintf("uprof_%d", i), Status: campaign.StatusCreated, FinishedAt: time.Now()}
		if err := ob.Put(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	runOutbox(t, a)
	runOutbox(t, b)
	time.Sleep(300 * time.Millisecond) // the receiver is down: everything waits
	if left, err := a.Undelivered(context.Background()); err != nil || left != n {
		t.Fatalf("during the outage: %d undelivered (%v), want %d", left, err, n)
	}
	close(down)
	drain(t, a)

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != n || rc.badSig != 0 || rc.refused == 0 {
		t.Errorf("receiver got %d results (want %d), %d bad signatures, refused %d", len(rc.got), n, rc.badSig, rc.refused)
	}
}

func TestOutboxTakesOverADeadWorkersDeliveries(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	queue := redistest.Name(t)
	rc, url := newReceiver(t, "k")
	ob := sink.NewOutbox(rdb, queue, quietHook(t, url, []byte("k")))
	ob.ClaimIdle = 50 * time.Millisecond
	ctx := context.Background()
	for i := range 10 {
		r := campaign.Result{Campaign: "c", ProfileID: fmt.Sprintf("uprof_%d", i), Status: campaign.StatusCreated, FinishedAt: time.Now()}
		if err := ob.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	// A worker takes every entry, then dies without delivering.
	stream := "enrollq:webhook:{" + queue + "}"
	if err := rdb.XGroupCreateMkStream(ctx, stream, "deliver", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "deliver", Consumer: "dead", Streams: []string{stream, ">"}, Count: 100}).Result()
	if err != nil || len(res[0].Messages) != 10 {
		t.Fatalf("the dead worker read %v (%v), want 10 entries", res, err)
	}
	t.Cleanup(func() { rdb.Del(context.Background(), stream) })

	runOutbox(t, ob)
	drain(t, ob)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 10 {
		t.Errorf("receiver got %d results, want 10", len(rc.got))
	}
}

// TestOutboxForgetsOldResults: a Put trims entries older than the
// retention and gives the stream an expiry; a worker whose stream expired
// (with its group) makes them again and delivers what comes next.
func TestOutboxForgetsOldResults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t)
	queue := redistest.Name(t)
	stream := "enrollq:webhook:{" + queue + "}"
	t.Cleanup(func() { rdb.Del(context.Background(), stream) })
	rc, url := newReceiver(t, "whsec-expiry")
	ob := sink.NewOutbox(rdb, queue, quietHook(t, url, []byte("whsec-expiry")))
	ob.Retention = time.Hour

	// An entry from two hours ago, as a dropped webhook would leave.
	old := fmt.Sprintf("%d-0", time.Now().Add(-2*time.Hour).UnixMilli())
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: old, Values: []string{"body", "{}", "delivery", "old"}}).Err(); err != nil {
		t.Fatal(err)
	}
	put := func(id string) {
		t.Helper()
		r := campaign.Result{Campaign: "c", ProfileID: id, Status: campaign.StatusCreated, FinishedAt: time.Now()}
		if err := ob.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	put("uprof_new")
	if n, _ := rdb.XLen(ctx, stream).Result(); n != 1 {
		t.Errorf("stream length after a Put = %d, want 1 (the two-hour-old entry trimmed)", n)
	}
	if ttl, _ := rdb.TTL(ctx, stream).Result(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("stream TTL = %v, want (0, 1h]", ttl)
	}

	runOutbox(t, ob)
	drain(t, ob)
	rdb.Del(ctx, stream) // the stream expires, its group with it
	put("uprof_after")
	drain(t, ob)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.got["uprof_new"] != 1 || rc.got["uprof_after"] != 1 || len(rc.got) != 2 {
		t.Errorf("receiver got %v, want uprof_new and uprof_after once each (one before the stream expired, one after)", rc.got)
	}
}

// TestTableOutboxOutlastsAnOutage: a table sink opened with Redis goes
// behind an outbox, so results put while the table cannot be written wait
// in Redis and reach the table, once each, when it is back; of two results
// for one profile the newer is the row.
func TestTableOutboxOutlastsAnOutage(t *testing.T) {
	sqltest.EachTable(t, func(t *testing.T, d sqldb.Dialect, db *sqldb.DB, url, table string) {
		away := table + "_away"
		rdb := redistest.New(t)
		queue := redistest.Name(t)
		ctx := context.Background()
		t.Cleanup(func() {
			rdb.Del(context.Background(), "enrollq:table:{"+queue+"}")
			db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+away)
		})

		s, err := sink.OpenResults(ctx, sink.ResultsConfig{Target: url, Table: table, Redis: rdb, Queue: queue,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ob, ok := s.(*sink.Outbox)
		if !ok {
			t.Fatalf("OpenResults(database URL, with Redis) = %T, want *sink.Outbox", s)
		}

		// The outage: the table is not there to write.
		sqltest.Exec(t, db, "ALTER TABLE "+table+" RENAME TO "+away)
		runOutbox(t, ob)
		const n = 40
		now := time.Now().UTC().Truncate(time.Second)
		for i := range n {
			r := campaign.Result{Campaign: "c", ProfileID: fmt.Sprintf("uprof_%d", i), Status: campaign.StatusCreated,
				URL: fmt.Sprintf("https://example.com/enroll/%d", i), ExpiresAt: now.Add(time.Hour),
				Attempts: 1, FinishedAt: now}
			if i%4 == 3 {
				r = campaign.Result{Campaign: "c", ProfileID: r.ProfileID, Status: campaign.StatusFailed,
					ErrorType: "not_found_error", Attempts: 1, FinishedAt: now}
			}
			if err := ob.Put(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		// A re-mint of profile 0, newer: it is the row that stays.
		if err := ob.Put(ctx, campaign.Result{Campaign: "c", ProfileID: "uprof_0", Status: campaign.StatusCreated,
			URL: "https://example.com/enroll/0-again", ExpiresAt: now.Add(2 * time.Hour), Attempts: 2,
			FinishedAt: now.Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if left, err := ob.Undelivered(ctx); err != nil || left != n+1 {
			t.Fatalf("during the outage: %d undelivered, %v; want %d, nil", left, err, n+1)
		}

		sqltest.Exec(t, db, "ALTER TABLE "+away+" RENAME TO "+table)
		drain(t, ob)
		var rows, profiles, created int
		if err := db.QueryRowContext(ctx, "SELECT count(*), count(DISTINCT user_profile_id), "+
			"sum(CASE WHEN status = 'created' THEN 1 ELSE 0 END) FROM "+table).Scan(&rows, &profiles, &created); err != nil {
			t.Fatal(err)
		}
		if rows != n || profiles != n || created != n-n/4 {
			t.Errorf("table after the outage: %d rows, %d profiles, %d created; want %d, %d, %d", rows, profiles, created, n, n, n-n/4)
		}
		var got string
		var attempts int64
		if err := db.QueryRowContext(ctx, "SELECT enrollment_url, attempts FROM "+table+
			" WHERE user_profile_id = 'uprof_0'").Scan(&got, &attempts); err != nil {
			t.Fatal(err)
		}
		if got != "https://example.com/enroll/0-again" || attempts != 2 {
			t.Errorf("uprof_0's row: %q, attempts %d; want the re-mint, 2", got, attempts)
		}
	})
}

// TestOutboxPoisonHoldsUpNoOther: a result the receiver refuses for good
// waits its own backoff while the results after it go on, through the
// first 40 and then 40 more put later; Drain then gives up on it with an
// error that says so, instead of waiting for ever.
func TestOutboxPoisonHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	queue := redistest.Name(t)
	rc, _ := newReceiver(t, "whsec-poison")
	var poisonTries atomic.Int64
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"uprof_poison"`) {
			poisonTries.Add(1)
			http.Error(w, "this one never", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		rc.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	t.Cleanup(func() { rdb.Del(context.Background(), "enrollq:webhook:{"+queue+"}") })
	ob := sink.NewOutbox(rdb, queue, quietHook(t, gate.URL+"/hook", []byte("whsec-poison")))
	put := func(id string) {
		t.Helper()
		if err := ob.Put(context.Background(), campaign.Result{Campaign: "c", ProfileID: id,
			Status: campaign.StatusCreated, FinishedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	put("uprof_poison")
	for i := range 40 {
		put(fmt.Sprintf("uprof_%d", i))
	}
	runOutbox(t, ob)
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			rc.mu.Lock()
			got := len(rc.got)
			rc.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("receiver got %d results, want %d: the refused one holds up the rest", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(40)
	for i := 40; i < 80; i++ {
		put(fmt.Sprintf("uprof_%d", i))
	}
	waitFor(80)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := ob.Drain(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 results could not be delivered") || ctx.Err() != nil {
		t.Errorf("Drain = %v, want it to give up on the one refused result", err)
	}
	if left, err := ob.Undelivered(context.Background()); err != nil || left != 1 {
		t.Errorf("undelivered = %d (%v), want 1: the refused result stays in the stream", left, err)
	}
	if n := poisonTries.Load(); n < 6 {
		t.Errorf("the refused result was tried %d times, want at least 6", n)
	}
}

// TestTableOutboxStartsWithTheDatabaseDown: a worker whose database does
// not answer at start still starts (its results wait in the outbox) and
// fills the table once the database answers; one that the database
// refuses (an unknown user) fails at once.
func TestTableOutboxStartsWithTheDatabaseDown(t *testing.T) {
	sqltest.EachTable(t, func(t *testing.T, d sqldb.Dialect, db *sqldb.DB, dbURL, table string) {
		rdb := redistest.New(t)
		queue := redistest.Name(t)
		ctx := context.Background()
		t.Cleanup(func() { rdb.Del(context.Background(), "enrollq:table:{"+queue+"}") })
		real, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		open := func(u *url.URL) (sink.Results, error) {
			return sink.OpenResults(ctx, sink.ResultsConfig{Target: u.String(), Table: table, Redis: rdb, Queue: queue,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}

		refused := *real
		refused.User = url.UserPassword("enrollq_nosuchuser", "pw")
		if s, err := open(&refused); err == nil {
			s.Close()
			t.Errorf("OpenResults as an unknown user: no error, want the database's refusal at start")
		}

		// A port that nothing listens on yet: the database is down.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		down := *real
		down.Host = addr
		s, err := open(&down)
		if err != nil {
			t.Fatalf("OpenResults with the database down: %v, want an outbox that waits", err)
		}
		t.Cleanup(func() { s.Close() })
		ob := s.(*sink.Outbox)
		runOutbox(t, ob)
		const n = 10
		now := time.Now().UTC().Truncate(time.Second)
		for i := range n {
			if err := ob.Put(ctx, campaign.Result{Campaign: "c", ProfileID: fmt.Sprintf("uprof_%d", i), Status: campaign.StatusCreated,
				URL: "https://example.com/e", ExpiresAt: now.Add(time.Hour), Attempts: 1, FinishedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		if left, err := ob.Undelivered(ctx); err != nil || left != n {
			t.Fatalf("with the database down: %d undelivered, %v; want %d", left, err, n)
		}

		// The database comes up on that port: a proxy to the real one.
		up, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("the port went to another process: %v", err)
		}
		t.Cleanup(func() { up.Close() })
		go proxy(up, real.Host)
		drain(t, ob)
		var rows int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil || rows != n {
			t.Errorf("table once the database answers: %d rows (%v), want %d", rows, err, n)
		}
	})
}

// proxy forwards every connection that ln accepts to target.
func proxy(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			s, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer s.Close()
			go io.Copy(s, c)
			io.Copy(c, s)
		}()
	}
}
