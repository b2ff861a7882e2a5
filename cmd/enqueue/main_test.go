package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
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

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/sandbox"
	"github.com/enrollq/enrollq/internal/worker"
)

const testdata = "../../internal/source/testdata/"

type result struct {
	out, errOut string
	err         error
}

func runCmd(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
	return result{stdout.String(), stderr.String(), err}
}

func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []map[string]string
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, h := range rows[0] {
			m[h] = row[i]
		}
		out = append(out, m)
	}
	return out
}

// checkCreated asserts a row holds a live URL.
func checkCreated(t *testing.T, row map[string]string) {
	t.Helper()
	if row["status"] != "created" {
		t.Errorf("%s: status %q, want created (%s)", row["user_profile_id"], row["status"], row["error_message"])
	}
	if !strings.HasPrefix(row["enrollment_url"], "https://") {
		t.Errorf("%s: enrollment_url %q is not https", row["user_profile_id"], row["enrollment_url"])
	}
	exp, err := time.Parse(time.RFC3339, row["expires_at"])
	if err != nil || !exp.After(time.Now()) {
		t.Errorf("%s: expires_at %q is not a future RFC 3339 time", row["user_profile_id"], row["expires_at"])
	}
	if !strings.HasPrefix(row["request_id"], "req_") {
		t.Errorf("%s: request_id %q", row["user_profile_id"], row["request_id"])
	}
}

func TestLocalModeCleanFile(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "r.csv")
	res := runCmd(t, "--local", "--sandbox", "--csv", testdata+"profiles-25.csv", "--out", out)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}

	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	input := readCSV(t, testdata+"profiles-25.csv")
	rows := readCSV(t, out)
	if len(rows) != 25 {
		t.Fatalf("rows = %d, want 25", len(rows))
	}
	for i, row := range rows {
		checkCreated(t, row)
		for _, col := range []string{"user_profile_id", "email", "first_name", "locale"} {
			if row[col] != input[i][col] {
				t.Errorf("row %d %s = %q, want %q", i, col, row[col], input[i][col])
			}
		}
	}
	for _, want := range []string{"rows read         25", "enqueued          25", "25 created, 0 failed"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("summary lacks %q:\n%s", want, res.out)
		}
	}
}

func TestLocalModeMessyFile(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "m.csv")
	res := runCmd(t, "--local", "--sandbox", "--csv", testdata+"profiles-messy.csv", "--out", out)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	for _, want := range []string{
		`line 6: repeat of line 2 ("uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e")`,
		`line 8: invalid id ""`,
		`line 9: invalid id "uprof_"`,
		`line 10: invalid id "../../v1/messages"`,
		`line 11: invalid id "uprof_01Ab/../../x"`,
		`line 12: invalid id "UPROF_01Gg4Hh5Jj6Kk7Ll8Mm9Nn0P"`,
		"rows read         11", "enqueued          5", "repeats           1", "invalid           5",
	} {
		if !strings.Contains(res.out, want) {
			t.Errorf("summary lacks %q:\n%s", want, res.out)
		}
	}

	rows := readCSV(t, out)
	wantIDs := []string{
		"uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e", "uprof_01Rk8sPq2ZtYv6Nw3Lm9Xc4B", "uprof_01Zt5Yq8Wn2Kc7Vb3Xm6Lp9R",
		"uprof_01Qw2Er3Ty4Ui5Op6As7Df8G", "uprof_01Po9Iu8Yt7Re6Wq5Az4Sx3D",
	}
	if len(rows) != len(wantIDs) {
		t.Fatalf("rows = %d, want %d", len(rows), len(wantIDs))
	}
	for i, row := range rows {
		checkCreated(t, row)
		if row["user_profile_id"] != wantIDs[i] {
			t.Errorf("row %d id = %q, want %q", i, row["user_profile_id"], wantIDs[i])
		}
	}
	if got := rows[1]["notes"]; got != "line one\nline two of the same note" {
		t.Errorf("two-line note = %q", got)
	}
	if got := rows[3]["notes"]; got != `quoted "nickname" inside` {
		t.Errorf("quoted note = %q", got)
	}
	if got := rows[4]["email"]; got != "søren.dahl@example.net" {
		t.Errorf("unicode email = %q", got)
	}
	raw, _ := os.ReadFile(out)
	if !bytes.Contains(raw, []byte("\"line one\r\nline two of the same note\"")) {
		t.Error("the two-line note does not come out as the input had it (CRLF inside quotes)")
	}
	if bytes.HasPrefix(raw, []byte("\uFEFF")) {
		t.Error("output starts with a BOM")
	}
}

func TestLocalModeWithFaults(t *testing.T) {
	t.Parallel()
	in := writeProfiles(t, 150)
	out := filepath.Join(t.TempDir(), "r.jsonl")
	res := runCmd(t, "--local", "--sandbox", "--sandbox-fail", "500=0.05,529=0.05,429=0.05,reset=0.02",
		"--rate", "0", "--workers", "20", "--csv", in, "--out", out)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 150 {
		t.Fatalf("jsonl lines = %d, want 150", len(lines))
	}
	for _, l := range lines {
		if !strings.Contains(l, `"status":"created"`) {
			t.Errorf("not created: %s", l)
		}
	}
}

