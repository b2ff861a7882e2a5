package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/producer"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/sandbox"
	"github.com/enrollq/enrollq/internal/source"
	"github.com/enrollq/enrollq/internal/worker"
)

// bundle is one test's Redis, campaign and output directory.
type bundle struct {
	rdb   *redis.Client
	url   string
	name  string
	store *campaign.Store
	dir   string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	rdb := redistest.New(t)
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = fmt.Sprintf("redis://%s/%d", rdb.Options().Addr, rdb.Options().DB)
	}
	return &bundle{rdb: rdb, url: url, name: redistest.Name(t), store: campaign.NewStore(rdb, time.Hour), dir: t.TempDir()}
}

// put stores a result for a profile of the campaign, as a worker would.
func (b *bundle) put(t *testing.T, r campaign.Result) {
	t.Helper()
	ctx := context.Background()
	r.Campaign = b.name
	if _, err := b.store.SetColumns(ctx, b.name, []string{"email", "first_name"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Admit(ctx, b.name, []string{r.ProfileID}); err != nil {
		t.Fatal(err)
	}
	if r.Status == "" {
		return // admitted, no result yet
	}
	if _, err := b.store.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
}

func created(id string, seq int64, email string, ttl time.Duration) campaign.Result {
	return campaign.Result{
		ProfileID: id, Seq: seq, Columns: map[string]string{"email": email, "first_name": "N" + id},
		URL: "https://platform.claude.com/user-profiles/enrollment/tok" + id, ExpiresAt: time.Now().Add(ttl).Truncate(time.Second),
		Status: campaign.StatusCreated, RequestID: "req_" + id, Attempts: 1, FinishedAt: time.Now(),
	}
}

type result struct {
	out, errOut string
	err         error
}

func (b *bundle) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--redis-url", b.url, "--campaign", b.name}, args...)
	err := run(ctx, args, &stdout, &stderr)
	return result{stdout.String(), stderr.String(), err}
}

// readCSV reads a results file as the header and rows keyed by it.
func readCSV(t *testing.T, path string) ([]string, []map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(data, []byte("\uFEFF")) {
		t.Errorf("%s starts with a byte order mark", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, st.Mode().Perm())
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
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
	return rows[0], out
}

func TestExportLeavesOutURLsThatExpireTooSoon(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 5 {
		b.put(t, created(fmt.Sprintf("uprof_s%d", i), int64(i), fmt.Sprintf("u%d@example.com", i), 2*time.Minute))
	}
	out := filepath.Join(b.dir, "results.csv")
	res := b.run(t, "--out", out, "--min-validity", "5m")
	if res.err != nil {
		t.Fatalf("export: %v\n%s", res.err, res.errOut)
	}
	_, rows := readCSV(t, out)
	if len(rows) != 5 {
		t.Fatalf("rows = %d, want 5", len(rows))
	}
	for _, r := range rows {
		if r["status"] != "expired" || r["enrollment_url"] != "" || r["expires_at"] != "" {
			t.Errorf("%s: status %q url %q expires_at %q, want expired without a URL", r["user_profile_id"], r["status"], r["enrollment_url"], r["expires_at"])
		}
		if r["error_type"] != "url_expires_too_soon" || !strings.Contains(r["error_message"], "less than 5m0s") {
			t.Errorf("%s: error %q %q, want url_expires_too_soon naming 5m0s", r["user_profile_id"], r["error_type"], r["error_message"])
		}
	}
	for _, want := range []string{
		"left out 5 URLs (status expired): 0 had expired, 5 expire within --min-validity 5m0s",
		"enqueue --refresh --campaign " + b.name + " --within 5m0s",
		"created 0, failed 0, expired 5, pending 0",
	} {
		if !strings.Contains(res.out, want) {
			t.Errorf("output lacks %q:\n%s", want, res.out)
		}
	}
	if strings.Contains(res.out+res.errOut, "tokuprof") {
		t.Errorf("a URL reached the output:\n%s%s", res.out, res.errOut)
	}

	// The same URLs with the default margin (10m) are left out too; with
	// 1m they are handed on.
	res = b.run(t, "--out", out, "--min-validity", "1m")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if _, rows := readCSV(t, out); rows[0]["status"] != "created" || rows[0]["enrollment_url"] == "" {
		t.Errorf("with --min-validity 1m: row %v, want created with its URL", rows[0])
	}
}

func TestExportFailuresApart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	email := " Mixed.Case+tag@Example.COM " // kept exactly as it came
	b.put(t, created("uprof_ok1", 1, email, time.Hour))
	b.put(t, created("uprof_ok2", 2, "b@example.com", time.Hour))
	b.put(t, campaign.Result{ProfileID: "uprof_bad", Seq: 3, Status: campaign.StatusFailed, ErrorType: "not_found_error",
		ErrorMessage: "no such profile", RequestID: "req_x", Attempts: 1, Columns: map[string]string{"email": "c@example.com"}})
	b.put(t, created("uprof_old", 4, "d@example.com", -time.Minute))
	b.put(t, campaign.Result{ProfileID: "uprof_wait"}) // admitted, no result

	out, failed := filepath.Join(b.dir, "results.csv"), filepath.Join(b.dir, "failed.csv")
	res := b.run(t, "--out", out, "--failures", failed)
	if res.err != nil {
		t.Fatalf("export: %v\n%s", res.err, res.errOut)
	}
	header, rows := readCSV(t, out)
	want := "email,first_name,user_profile_id,enrollment_url,expires_at,status,error_type,error_message,request_id,attempts"
	if got := strings.Join(header, ","); got != want {
		t.Errorf("header %s, want %s", got, want)
	}
	if len(rows) != 2 || rows[0]["user_profile_id"] != "uprof_ok1" || rows[1]["user_profile_id"] != "uprof_ok2" {
		t.Fatalf("results rows %v, want uprof_ok1 and uprof_ok2", rows)
	}
	if rows[0]["email"] != email {
		t.Errorf("email %q, want %q unchanged", rows[0]["email"], email)
	}
	_, frows := readCSV(t, failed)
	got := map[string]string{}
	for _, r := range frows {
		got[r["user_profile_id"]] = r["status"] + "/" + r["error_type"]
		if r["enrollment_url"] != "" {
			t.Errorf("%s: failures file holds a URL", r["user_profile_id"])
		}
	}
	wantF := map[string]string{"uprof_bad": "failed/not_found_error", "uprof_old": "expired/url_expired", "uprof_wait": "pending/"}
	if fmt.Sprint(got) != fmt.Sprint(wantF) {
		t.Errorf("failures %v, want %v", got, wantF)
	}
	for _, want := range []string{"wrote 2 rows to " + out, "and 3 rows without a usable URL to " + failed,
		"created 2, failed 1, expired 1, pending 1", "1 had expired", "1 profiles have no result yet"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("output lacks %q:\n%s", want, res.out)
		}
	}
}

func TestExportWarnsBeforeSendTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.put(t, created("uprof_a", 1, "a@example.com", time.Hour))
	b.put(t, created("uprof_b", 2, "b@example.com", 3*time.Hour))
	out := filepath.Join(b.dir, "r.jsonl")

	res := b.run(t, "--out", out, "--send-at", "2h")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !strings.Contains(res.out, "warning: 1 of the 2 URLs handed on expire before the send time") ||
		!strings.Contains(res.out, "--within 2h10m0s") {
		t.Errorf("output lacks the send-time warning:\n%s", res.out)
	}

	at := time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	if res = b.run(t, "--out", out, "--send-at", at); res.err != nil || strings.Contains(res.out, "warning") {
		t.Errorf("send at %s: err %v, output\n%s\nwant no warning", at, res.err, res.out)
	}
}

func TestExportUsageErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	link := filepath.Join(b.dir, "link.csv") // a link to --out's file
	if err := os.Symlink(filepath.Join(b.dir, "e.csv"), link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--out", "x.txt"}, "--out"},
		{[]string{"--out", "a.csv", "--failures", "a.csv"}, "--failures"},
		{[]string{"--out", filepath.Join(b.dir, "e.csv"), "--failures", link}, "--failures"},
		{[]string{"--out", "./a.csv", "--failures", "a.csv"}, "--failures"},
		{[]string{"--out", "a.csv", "--min-validity", "-1m"}, "--min-validity"},
		{[]string{"--out", "a.csv", "--send-at", "tomorrow"}, "--send-at"},
		{[]string{"--out", "a.csv", "--send-at", "2020-01-01T00:00:00Z"}, "--send-at"},
		{[]string{"--out", "a.csv", "--campaign", "a b"}, "--campaign"},
		{[]string{"--campaign", b.name}, "--out"},
	}
	for _, tt := range tests {
		res := b.run(t, tt.args...)
		var u usageError
		if !errors.As(res.err, &u) || !strings.Contains(res.err.Error(), tt.want) {
			t.Errorf("%v: err %v, want a usage error naming %s", tt.args, res.err, tt.want)
		}
	}

	res := b.run(t, "--out", filepath.Join(b.dir, "r.csv"))
	if res.err == nil || !strings.Contains(res.err.Error(), "has no profiles") {
		t.Errorf("unknown campaign: err %v, want one saying it has no profiles", res.err)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "r.csv")); !os.IsNotExist(err) {
		t.Errorf("unknown campaign: --out was written (%v)", err)
	}
}

