package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/sandbox"
)

// setupQueue returns the test's Redis, a queue and campaign name of its
// own (deleted at the end) and the Redis URL for the command line.
func setupQueue(t *testing.T) (*redis.Client, string, string) {
	t.Helper()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	redistest.DeleteQueueAtEnd(t, rdb, name)
	return rdb, name, redisURLOf(t, rdb.Options().Addr, rdb.Options().DB)
}

func TestExpandDate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 23, 30, 0, 0, time.FixedZone("UTC-5", -5*3600)) // 2026-12-04 in UTC
	for in, want := range map[string]string{
		"onboarding-{date}":  "onboarding-2026-12-04",
		"{date}.wave-{date}": "2026-12-04.wave-2026-12-04",
		"plain":              "plain",
	} {
		if got := expandDate(in, now); got != want {
			t.Errorf("expandDate(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDatedCampaignRunTwiceEnqueuesOnce is the cron case: the same dated
// command line, run twice the same day, is one campaign, and the second
// run enqueues nothing.
func TestDatedCampaignRunTwiceEnqueuesOnce(t *testing.T) {
	t.Parallel()
	rdb, name, url := setupQueue(t)
	in := writeProfiles(t, 40)
	args := []string{"--redis-url", url, "--queue", name, "--campaign", name + "-{date}", "--csv", in}
	today := name + "-" + time.Now().UTC().Format(time.DateOnly)

	first := runCmd(t, args...)
	if first.err != nil {
		t.Fatalf("first run: %v\n%s%s", first.err, first.out, first.errOut)
	}
	second := runCmd(t, args...)
	if second.err != nil {
		t.Fatalf("second run: %v\n%s%s", second.err, second.out, second.errOut)
	}
	for _, c := range []struct {
		run  result
		want []string
	}{
		{first, []string{"campaign " + today + "\n", "enqueued          40\n", "already enqueued  0\n"}},
		{second, []string{"campaign " + today + "\n", "enqueued          0\n", "already enqueued  40\n"}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.run.out, w) {
				t.Errorf("summary lacks %q:\n%s", w, c.run.out)
			}
		}
	}
	// Only a run that enqueued something says it did.
	const enqueuedLine = "enqueued for the workers on queue"
	if !strings.Contains(first.out, enqueuedLine) || strings.Contains(second.out, enqueuedLine) {
		t.Errorf("%q in the first run: %v (want true), in the second: %v (want false)", enqueuedLine,
			strings.Contains(first.out, enqueuedLine), strings.Contains(second.out, enqueuedLine))
	}

	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	qi, err := insp.GetQueueInfo(name)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Pending != 40 {
		t.Errorf("pending tasks = %d, want 40 (one per profile, both runs)", qi.Pending)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	rdb, name, url := setupQueue(t)
	base := []string{"--redis-url", url, "--queue", name, "--campaign", name}

	res := runCmd(t, append(base, "--status", "--status-sample", "0")...)
	if res.err == nil || !strings.Contains(res.err.Error(), "no profiles") {
		t.Fatalf("status of an unknown campaign: err = %v, want one saying it has no profiles", res.err)
	}

	if res := runCmd(t, append(base, "--csv", writeProfiles(t, 30))...); res.err != nil {
		t.Fatalf("enqueue: %v\n%s", res.err, res.out)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	if err := insp.PauseQueue(name); err != nil {
		t.Fatal(err)
	}

	res = runCmd(t, append(base, "--status", "--status-sample", "0", "--json")...)
	if res.err != nil {
		t.Fatalf("status: %v\n%s", res.err, res.errOut)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(res.out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, res.out)
	}
	want := statusReport{Campaign: name, Total: 30, Pending: 30, Queue: name, QueueFound: true,
		QueuePaused: true, QueueSize: 30, QueueQueued: 30, CampaignQueue: name}
	if rep != want {
		t.Errorf("status = %+v\nwant     %+v", rep, want)
	}

	res = runCmd(t, append(base, "--status", "--status-sample", "0")...)
	for _, w := range []string{"total    30\n", "created  0\n", "failed   0\n", "pending  30\n", "PAUSED", "--resume --queue " + name} {
		if !strings.Contains(res.out, w) {
			t.Errorf("status lacks %q:\n%s", w, res.out)
		}
	}

	// --resume unpauses; a second --resume finds nothing to do and
	// succeeds too.
	for _, want := range []string{"queue %q resumed\n", "queue %q is not paused: nothing to resume\n"} {
		res = runCmd(t, "--resume", "--redis-url", url, "--queue", name)
		if want := fmt.Sprintf(want, name); res.err != nil || res.out != want {
			t.Errorf("--resume: err %v, out %q; want %q", res.err, res.out, want)
		}
	}
	// A queue this Redis does not have is a mistake in --queue.
	res = runCmd(t, "--resume", "--redis-url", url, "--queue", name+"-typo")
	if _, ok := errors.AsType[usageError](res.err); !ok || !strings.Contains(res.err.Error(), "no such queue") {
		t.Errorf("--resume of a missing queue: err %v, want a usage error saying there is no such queue", res.err)
	}
	startWorkers(t, rdb, name, sandboxURL(t), 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		res = runCmd(t, append(base, "--status", "--status-sample", "100ms")...)
		if strings.Contains(res.out, "created  30\n") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range []string{"created  30\n", "pending  0\n", ": running\n", "done: every profile has a result"} {
		if !strings.Contains(res.out, w) {
			t.Errorf("status after the workers lacks %q:\n%s", w, res.out)
		}
	}

	// Profiles that a killed enqueue counted but never enqueued: no task
	// will ever run for them, and --status says what to do.
	if _, err := campaign.NewStore(rdb, time.Hour).Admit(context.Background(), name,
		[]string{"uprof_01Stranded0000000000001", "uprof_01Stranded0000000000002"}); err != nil {
		t.Fatal(err)
	}
	res = runCmd(t, append(base, "--status", "--status-sample", "0", "--json")...)
	if err := json.Unmarshal([]byte(res.out), &rep); err != nil || rep.Stranded != 2 || rep.Pending != 2 || rep.Done {
		t.Errorf("status --json with 2 profiles without a task: %+v (%v), want stranded 2, pending 2, not done", rep, err)
	}
	res = runCmd(t, append(base, "--status", "--status-sample", "0")...)
	if want := "2 profiles have no result and queue " + name + " has no task left to run"; !strings.Contains(res.out, want) ||
		!strings.Contains(res.out, "run the same input again") {
		t.Errorf("status with 2 profiles without a task lacks %q:\n%s", want, res.out)
	}
}

// TestFleetNotesStranded: --wait takes the campaign's pending profiles
// for taskless after a few checks in a row that find the queue with no
// task to run; a task to run, or no profile pending, starts the count
// again.
func TestFleetNotesStranded(t *testing.T) {
	t.Parallel()
	insp := &fakeInspector{}
	var notes fleetNotes
	check := func(pending int64, queued int) int64 {
		insp.info.Pending = queued
		return notes.checkStranded(insp, "q1", pending)
	}
	for i := range strandedAfter - 1 {
		if got := check(7, 0); got != 0 {
			t.Fatalf("check %d of an idle queue: %d stranded, want none yet", i+1, got)
		}
	}
	if got := check(7, 1); got != 0 {
		t.Errorf("a task to run: %d stranded, want none", got)
	}
	for range strandedAfter - 1 {
		check(7, 0)
	}
	if got := check(7, 0); got != 7 {
		t.Errorf("the %dth idle check in a row: %d stranded, want 7", strandedAfter, got)
	}
	notes = fleetNotes{}
	for range strandedAfter + 1 {
		if got := check(0, 0); got != 0 {
			t.Errorf("nothing pending: %d stranded, want none", got)
		}
	}
	if msg := (strandedError{n: 7, queue: "q1"}).Error(); !strings.HasPrefix(msg, "7 profiles have no result and queue q1 has no task left to run") ||
		!strings.Contains(msg, "run the same input again") {
		t.Errorf("strandedError = %q", msg)
	}
}

func TestStatusUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--status"}, "--campaign"},
		{[]string{"--local", "--status", "--campaign", "x"}, "--redis-url"},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--json", "--campaign", "x"}, "--status"},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--status", "--campaign", "x", "--status-sample", "-1s"}, "--status-sample"},
	} {
		res := runCmd(t, c.args...)
		if exitCode(res.err) != 2 || !strings.Contains(res.err.Error(), c.flag) {
			t.Errorf("%v: err = %v (exit %d), want a usage error naming %s", c.args, res.err, exitCode(res.err), c.flag)
		}
	}
}

func TestPrintStatusETA(t *testing.T) {
	t.Parallel()
	eta := 90.0
	var b bytes.Buffer
	printStatus(&b, statusReport{Campaign: "c", Total: 100, Created: 10, Pending: 90, Queue: "q", QueueFound: true,
		RatePerSecond: 1, ETASeconds: &eta}, 2*time.Second)
	if !strings.Contains(b.String(), "rate 1.0/s over 2s, about 1m30s left") {
		t.Errorf("status:\n%s", b.String())
	}
}

func TestProgressLinesOffTerminal(t *testing.T) {
	t.Parallel()
	var lines bytes.Buffer
	p := newProgress(nil, &lines, "minting", "profiles", 100)
	p.set(0, "")
	p.lastLine = time.Now().Add(-progressEvery) // as if 5 s went by
	p.start = time.Now().Add(-10 * time.Second)
	p.set(50, "2 failed")
	p.finish()
	got := lines.String()
	if !strings.HasPrefix(got, "minting: 50/100 (2 failed), 5.0 profiles/s, about 10s left\n") {
		t.Errorf("progress lines:\n%s", got)
	}
}

func TestProgressBarOnTerminal(t *testing.T) {
	t.Parallel()
	var bar, lines bytes.Buffer
	p := newProgress(&bar, &lines, "enqueue", "rows", 10)
	p.set(10, "")
	p.note("a note")
	p.finish()
	if !strings.Contains(bar.String(), "10/10") {
		t.Errorf("bar output lacks 10/10: %q", bar.String())
	}
	if lines.String() != "a note\n" {
		t.Errorf("lines = %q, want only the note", lines.String())
	}
}

// sandboxURL serves the stand-in API for the test's lifetime.
func sandboxURL(t *testing.T) string {
	t.Helper()
	_, url := sandboxServer(t)
	return url
}

// sandboxServer serves the stand-in API for the test's lifetime, and
// returns it, for its counts, with its URL.
func sandboxServer(t *testing.T) (*sandbox.Server, string) {
	t.Helper()
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)
	return sb, api.URL
}