func TestLocalModePermanentFailuresExitNonZero(t *testing.T) {
	t.Parallel()
	in := writeProfiles(t, 40)
	out := filepath.Join(t.TempDir(), "r.csv")
	res := runCmd(t, "--local", "--sandbox", "--sandbox-fail", "400=0.5", "--rate", "0", "--csv", in, "--out", out)
	var failed errSomeFailed
	if !errors.As(res.err, &failed) || failed.n == 0 {
		t.Fatalf("err = %v, want some profiles failed", res.err)
	}
	rows := readCSV(t, out)
	if len(rows) != 40 {
		t.Fatalf("rows = %d, want 40: failures are in the results too", len(rows))
	}
	var nFailed int64
	for _, r := range rows {
		if r["status"] == "failed" {
			nFailed++
			if r["error_type"] != "invalid_request_error" || !strings.HasPrefix(r["request_id"], "req_") || r["attempts"] != "1" {
				t.Errorf("failed row = %v", r)
			}
		}
	}
	if nFailed != failed.n {
		t.Errorf("failed rows = %d, summary says %d", nFailed, failed.n)
	}
}

func TestBrokenFileEnqueuesNothing(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	rdbURL := redisURLOf(t, rdb.Options().Addr, rdb.Options().DB)
	name := redistest.Name(t)
	in := filepath.Join(t.TempDir(), "bad.csv")
	content := "user_profile_id,email\nuprof_a1,a@example.com\nuprof_b2,b@example.com\nuprof_c3,c@example.com,extra\n"
	if err := os.WriteFile(in, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCmd(t, "--redis-url", rdbURL, "--queue", name, "--campaign", name, "--csv", in)
	if res.err == nil || !strings.Contains(res.err.Error(), "line 4") || !strings.Contains(res.err.Error(), "nothing was enqueued") {
		t.Fatalf("err = %v, want one naming line 4 and saying nothing was enqueued", res.err)
	}
	prog, err := campaign.NewStore(rdb, 0).Progress(context.Background(), name)
	if err != nil || prog.Total != 0 {
		t.Errorf("campaign total = %d (%v), want 0", prog.Total, err)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "--csv is required"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.txt", "--sandbox"}, "--out"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--wait", "--sandbox"}, "--wait"},
		{[]string{"--local", "--csv", "x.csv", "--sandbox"}, "--out is required"},
		{[]string{"--local", "--csv", "x.csv", "--out", "./x.csv", "--sandbox"}, "is the input file"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--queue", "", "--sandbox"}, "--queue"},
		{[]string{"--local", "--csv", "x.csv", "--campaign", "a b", "--sandbox"}, "--campaign"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--sandbox-fail", "500=2"}, "--sandbox-fail"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--endpoint", "nope"}, "--endpoint"},
		{[]string{"--redis-url", "redis://x:y:z", "--csv", "x.csv"}, "--redis-url"},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--csv", "x.csv", "--sandbox"}, "--local"},
		{[]string{"--retry-failed"}, "--retry-failed needs --campaign"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--max-retry", "0"}, "--max-retry 0: must be at least 1"},
		{[]string{"--refresh"}, "--refresh needs --campaign"},
		{[]string{"--refresh", "--retry-failed", "--campaign", "c"}, "choose one"},
		{[]string{"--refresh", "--campaign", "c", "--local"}, "--refresh needs --redis-url"},
		{[]string{"--resume", "--redis-url", ""}, "--resume needs --redis-url"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--timeout", "3m"}, "--timeout 3m0s: must be shorter than the task timeout 2m0s"},
		{[]string{"--resume", "--local", "--csv", "x.csv"}, "--resume needs --redis-url"},
		{[]string{"--retry-failed", "--campaign", "c", "--redis-url", ""}, "--retry-failed needs --redis-url"},
		{[]string{"--status", "--campaign", "c", "--redis-url", ""}, "--status needs --redis-url"},
		{[]string{"--wait", "--csv", "x.csv", "--out", "r.csv", "--redis-url", "", "--sandbox"}, "--wait follows a fleet campaign"},
		{[]string{"--refresh", "--campaign", "c", "--within", "-1m", "--redis-url", "redis://127.0.0.1:1"}, "--within"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--delimiter", "ab"}, "--delimiter"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--delimiter", `"`}, "--delimiter"},
		{[]string{"--local", "--csv", "x.csv", "--db-url", "postgres://h/db", "--query", "SELECT 1", "--out", "r.csv"}, "give one"},
		{[]string{"--local", "--db-url", "postgres://h/db", "--out", "r.csv"}, "--query"},
		{[]string{"--local", "--csv", "x.csv", "--query", "SELECT 1", "--out", "r.csv"}, "--query needs --db-url"},
		{[]string{"--local", "--db-url", "sqlite://x", "--query", "SELECT 1", "--out", "r.csv"}, "--db-url"},
		{[]string{"--local", "--db-url", "mysql://h/db", "--query", "SELECT 1", "--query-timeout", "0s", "--out", "r.csv"}, "--query-timeout"},
		{[]string{"--local", "--csv", "x.csv", "--sink", "results.csv", "--sandbox"}, "--sink"},
		{[]string{"--local", "--csv", "x.csv", "--sink", "http://example.com/hook", "--sandbox"}, "loopback"},
		{[]string{"--local", "--csv", "x.csv", "--sink", "postgres://h/db", "--sink-table", "a;b", "--sandbox"}, "table name"},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--csv", "x.csv", "--sink", "postgres://h/db"}, "cmd/worker"},
		{[]string{"--local", "--db-url", "postgres://h/db", "--query", "drop table t", "--out", "r.csv"}, "--query: the query starts with DROP"},
		// A flag that the chosen operation or mode would ignore.
		{[]string{"--refresh", "--campaign", "c", "--csv", "x.csv", "--redis-url", "redis://127.0.0.1:1"}, "--csv has no effect with --refresh"},
		{[]string{"--retry-failed", "--campaign", "c", "--within", "1m", "--redis-url", "redis://127.0.0.1:1"}, "--within has no effect with --retry-failed"},
		{[]string{"--status", "--campaign", "c", "--csv", "x.csv", "--redis-url", "redis://127.0.0.1:1"}, "--csv has no effect with --status"},
		{[]string{"--resume", "--csv", "x.csv", "--redis-url", "redis://127.0.0.1:1"}, "--csv has no effect with --resume"},
		{[]string{"--csv", "x.csv", "--within", "5m", "--redis-url", "redis://127.0.0.1:1"}, "--within has no effect here"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--status-sample", "1s"}, "--status-sample has no effect here"},
		{[]string{"--csv", "x.csv", "--timeout", "5m", "--redis-url", "redis://127.0.0.1:1"}, "--timeout has no effect in fleet mode"},
		{[]string{"--csv", "x.csv", "--workers", "5", "--redis-url", "redis://127.0.0.1:1"}, "--workers has no effect in fleet mode"},
		{[]string{"--local", "--db-url", "postgres://h/db", "--query", "SELECT 1", "--delimiter", ";", "--out", "r.csv"}, "--delimiter has no effect with --db-url"},
		{[]string{"--local", "--csv", "x.csv", "--query-timeout", "1m", "--out", "r.csv", "--sandbox"}, "--query-timeout has no effect without --db-url"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox-ttl", "5s"}, "--sandbox-ttl has no effect without --sandbox"},
		{[]string{"--local", "--csv", "x.csv", "--out", "r.csv", "--sandbox", "--sink-table", "t"}, "--sink-table has no effect without --sink"},
		{[]string{"--local", "--redis-url", "redis://127.0.0.1:1", "--csv", "x.csv", "--out", "r.csv", "--sandbox"}, "--redis-url has no effect with --local"},
		{[]string{"--local", "--csv", "../../internal/source/testdata/profiles-25.csv", "--id-column", "nope",
			"--out", filepath.Join(t.TempDir(), "r.csv"), "--sandbox"}, `--id-column: ../../internal/source/testdata/profiles-25.csv: line 1: no id column "nope"`},
	}
	for _, tt := range tests {
		res := runCmd(t, tt.args...)
		var u usageError
		if !errors.As(res.err, &u) || !strings.Contains(res.err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want a usage error naming %q", tt.args, res.err, tt.want)
		}
		if exitCode(res.err) != 2 {
			t.Errorf("%v: exit code %d, want 2", tt.args, exitCode(res.err))
		}
	}
}

// TestLocalModeLongCallTimeout: a --timeout past the worker's default
// shutdown budget is fine in local mode, whose budget follows it.
func TestLocalModeLongCallTimeout(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "r.csv")
	res := runCmd(t, "--local", "--sandbox", "--timeout", "30s", "--csv", writeProfiles(t, 2), "--out", out)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	if rows := readCSV(t, out); len(rows) != 2 {
		t.Errorf("rows = %d, want 2", len(rows))
	}
}

func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	in := writeProfiles(t, 1)
	res := runCmd(t, "--redis-url", "redis://:s3cret@127.0.0.1:1/0", "--csv", in)
	if res.err == nil || !strings.Contains(res.err.Error(), "127.0.0.1:1") {
		t.Fatalf("err = %v, want one naming the address", res.err)
	}
	if strings.Contains(res.err.Error(), "s3cret") {
		t.Errorf("the error shows the password: %v", res.err)
	}
}