// TestExportLeavesAFileThatIsNotResults: an --out that exists and is no
// results file (a customer list named by mistake) is refused and left as
// it was, as enqueue does.
func TestExportLeavesAFileThatIsNotResults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.put(t, created("uprof_ok1", 1, "a@example.com", time.Hour))
	list := filepath.Join(b.dir, "customers.csv")
	const customers = "email,name\r\na@example.com,A\r\n"
	if err := os.WriteFile(list, []byte(customers), 0o600); err != nil {
		t.Fatal(err)
	}
	res := b.run(t, "--out", list)
	if res.err == nil || !strings.Contains(res.err.Error(), "not a results file") {
		t.Errorf("export over a customer list: err %v, want it refused as not a results file", res.err)
	}
	if got, _ := os.ReadFile(list); string(got) != customers {
		t.Errorf("the customer list became %q", got)
	}
	out := filepath.Join(b.dir, "r.csv")
	for i := range 2 { // a results file is written again
		if res := b.run(t, "--out", out); res.err != nil {
			t.Fatalf("export %d: %v", i+1, res.err)
		}
	}
}

// TestExportAfterShortTTLCampaign runs a real campaign (producer, worker,
// sandbox whose URLs live 2 minutes) and exports it with --min-validity
// 5m: every URL is left out, and the output says why.
func TestExportAfterShortTTLCampaign(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sb, err := sandbox.New(sandbox.Config{TTL: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := worker.New(worker.Config{
		Redis: b.rdb, Queue: b.name, Concurrency: 8, Fleet: true, Logger: quiet,
		Client: client.Config{APIKey: "k", BaseURL: api.URL, Timeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Shutdown()
		insp := asynq.NewInspectorFromRedisClient(b.rdb)
		insp.DeleteQueue(b.name, true)
		insp.Close()
	})

	var in strings.Builder
	in.WriteString("user_profile_id,Email\n")
	for i := range 20 {
		fmt.Fprintf(&in, "uprof_t%03d,u%d@example.com\n", i, i)
	}
	recs, err := source.NewCSV(strings.NewReader(in.String()), source.CSVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := producer.Enqueue(ctx, producer.Config{Redis: b.rdb, Queue: b.name, Campaign: b.name, Logger: quiet}, recs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := b.store.Progress(ctx, b.name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Total == 20 && p.Pending() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign not done: %+v", p)
		}
		time.Sleep(50 * time.Millisecond)
	}

	out := filepath.Join(b.dir, "results.csv")
	res := b.run(t, "--out", out, "--min-validity", "5m")
	if res.err != nil {
		t.Fatalf("export: %v\n%s", res.err, res.errOut)
	}
	_, rows := readCSV(t, out)
	if len(rows) != 20 {
		t.Fatalf("rows = %d, want 20", len(rows))
	}
	for _, r := range rows {
		if r["status"] != "expired" || r["enrollment_url"] != "" || r["error_type"] != "url_expires_too_soon" {
			t.Errorf("%s: %q %q %q, want expired, no URL, url_expires_too_soon", r["user_profile_id"], r["status"], r["enrollment_url"], r["error_type"])
		}
	}
	if !strings.Contains(res.out, "left out 20 URLs (status expired): 0 had expired, 20 expire within --min-validity 5m0s") {
		t.Errorf("output does not say why the URLs were left out:\n%s", res.out)
	}
}
