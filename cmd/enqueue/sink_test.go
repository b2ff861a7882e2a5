package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/sandbox"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/sqldb"
	"github.com/enrollq/enrollq/internal/sqltest"
	"github.com/enrollq/enrollq/internal/tasks"
	"github.com/enrollq/enrollq/internal/worker"
)

const sinkProfiles = 300

// fleetWithSinks runs a campaign of sinkProfiles on two workers, each with
// its own sink from newSink (as two processes would have), against a
// sandbox that fails a fifth of its calls with a 500, and returns the
// --out rows by profile id.
func fleetWithSinks(t *testing.T, newSink func(rdb *redis.Client, queue string) sink.Results) map[string]map[string]string {
	t.Helper()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	faults, err := sandbox.ParseFaults("500=0.2")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for range 2 {
		s := newSink(rdb, name)
		t.Cleanup(func() { s.Close() })
		w, err := worker.New(worker.Config{
			Redis: rdb, Queue: name, Concurrency: 8, Rate: 0, Fleet: true, Logger: quiet, Sink: s,
			Client:  client.Config{APIKey: "k", BaseURL: api.URL, Timeout: 5 * time.Second},
			Handler: tasks.HandlerConfig{Backoff: tasks.Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Shutdown) // before the sink closes
	}
	redistest.DeleteQueueAtEnd(t, rdb, name)

	out := filepath.Join(t.TempDir(), "out.csv")
	res := runCmd(t, "--redis-url", redisURLOf(t, rdb.Options().Addr, rdb.Options().DB), "--queue", name,
		"--campaign", name, "--csv", writeProfiles(t, sinkProfiles), "--wait", "--out", out)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	if got := sb.Stats().ByStatus["500"]; got < sinkProfiles/10 {
		t.Errorf("the sandbox failed %d calls; want about a fifth of them, so that tasks retried", got)
	}
	rows := map[string]map[string]string{}
	for _, r := range readCSV(t, out) {
		checkCreated(t, r)
		rows[r["user_profile_id"]] = r
	}
	if len(rows) != sinkProfiles {
		t.Fatalf("--out has %d profiles, want %d", len(rows), sinkProfiles)
	}
	return rows
}

func TestFleetTableSink(t *testing.T) {
	sqltest.EachTable(t, func(t *testing.T, d sqldb.Dialect, db *sqldb.DB, url, table string) {
		want := fleetWithSinks(t, func(*redis.Client, string) sink.Results {
			s, err := sink.OpenTable(context.Background(), url, table)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})

		rows, err := db.QueryContext(context.Background(),
			"SELECT user_profile_id, enrollment_url, status, passthrough FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var id, url, status, passthrough string
			if err := rows.Scan(&id, &url, &status, &passthrough); err != nil {
				t.Fatal(err)
			}
			n++
			w, ok := want[id]
			switch {
			case !ok:
				t.Errorf("table holds %s, which is not in the campaign", id)
			case status != "created" || url != w["enrollment_url"]:
				t.Errorf("%s: table has %s %q, --out has %s %q", id, status, url, w["status"], w["enrollment_url"])
			}
			var cols map[string]string
			if json.Unmarshal([]byte(passthrough), &cols); cols["email"] != w["email"] {
				t.Errorf("%s: passthrough %s, want email %q", id, passthrough, w["email"])
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n != sinkProfiles {
			t.Errorf("table rows = %d, want exactly one per profile (%d)", n, sinkProfiles)
		}
	})
}

// signedReceiver accepts signed deliveries, refusing every fifth, and
// keeps the newest result per profile.
type signedReceiver struct {
	secret []byte

	mu                     sync.Mutex
	requests, refused, bad int
	newest                 map[string]campaign.Result
	deliveries             map[string]int
}

func (rc *signedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if !sink.Verify(rc.secret, r.Header.Get(sink.HeaderTimestamp), body, r.Header.Get(sink.HeaderSignature)) {
		rc.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.requests%5 == 0 {
		rc.refused++
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var res campaign.Result
	if err := json.Unmarshal(body, &res); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.deliveries[res.ProfileID]++
	if old, ok := rc.newest[res.ProfileID]; !ok || !res.FinishedAt.Before(old.FinishedAt) {
		rc.newest[res.ProfileID] = res
	}
	w.WriteHeader(http.StatusOK)
}

func TestFleetWebhookSink(t *testing.T) {
	t.Parallel()
	secret := []byte("whsec-fleet")
	rc := &signedReceiver{secret: secret, newest: map[string]campaign.Result{}, deliveries: map[string]int{}}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)

	var outbox *sink.Outbox
	want := fleetWithSinks(t, func(rdb *redis.Client, queue string) sink.Results {
		wh, err := sink.NewWebhook(sink.WebhookConfig{URL: hook.URL + "/enrollq", Secret: secret,
			Backoff: 5 * time.Millisecond, MaxWait: 50 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ob := sink.NewOutbox(rdb, queue, wh)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { ob.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		t.Cleanup(func() { rdb.Del(context.Background(), "enrollq:webhook:{"+queue+"}") })
		outbox = ob
		return ob
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := outbox.Drain(ctx); err != nil {
		t.Fatal(err)
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.newest) != sinkProfiles || rc.bad != 0 {
		t.Errorf("receiver has %d profiles (want %d), %d bad signatures (want 0)", len(rc.newest), sinkProfiles, rc.bad)
	}
	if rc.refused < sinkProfiles/5-1 {
		t.Errorf("receiver refused %d deliveries, want about a fifth of %d", rc.refused, rc.requests)
	}
	dups := 0
	for _, n := range rc.deliveries {
		dups += n - 1
	}
	t.Logf("receiver: %d requests, %d refused, %d profiles, %d extra deliveries, %d bad signatures",
		rc.requests, rc.refused, len(rc.newest), dups, rc.bad)
	for id, w := range want {
		if got := rc.newest[id]; got.URL != w["enrollment_url"] || got.Status != campaign.StatusCreated {
			t.Errorf("%s: receiver's newest is %s %q, --out has %q", id, got.Status, got.URL, w["enrollment_url"])
		}
	}
}

func TestLocalModeTableSink(t *testing.T) {
	t.Parallel()
	db, url := sqltest.Open(t, sqldb.Postgres)
	table := sqltest.Table(t, db)
	res := runCmd(t, "--local", "--sandbox", "--sandbox-fail", "500=0.2", "--rate", "0",
		"--csv", writeProfiles(t, 50), "--sink", url, "--sink-table", table)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	var n, created int
	err := db.QueryRowContext(context.Background(),
		"SELECT count(*), sum(CASE WHEN status = 'created' THEN 1 ELSE 0 END) FROM "+table).Scan(&n, &created)
	if err != nil {
		t.Fatal(err)
	}
	if n != 50 || created != 50 {
		t.Errorf("table: %d rows, %d created; want 50 and 50", n, created)
	}
}

// flakySink refuses the first result of every profile, as a database
// that dropped its connections would, and takes the next.
type flakySink struct {
	mu      sync.Mutex
	refused map[string]bool
	got     map[string]campaign.Result
}

func (s *flakySink) Put(_ context.Context, r campaign.Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.refused[r.ProfileID] {
		s.refused[r.ProfileID] = true
		return errors.New("connection reset")
	}
	s.got[r.ProfileID] = r
	return nil
}

func (s *flakySink) Close() error   { return nil }
func (s *flakySink) String() string { return "flaky sink" }

func TestSinkFailureRetriesTheTask(t *testing.T) {
	t.Parallel()
	s := &flakySink{refused: map[string]bool{}, got: map[string]campaign.Result{}}
	want := fleetWithSinks(t, func(*redis.Client, string) sink.Results { return s })
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) != sinkProfiles {
		t.Fatalf("sink has %d results, want %d", len(s.got), sinkProfiles)
	}
	for id, w := range want {
		if s.got[id].URL != w["enrollment_url"] {
			t.Errorf("%s: sink has %q, --out has %q", id, s.got[id].URL, w["enrollment_url"])
		}
	}
}

func TestLocalModeWebhookSink(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("whsec-local\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := &signedReceiver{secret: []byte("whsec-local"), newest: map[string]campaign.Result{}, deliveries: map[string]int{}}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)

	out := filepath.Join(t.TempDir(), "out.csv")
	res := runCmd(t, "--local", "--sandbox", "--rate", "0", "--csv", writeProfiles(t, 50), "--out", out,
		"--sink", hook.URL+"/enrollq?token=tok-local", "--sink-secret-file", secretFile, "--log-level", "info")
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	if strings.Contains(res.out+res.errOut, "tok-local") || strings.Contains(res.out+res.errOut, "whsec-local") {
		t.Errorf("the webhook's token or secret shows in the output:\n%s%s", res.out, res.errOut)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.newest) != 50 || rc.bad != 0 || rc.refused == 0 {
		t.Errorf("receiver: %d profiles (want 50), %d bad signatures, %d refused", len(rc.newest), rc.bad, rc.refused)
	}
	for _, r := range readCSV(t, out) {
		if got := rc.newest[r["user_profile_id"]]; got.URL != r["enrollment_url"] {
			t.Errorf("%s: receiver has %q, --out has %q", r["user_profile_id"], got.URL, r["enrollment_url"])
		}
	}
}