// TestFleetMode runs two workers and the producer against REDIS_URL (or a
// miniredis), then runs the same campaign again: no API call, no new row.
func TestFleetMode(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	sb, err := sandbox.New(sandbox.Config{Keys: []string{"fleet-key"}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var workers []*worker.Worker
	for range 2 {
		w, err := worker.New(worker.Config{
			Redis: rdb, Queue: name, Concurrency: 8, Rate: 0, Fleet: true, Logger: quiet,
			Client: client.Config{APIKey: "fleet-key", BaseURL: api.URL, Timeout: 5 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}
	var once sync.Once
	stop := func() { once.Do(func() { workers[0].Shutdown(); workers[1].Shutdown() }) }
	t.Cleanup(stop)

	url := redisURLOf(t, rdb.Options().Addr, rdb.Options().DB)
	in := writeProfiles(t, 300)
	out := filepath.Join(t.TempDir(), "fleet.csv")
	res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", in, "--wait", "--out", out)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	rows := readCSV(t, out)
	if len(rows) != 300 {
		t.Fatalf("rows = %d, want 300", len(rows))
	}
	seen := map[string]bool{}
	for _, r := range rows {
		checkCreated(t, r)
		if seen[r["user_profile_id"]] {
			t.Errorf("two rows for %s", r["user_profile_id"])
		}
		seen[r["user_profile_id"]] = true
	}
	if got := sb.Stats().Requests; got != 300 {
		t.Errorf("API calls = %d, want 300", got)
	}

	res = runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", in, "--wait", "--out", out)
	if res.err != nil {
		t.Fatalf("second run: %v\n%s", res.err, res.out)
	}
	if !strings.Contains(res.out, "already enqueued  300") {
		t.Errorf("second run summary:\n%s", res.out)
	}
	if got := sb.Stats().Requests; got != 300 {
		t.Errorf("API calls after the second run = %d, want still 300", got)
	}
	if rows := readCSV(t, out); len(rows) != 300 {
		t.Errorf("rows after the second run = %d, want 300", len(rows))
	}

	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	stop()
	insp.DeleteQueue(name, true)
}

func redisURLOf(t *testing.T, addr string, db int) string {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return fmt.Sprintf("redis://%s/%d", addr, db)
}

// writeProfiles writes a CSV of n well-formed, distinct profiles.
func writeProfiles(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("user_profile_id,email,first_name\n")
	for i := range n {
		fmt.Fprintf(&b, "uprof_01T%023d,user.%d@example.com,Name %d\n", i, i, i)
	}
	path := filepath.Join(t.TempDir(), "profiles.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLocalModeUnwritableOutFailsFirst(t *testing.T) {
	t.Parallel()
	in := writeProfiles(t, 3)
	res := runCmd(t, "--local", "--sandbox", "--csv", in, "--out", filepath.Join(t.TempDir(), "no", "such", "dir", "r.csv"))
	if res.err == nil || !strings.Contains(res.err.Error(), "nothing was enqueued") {
		t.Fatalf("err = %v, want an --out error before anything is enqueued", res.err)
	}
	if strings.Contains(res.out, "rows read") {
		t.Errorf("the run got as far as enqueuing:\n%s", res.out)
	}
}

func TestLocalModeInterruptedKeepsWhatIsDone(t *testing.T) {
	t.Parallel()
	in := writeProfiles(t, 200)
	out := filepath.Join(t.TempDir(), "r.csv")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"--local", "--sandbox", "--rate", "50", "--csv", in, "--out", out}, nil, &stdout, &stderr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the interruption", err)
	}
	rows := readCSV(t, out)
	if len(rows) != 200 {
		t.Fatalf("rows = %d, want all 200 input profiles accounted for", len(rows))
	}
	var created, pending int
	for _, r := range rows {
		switch r["status"] {
		case "created":
			created++
			checkCreated(t, r)
		case "pending":
			pending++
		default:
			t.Errorf("row status %q", r["status"])
		}
	}
	if created == 0 || pending == 0 || created+pending != 200 {
		t.Errorf("created %d + pending %d, want both > 0 and 200 in all", created, pending)
	}
}

func TestNoValidProfileFails(t *testing.T) {
	t.Parallel()
	in := filepath.Join(t.TempDir(), "p.csv")
	os.WriteFile(in, []byte("user_profile_id,email\n../x,a@example.com\n,b@example.com\n"), 0o600)
	res := runCmd(t, "--local", "--sandbox", "--csv", in, "--out", filepath.Join(t.TempDir(), "r.csv"))
	if res.err == nil || !strings.Contains(res.err.Error(), "no valid profile id") {
		t.Fatalf("err = %v, want one saying no id is valid", res.err)
	}
}

// TestFleetRerunRemintsExpiredAndWritesThisInput runs a campaign whose URLs
// live 2 s, then runs it again with a second file: expired URLs are minted
// again, and --out holds exactly the second file's profiles with its
// columns.
func TestFleetRerunRemintsExpiredAndWritesThisInput(t *testing.T) {
	t.Parallel()
	_, name, url, sb := fleet(t, sandbox.Config{TTL: 2 * time.Second})

	dir := t.TempDir()
	first := filepath.Join(dir, "a.csv")
	os.WriteFile(first, []byte("user_profile_id,email\nuprof_a1,old@example.com\nuprof_b2,b@example.com\n"), 0o600)
	res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", first, "--wait", "--out", filepath.Join(dir, "a-out.csv"))
	if res.err != nil {
		t.Fatalf("first run: %v\n%s", res.err, res.out)
	}
	time.Sleep(2100 * time.Millisecond) // the URLs expire

	second := filepath.Join(dir, "b.csv")
	os.WriteFile(second, []byte("user_profile_id,email\nuprof_a1,new@example.com\n"), 0o600)
	out := filepath.Join(dir, "b-out.csv")
	res = runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", second, "--wait", "--out", out)
	if res.err != nil {
		t.Fatalf("second run: %v\n%s", res.err, res.out)
	}
	if !strings.Contains(res.out, "minted again") {
		t.Errorf("the summary does not say the expired URL was minted again:\n%s", res.out)
	}
	rows := readCSV(t, out)
	if len(rows) != 1 || rows[0]["user_profile_id"] != "uprof_a1" || rows[0]["email"] != "new@example.com" {
		t.Fatalf("rows = %v, want only uprof_a1 with the second file's email", rows)
	}
	checkCreated(t, rows[0])
	if got := sb.Stats().ByProfile["uprof_a1"]; got != 2 {
		t.Errorf("calls for uprof_a1 = %d, want 2 (minted, then minted again)", got)
	}
}

// TestFleetRerunKeepsALiveURLWhoseRemintFails runs a campaign whose URLs
// live 9 minutes, then runs it again while the API refuses every call
// (400): the URLs are due to be minted again (under 10 minutes left), the
// new calls fail for good, and the results keep the URLs that still live
// rather than turn into failures.
func TestFleetRerunKeepsALiveURLWhoseRemintFails(t *testing.T) {
	t.Parallel()
	_, name, url, sb := fleet(t, sandbox.Config{TTL: 9 * time.Minute, Script: []string{"ok", "ok", "400", "400"}})

	dir := t.TempDir()
	in := filepath.Join(dir, "p.csv")
	os.WriteFile(in, []byte("user_profile_id,email\nuprof_k1,a@example.com\nuprof_k2,b@example.com\n"), 0o600)
	args := []string{"--redis-url", url, "--queue", name, "--campaign", name, "--csv", in, "--wait"}
	first := filepath.Join(dir, "first.csv")
	if res := runCmd(t, append(args, "--out", first)...); res.err != nil {
		t.Fatalf("first run: %v\n%s", res.err, res.out)
	}
	second := filepath.Join(dir, "second.csv")
	res := runCmd(t, append(args, "--out", second)...)
	if res.err != nil {
		t.Fatalf("second run: %v\n%s", res.err, res.out)
	}
	if !strings.Contains(res.out, "2 had a URL that expires within") {
		t.Errorf("the summary does not say the two URLs were due to be minted again:\n%s", res.out)
	}
	for _, id := range []string{"uprof_k1", "uprof_k2"} {
		if got := sb.Stats().ByProfile[id]; got != 2 {
			t.Errorf("calls for %s = %d, want 2 (minted, then refused)", id, got)
		}
	}
	before, after := readCSV(t, first), readCSV(t, second)
	if len(after) != 2 {
		t.Fatalf("second run wrote %d rows, want 2", len(after))
	}
	for i, row := range after {
		checkCreated(t, row)
		if row["enrollment_url"] != before[i]["enrollment_url"] || row["expires_at"] != before[i]["expires_at"] {
			t.Errorf("row %d = %s expiring %s, want the first run's URL expiring %s",
				i, row["status"], row["expires_at"], before[i]["expires_at"])
		}
	}
}

// fleet starts a sandbox with cfg and one worker against it, on a queue
// and campaign of the test's own, and returns the test's Redis, that name,
// the Redis URL for enqueue, and the sandbox.
func fleet(t *testing.T, cfg sandbox.Config) (*redis.Client, string, string, *sandbox.Server) {
	t.Helper()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)
	startWorkers(t, rdb, name, api.URL, 1)
	return rdb, name, redisURLOf(t, rdb.Options().Addr, rdb.Options().DB), sb
}

// startWorkers runs n in-process workers on queue against the API at base.
func startWorkers(t *testing.T, rdb *redis.Client, queue, base string, n int) {
	t.Helper()
	startEndpointWorkers(t, rdb, queue, base, n, client.EnrollmentURL)
}

// startEndpointWorkers runs n in-process workers on queue that call
// endpoint of the API at base.
func startEndpointWorkers(t *testing.T, rdb *redis.Client, queue, base string, n int, endpoint client.Endpoint) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for range n {
		w, err := worker.New(worker.Config{
			Redis: rdb, Queue: queue, Concurrency: 8, Rate: 0, Fleet: true, Logger: quiet,
			Client: client.Config{APIKey: "k", BaseURL: base, Timeout: 5 * time.Second, Endpoint: endpoint},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Shutdown)
	}
	t.Cleanup(func() {
		insp := asynq.NewInspectorFromRedisClient(rdb)
		insp.DeleteQueue(queue, true)
		insp.Close()
	})
}

// TestRefresh runs a campaign whose URLs live 20 minutes, then refreshes
// it: a window of 10 minutes touches nothing, one of 30 minutes mints
// every URL again, and the store then holds the newest URL, one result
// per profile.
func TestRefresh(t *testing.T) {
	t.Parallel()
	rdb, name, url, sb := fleet(t, sandbox.Config{TTL: 20 * time.Minute})

	in := writeProfiles(t, 3)
	out := filepath.Join(t.TempDir(), "r.csv")
	if res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", in, "--wait", "--out", out); res.err != nil {
		t.Fatalf("run: %v\n%s", res.err, res.out)
	}
	ctx := context.Background()
	store := campaign.NewStore(rdb, 0)
	before, err := store.Results(ctx, name)
	if err != nil || len(before) != 3 {
		t.Fatalf("results before: %d, %v; want 3", len(before), err)
	}

	res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--refresh", "--within", "10m")
	if res.err != nil || !strings.Contains(res.out, "(within 10m0s): 0") {
		t.Fatalf("refresh --within 10m: %v\n%s", res.err, res.out)
	}
	res = runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--refresh", "--within", "30m")
	if res.err != nil || !strings.Contains(res.out, "(within 30m0s): 3") {
		t.Fatalf("refresh --within 30m: %v\n%s", res.err, res.out)
	}
	// The old URLs stay until the new ones replace them.
	var after []campaign.Result
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if after, err = store.Results(ctx, name); err != nil {
			t.Fatal(err)
		}
		if len(after) != 3 {
			t.Fatalf("results during the refresh: %d, want 3 (one per profile)", len(after))
		}
		replaced := 0
		for i := range after {
			if after[i].URL != before[i].URL {
				replaced++
			}
		}
		if replaced == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refresh not done: %d API calls, results %+v", sb.Stats().Requests, after)
		}
	}
	for i, r := range after {
		old := before[i]
		if r.ProfileID != old.ProfileID || r.Status != campaign.StatusCreated {
			t.Fatalf("result %d: %s %s, want %s created", i, r.ProfileID, r.Status, old.ProfileID)
		}
		if r.URL == old.URL || r.ExpiresAt.Before(old.ExpiresAt) {
			t.Errorf("%s: the store kept the old URL (expires %s, old %s)", r.ProfileID, r.ExpiresAt, old.ExpiresAt)
		}
		if r.Columns["email"] != old.Columns["email"] {
			t.Errorf("%s: email %q after refresh, want %q", r.ProfileID, r.Columns["email"], old.Columns["email"])
		}
		if got := sb.Stats().ByProfile[r.ProfileID]; got != 2 {
			t.Errorf("%s: calls %d, want 2", r.ProfileID, got)
		}
	}
	if p, _ := store.Progress(ctx, name); p.Total != 3 || p.Created != 3 {
		t.Errorf("progress %+v, want 3 profiles, 3 created", p)
	}
}

