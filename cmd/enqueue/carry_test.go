package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/sandbox"
)

// localAPI serves a sandbox for local runs that need its counts, and
// returns the flags that point a run at it.
func localAPI(t *testing.T) (*sandbox.Server, []string) {
	t.Helper()
	sb, url := sandboxServer(t)
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("sandbox-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return sb, []string{"--local", "--base-url", url, "--api-key-file", key}
}

// rawRows returns a CSV file's data lines as written, by profile id.
func rawRows(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
	field := func(line string, i int) string {
		rec, err := csv.NewReader(strings.NewReader(line)).Read()
		if err != nil || i >= len(rec) {
			t.Fatalf("%s: line %q: %v", path, line, err)
		}
		return rec[i]
	}
	idCol := -1
	for i, h := range strings.Split(lines[0], ",") {
		if h == "user_profile_id" {
			idCol = i
		}
	}
	out := map[string]string{}
	for _, line := range lines[1:] {
		out[field(line, idCol)] = line
	}
	return out
}

// TestLocalRerunKeepsURLsOfTheFile edits a finished run's file so that
// ten rows are still good, ten pending, five failed and five about to
// expire; running the same command again calls the API for the twenty
// others only, and keeps the ten rows byte for byte.
func TestLocalRerunKeepsURLsOfTheFile(t *testing.T) {
	t.Parallel()
	sb, api := localAPI(t)
	in := writeProfiles(t, 30)
	out := filepath.Join(t.TempDir(), "r.csv")
	args := append(api, "--campaign", "rerun", "--rate", "0", "--csv", in, "--out", out)
	if res := runCmd(t, args...); res.err != nil {
		t.Fatalf("first run: %v\n%s%s", res.err, res.out, res.errOut)
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	soon := time.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339)
	for i, row := range rows[1:] {
		switch {
		case i >= 10 && i < 20:
			row[col["enrollment_url"]], row[col["expires_at"]], row[col["status"]] = "", "", "pending"
			row[col["request_id"]], row[col["attempts"]] = "", ""
		case i >= 20 && i < 25:
			row[col["enrollment_url"]], row[col["expires_at"]], row[col["status"]] = "", "", "failed"
			row[col["error_type"]] = "api_error"
		case i >= 25:
			row[col["expires_at"]] = soon
		}
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.UseCRLF = true
	w.WriteAll(rows)
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	before := rawRows(t, out)

	sb.Reset()
	res := runCmd(t, args...)
	if res.err != nil {
		t.Fatalf("second run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	if got := sb.Stats().Requests; got != 20 {
		t.Errorf("second run made %d calls, want 20 (10 pending, 5 failed, 5 expiring)", got)
	}
	for _, want := range []string{"enqueued          20", "already enqueued  10", "10 were carried over from the existing",
		"5 had a URL that expires within", "30 created, 0 failed"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("summary lacks %q:\n%s", want, res.out)
		}
	}
	after := rawRows(t, out)
	for i, row := range rows[1:] {
		id := row[col["user_profile_id"]]
		if i < 10 && after[id] != before[id] {
			t.Errorf("row %d changed:\n got %s\nwant %s", i, after[id], before[id])
		}
		if i >= 10 && after[id] == before[id] {
			t.Errorf("row %d was not minted again: %s", i, after[id])
		}
	}
	for _, r := range readCSV(t, out) {
		checkCreated(t, r)
	}
}

// TestLocalRerunAfterInterruption interrupts a local run, then runs the
// same command again: it calls the API only for the profiles the file
// has as pending.
func TestLocalRerunAfterInterruption(t *testing.T) {
	t.Parallel()
	sb, api := localAPI(t)
	in := writeProfiles(t, 100)
	out := filepath.Join(t.TempDir(), "r.csv")
	args := append(api, "--campaign", "interrupted", "--rate", "50", "--csv", in, "--out", out)

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, args, nil, &stdout, &stderr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the interruption\n%s", err, stdout.String())
	}
	before := rawRows(t, out)
	pending := 0
	for _, r := range readCSV(t, out) {
		if r["status"] == "pending" {
			pending++
		}
	}
	if pending == 0 || pending == 100 {
		t.Fatalf("pending %d of 100 after the interruption, want some done and some not", pending)
	}

	sb.Reset()
	res := runCmd(t, args...)
	if res.err != nil {
		t.Fatalf("second run: %v\n%s%s", res.err, res.out, res.errOut)
	}
	if got := sb.Stats().Requests; got != int64(pending) {
		t.Errorf("second run made %d calls, want %d (the pending profiles)", got, pending)
	}
	for id, line := range rawRows(t, out) {
		if old := before[id]; strings.Contains(old, ",created,") && old != line {
			t.Errorf("%s changed:\n got %s\nwant %s", id, line, old)
		}
	}
}

// TestLocalInterruptStopsCalls interrupts a slow local run: no call
// arrives after the interruption but those already in flight, the run
// ends at once, and its message counts what the file holds.
func TestLocalInterruptStopsCalls(t *testing.T) {
	t.Parallel()
	sb, api := localAPI(t)
	in := writeProfiles(t, 100)
	out := filepath.Join(t.TempDir(), "r.csv")
	args := append(api, "--rate", "2", "--workers", "10", "--csv", in, "--out", out)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stopped time.Time
	time.AfterFunc(1250*time.Millisecond, func() { // between two turns of the limiter
		stopped = time.Now()
		cancel()
	})
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, nil, &stdout, &stderr)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the interruption\n%s", err, stdout.String())
	}
	if d := time.Since(stopped); d > time.Second {
		t.Errorf("the run ended %s after the interruption, want under 1s", d)
	}
	if last := sb.Stats().LastAt; last.After(stopped.Add(200 * time.Millisecond)) {
		t.Errorf("a call arrived %s after the interruption, want none", last.Sub(stopped))
	}

	created := 0
	for _, r := range readCSV(t, out) {
		if r["status"] == "created" {
			created++
		}
	}
	if want := fmt.Sprintf("interrupted: %d of 100 profiles done", created); !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want %q (the file has %d created)", err, want, created)
	}
}