// fakeInspector answers fleetNotes' reads from its fields.
type fakeInspector struct {
	info    asynq.QueueInfo
	servers []*asynq.ServerInfo
	active  []*asynq.TaskInfo
}

func (f *fakeInspector) GetQueueInfo(string) (*asynq.QueueInfo, error) { return &f.info, nil }
func (f *fakeInspector) Servers() ([]*asynq.ServerInfo, error)         { return f.servers, nil }
func (f *fakeInspector) ListActiveTasks(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error) {
	return f.active, nil
}

// TestFleetNotesOrphanedTasks: a --wait run says when a stopped worker
// left tasks running, which its estimate does not count, once each time
// their number grows, and when they are back in the queue.
func TestFleetNotesOrphanedTasks(t *testing.T) {
	t.Parallel()
	var lines bytes.Buffer
	bar := newProgress(nil, &lines, "minting", "profiles", 100)
	insp := &fakeInspector{servers: []*asynq.ServerInfo{{Queues: map[string]int{"q1": 1}}}}
	var notes fleetNotes
	step := func(active, orphaned int) string {
		t.Helper()
		insp.info.Active, insp.active = active, nil
		for i := range active {
			insp.active = append(insp.active, &asynq.TaskInfo{ID: fmt.Sprint(i), IsOrphaned: i < orphaned})
		}
		lines.Reset()
		notes.check(insp, "q1", bar)
		return lines.String()
	}

	if got := step(10, 0); got != "" {
		t.Errorf("10 live tasks: noted %q, want nothing", got)
	}
	if got := step(10, 3); !strings.HasPrefix(got, `3 tasks of queue "q1" were left running by a worker that stopped`) ||
		!strings.Contains(got, "the time left shown does not count them") {
		t.Errorf("3 orphaned tasks: noted %q", got)
	}
	if got := step(10, 3); got != "" {
		t.Errorf("the same 3 again: noted %q, want nothing", got)
	}
	if got := step(12, 5); !strings.HasPrefix(got, "5 tasks") {
		t.Errorf("5 orphaned tasks: noted %q, want a note of 5", got)
	}
	if got := step(4, 0); got != "the tasks a stopped worker left are back in queue \"q1\"\n" {
		t.Errorf("none orphaned any more: noted %q", got)
	}
	if got := step(0, 0); got != "" {
		t.Errorf("an idle queue: noted %q, want nothing", got)
	}
}