// TestActionURLEndpoint runs the same input through workers that call
// enrollment_url and workers that call action_urls: the same results in
// the same file shape, each route called once per profile.
func TestActionURLEndpoint(t *testing.T) {
	t.Parallel()
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	paths := map[string]int{} // route -> calls
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]]++
		mu.Unlock()
		sb.ServeHTTP(w, r)
	}))
	t.Cleanup(api.Close)
	rdb := redistest.New(t)
	url := redisURLOf(t, rdb.Options().Addr, rdb.Options().DB)
	in := writeProfiles(t, 20)

	files := map[client.Endpoint][]map[string]string{}
	for _, ep := range []client.Endpoint{client.EnrollmentURL, client.ActionURL} {
		name := redistest.Name(t) + "-" + string(ep)
		startEndpointWorkers(t, rdb, name, api.URL, 1, ep)
		out := filepath.Join(t.TempDir(), "r.csv")
		res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", in, "--wait", "--out", out)
		if res.err != nil {
			t.Fatalf("%s: %v\n%s", ep, res.err, res.out)
		}
		files[ep] = readCSV(t, out)
	}
	a, b := files[client.EnrollmentURL], files[client.ActionURL]
	if len(a) != 20 || len(b) != 20 {
		t.Fatalf("rows %d and %d, want 20 each", len(a), len(b))
	}
	for i := range a {
		checkCreated(t, b[i])
		for _, col := range []string{"user_profile_id", "email", "first_name", "status", "attempts"} {
			if a[i][col] != b[i][col] {
				t.Errorf("row %d %s: enrollment_url %q, action_url %q", i, col, a[i][col], b[i][col])
			}
		}
		if len(a[i]) != len(b[i]) {
			t.Errorf("row %d: %d columns and %d", i, len(a[i]), len(b[i]))
		}
	}
	if paths["enrollment_url"] != 20 || paths["action_urls"] != 20 {
		t.Errorf("calls by route %v, want 20 enrollment_url and 20 action_urls", paths)
	}
}

// TestLocalModeActionURL is the README's first command on the action_urls
// route.
func TestLocalModeActionURL(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "r.csv")
	res := runCmd(t, "--local", "--sandbox", "--endpoint", "action_url", "--csv", testdata+"profiles-25.csv", "--out", out)
	if res.err != nil {
		t.Fatalf("run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	rows := readCSV(t, out)
	if len(rows) != 25 {
		t.Fatalf("rows = %d, want 25", len(rows))
	}
	for _, r := range rows {
		checkCreated(t, r)
	}
}

// TestDelimiterFlag reads a semicolon-separated export: refused without
// --delimiter, naming the flag, and read with it.
func TestDelimiterFlag(t *testing.T) {
	t.Parallel()
	in := filepath.Join(t.TempDir(), "p.csv")
	os.WriteFile(in, []byte("user_profile_id;email\nuprof_a1;a@example.com\nuprof_b2;\"b;c@example.com\"\n"), 0o600)
	out := filepath.Join(t.TempDir(), "r.csv")

	res := runCmd(t, "--local", "--sandbox", "--csv", in, "--out", out)
	if res.err == nil || !strings.Contains(res.err.Error(), "line 1: ") || !strings.Contains(res.err.Error(), "read it with --delimiter ';'") ||
		!strings.Contains(res.err.Error(), "nothing was enqueued") {
		t.Fatalf("without --delimiter: err %v, want line 1 naming --delimiter ';' and nothing enqueued", res.err)
	}
	if strings.Contains(res.out, "rows read") {
		t.Errorf("the run got as far as enqueuing:\n%s", res.out)
	}

	res = runCmd(t, "--local", "--sandbox", "--delimiter", ";", "--csv", in, "--out", out)
	if res.err != nil {
		t.Fatalf("--delimiter ';': %v\n%s", res.err, res.out)
	}
	rows := readCSV(t, out)
	if len(rows) != 2 || rows[1]["email"] != "b;c@example.com" {
		t.Fatalf("rows %v, want 2 with b;c@example.com", rows)
	}
	for _, r := range rows {
		checkCreated(t, r)
	}
}

func TestExpiryWarning(t *testing.T) {
	t.Parallel()
	if got := expiryWarning(20000, 10, time.Hour, "c", false); got != "" {
		t.Errorf("20,000 at 10/s (33 min) within an hour: warned\n%s", got)
	}
	got := expiryWarning(40000, 10, time.Hour, "wave", false)
	for _, want := range []string{
		"40000 profiles at 10 calls/s take about 1h6m40s, but a URL lives about 1h0m0s",
		"the first URLs expire (or have under 10m0s left) before the last are minted",
		"a webhook sink", "at most 30000 profiles a wave",
		"enqueue --refresh --campaign wave --within 30m0s", "export --campaign wave",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warning lacks %q:\n%s", want, got)
		}
	}
	if got := expiryWarning(100, 0, time.Hour, "c", false); got != "" {
		t.Errorf("no rate: warned\n%s", got)
	}

	// A local run has no campaign left to refresh or export once it ends.
	got = expiryWarning(40000, 10, time.Hour, "wave", true)
	if !strings.Contains(got, "run the same command again") || strings.Contains(got, "--refresh") || strings.Contains(got, "export") {
		t.Errorf("local warning: want the re-run, not --refresh or export:\n%s", got)
	}
}

// TestLocalModeWarnsOfShortLivedURLs runs 25 profiles at 10 calls/s
// against a sandbox whose URLs live 2 s: the estimate (2.5 s) outlasts
// them, and the run says so before it starts.
func TestLocalModeWarnsOfShortLivedURLs(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "r.csv")
	res := runCmd(t, "--local", "--sandbox", "--sandbox-ttl", "2s", "--rate", "10", "--csv", testdata+"profiles-25.csv", "--out", out)
	if !strings.Contains(res.out, "25 profiles at 10 calls/s take about 2.5s, but a URL lives about 2s") {
		t.Errorf("no expiry warning:\n%s", res.out)
	}
	warn, summary := strings.Index(res.out, "warning:"), strings.Index(res.out, "wrote 25 rows")
	if warn < 0 || summary < 0 || warn > summary {
		t.Errorf("the warning does not come before the results:\n%s", res.out)
	}
}

// TestRetryFailedCountsEveryAttempt fails a profile, retries it on
// purpose, and fails it again: its attempts say 2, the calls made for it
// in this campaign, not 1.
func TestRetryFailedCountsEveryAttempt(t *testing.T) {
	t.Parallel()
	const id = "uprof_01T00000000000000000000000" // writeProfiles' first
	rdb, name, url, sb := fleet(t, sandbox.Config{NotFound: []string{id}})
	in := writeProfiles(t, 1)
	out := filepath.Join(t.TempDir(), "r.csv")
	if res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", in, "--wait", "--out", out); res.err == nil {
		t.Fatalf("run: no error, want the 404 profile failed\n%s", res.out)
	}
	store := campaign.NewStore(rdb, 0)
	ctx := context.Background()
	first, ok, err := store.Get(ctx, name, id)
	if err != nil || !ok || first.Status != campaign.StatusFailed || first.Attempts != 1 {
		t.Fatalf("first result %+v (%v, %v), want failed after 1 attempt", first, ok, err)
	}

	if res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--retry-failed"); res.err != nil {
		t.Fatalf("--retry-failed: %v\n%s", res.err, res.out)
	}
	var again campaign.Result
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if again, ok, err = store.Get(ctx, name, id); err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no result after --retry-failed")
		}
	}
	if calls := sb.Stats().ByProfile[id]; calls != 2 {
		t.Errorf("the sandbox got %d calls for %s, want 2", calls, id)
	}
	if again.Status != campaign.StatusFailed || again.Attempts != 2 {
		t.Errorf("after --retry-failed: %s after %d attempts, want failed after 2 (the calls made in all)", again.Status, again.Attempts)
	}
}

func TestEmptyInputSaysSo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	out := filepath.Join(dir, "out.csv")
	const earlier = "user_profile_id,enrollment_url,expires_at,status,error_type,error_message,request_id,attempts\r\n"
	if err := os.WriteFile(out, []byte(earlier), 0o600); err != nil {
		t.Fatal(err)
	}

	// No rows: a quiet day, exit 0, and the earlier --out is left alone.
	if err := os.WriteFile(in, []byte("user_profile_id,email\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCmd(t, "--local", "--sandbox", "--csv", in, "--out", out)
	if res.err != nil || !strings.Contains(res.out, "holds no rows: nothing to do ("+out+" left as it was)") {
		t.Errorf("no rows: err = %v, stdout %q; want success saying nothing to do", res.err, res.out)
	}
	if got, _ := os.ReadFile(out); string(got) != earlier {
		t.Errorf("no rows: --out became %q, want it untouched", got)
	}

	// An empty file, not even a header: no export at all, a failure.
	if err := os.WriteFile(in, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res = runCmd(t, "--local", "--sandbox", "--csv", in, "--out", out)
	if res.err == nil || !strings.Contains(res.err.Error(), "no header row: the input is empty") {
		t.Errorf("an empty file: err = %v, want 'no header row: the input is empty'", res.err)
	}
	if got, _ := os.ReadFile(out); string(got) != earlier {
		t.Errorf("an empty file: --out became %q, want it untouched", got)
	}

	// Rows but no valid id: the wrong file or column, a failure.
	if err := os.WriteFile(in, []byte("user_profile_id,email\r\nnot-an-id,a@example.com\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = runCmd(t, "--local", "--sandbox", "--csv", in, "--out", out)
	if want := `holds no valid profile id (check --id-column "user_profile_id")`; res.err == nil || !strings.Contains(res.err.Error(), want) {
		t.Errorf("no valid id: err = %v, want it to say %q", res.err, want)
	}
	if got, _ := os.ReadFile(out); string(got) != earlier {
		t.Errorf("no valid id: --out became %q, want it untouched", got)
	}
}

// TestFleetRefusesOutThatIsNotResults: --wait --out naming an existing
// file that is no results file (a customer list, say) is refused before
// anything is enqueued, as in local mode; the file is left alone.
func TestFleetRefusesOutThatIsNotResults(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	name := redistest.Name(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "customers.csv")
	const customers = "name,email\r\nAda,ada@example.com\r\n"
	if err := os.WriteFile(out, []byte(customers), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name,
		"--csv", "../../internal/source/testdata/profiles-25.csv", "--wait", "--out", out)
	if res.err == nil || !strings.Contains(res.err.Error(), "is not a results file") {
		t.Fatalf("err = %v, want a refusal naming --out", res.err)
	}
	if got, _ := os.ReadFile(out); string(got) != customers {
		t.Errorf("--out became %q, want it untouched", got)
	}
	rdb := redistest.New(t)
	if n, err := rdb.Exists(context.Background(), "asynq:{"+name+"}:pending").Result(); err != nil || n != 0 {
		t.Errorf("pending list exists = %d (err %v), want nothing enqueued", n, err)
	}
}

// TestLocalCheckpoint: a local run writes --out while it goes on, so that
// a run killed mid-way (where nothing runs at its end) leaves the URLs
// minted so far for the next run to carry over.
func TestLocalCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.csv")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := writeProfiles(t, 60)
	done := make(chan error, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		done <- run(ctx, []string{"--sandbox", "--local", "--csv", in, "--out", out,
			"--rate", "10", "--checkpoint", "200ms"}, strings.NewReader(""), &stdout, &stderr)
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(out)
		if err == nil && bytes.Contains(data, []byte(",created,")) && bytes.Contains(data, []byte(",pending,")) {
			break // a checkpoint: some created, the rest pending, mid-run
		}
		select {
		case err := <-done:
			t.Fatalf("the run ended (%v) before any checkpoint showed in %s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint in %s after 20s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode = %v (err %v), want 0600", fi.Mode().Perm(), err)
	}

	// A second run writing the same --out meanwhile is refused before it
	// enqueues anything: the two would overwrite each other's links.
	second := runCmd(t, "--sandbox", "--local", "--csv", writeProfiles(t, 2), "--out", out)
	if second.err == nil || !strings.Contains(second.err.Error(), "another run is writing it") ||
		!strings.Contains(second.err.Error(), "nothing was enqueued") {
		t.Errorf("a second run on the same --out: err %v, want it refused, nothing enqueued", second.err)
	}
	if data, _ := os.ReadFile(out); !bytes.Contains(data, []byte(",pending,")) {
		t.Errorf("%s after the refused run does not hold the first run's checkpoint:\n%s", out, data)
	}
	cancel()
	<-done
}
