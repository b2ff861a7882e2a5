package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/tasks"
	"github.com/enrollq/enrollq/internal/worker"
)

// queueBundle is a campaign of three profiles enqueued on a queue of the
// test's own (not the default one), whose tasks the "workers" have run:
// the tasks are gone and each profile has a result.
type queueBundle struct {
	rdb   *redis.Client
	insp  *asynq.Inspector
	store *campaign.Store
	name  string // the queue's and the campaign's
	url   string
	ids   []string
}

func setupCampaignOnQueue(t *testing.T, status campaign.Status) queueBundle {
	t.Helper()
	rdb, name, url := setupQueue(t)
	b := queueBundle{rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb), store: campaign.NewStore(rdb, 0), name: name, url: url}
	t.Cleanup(func() { b.insp.Close() })
	if res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", writeProfiles(t, 3)); res.err != nil {
		t.Fatalf("enqueue: %v\n%s", res.err, res.out)
	}
	if _, err := b.insp.DeleteAllPendingTasks(name); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		id := fmt.Sprintf("uprof_01T%023d", i)
		b.ids = append(b.ids, id)
		r := campaign.Result{Campaign: name, ProfileID: id, Seq: int64(i + 1), Status: status, FinishedAt: time.Now()}
		if status == campaign.StatusCreated {
			r.URL, r.ExpiresAt = "https://example.com/e/"+id, time.Now().Add(5*time.Minute)
		}
		if _, err := b.store.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
		// A run before the fix put its tasks on the default queue: take
		// those, and only those, off it again.
		t.Cleanup(func() { b.insp.DeleteTask(worker.DefaultQueue, tasks.TaskID(name, id)) })
	}
	return b
}

func (b queueBundle) statusJSON(t *testing.T, extra ...string) statusReport {
	t.Helper()
	res := runCmd(t, append([]string{"--redis-url", b.url, "--campaign", b.name, "--status", "--status-sample", "0", "--json"}, extra...)...)
	if res.err != nil {
		t.Fatalf("status %v: %v\n%s", extra, res.err, res.errOut)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(res.out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, res.out)
	}
	return rep
}

// TestRequeueUsesCampaignQueue: --refresh and --retry-failed without
// --queue put the tasks on the queue the campaign was enqueued on, and
// refuse a --queue that names another.
func TestRequeueUsesCampaignQueue(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		op     []string
		status campaign.Status
	}{
		{[]string{"--refresh", "--within", "10m"}, campaign.StatusCreated},
		{[]string{"--retry-failed"}, campaign.StatusFailed},
	} {
		t.Run(c.op[0], func(t *testing.T) {
			t.Parallel()
			b := setupCampaignOnQueue(t, c.status)

			other := b.name + "-other"
			res := runCmd(t, append([]string{"--redis-url", b.url, "--campaign", b.name, "--queue", other}, c.op...)...)
			if exitCode(res.err) != 2 || !strings.Contains(fmt.Sprint(res.err), other) || !strings.Contains(fmt.Sprint(res.err), "queue "+b.name) {
				t.Errorf("%v --queue %s: err = %v (exit %d), want a usage error naming %s and %s", c.op, other, res.err, exitCode(res.err), other, b.name)
			}
			if queues, _ := b.insp.Queues(); slices.Contains(queues, other) {
				t.Errorf("the refused run created queue %s", other)
			}

			res = runCmd(t, append([]string{"--redis-url", b.url, "--campaign", b.name}, c.op...)...)
			if res.err != nil || !strings.Contains(res.out, "(queue "+b.name+")") || !strings.Contains(res.out, ": 3\n") {
				t.Fatalf("%v: %v\n%s%s", c.op, res.err, res.out, res.errOut)
			}
			qi, err := b.insp.GetQueueInfo(b.name)
			if err != nil || qi.Pending != 3 {
				t.Errorf("queue %s: %+v, %v; want 3 pending tasks", b.name, qi, err)
			}
			for _, id := range b.ids {
				if _, err := b.insp.GetTaskInfo(worker.DefaultQueue, tasks.TaskID(b.name, id)); err == nil {
					t.Errorf("%s: a task on the default queue %s, where no worker of the campaign listens", id, worker.DefaultQueue)
				}
			}
		})
	}
}

// TestStatusUsesCampaignQueue: --status without --queue reports on the
// campaign's queue, with --queue on that one, and for a campaign that
// recorded none (an older enqueue) on the default.
func TestStatusUsesCampaignQueue(t *testing.T) {
	t.Parallel()
	b := setupCampaignOnQueue(t, campaign.StatusCreated)

	rep := b.statusJSON(t)
	want := statusReport{Campaign: b.name, Total: 3, Created: 3, Queue: b.name, QueueFound: true,
		CampaignQueue: b.name, Done: true}
	if rep != want {
		t.Errorf("status = %+v\nwant     %+v", rep, want)
	}

	other := b.name + "-other"
	rep = b.statusJSON(t, "--queue", other)
	if rep.Queue != other || rep.QueueFound || rep.CampaignQueue != b.name {
		t.Errorf("status --queue %s: queue %q found %v campaign queue %q; want %s, false, %s",
			other, rep.Queue, rep.QueueFound, rep.CampaignQueue, other, b.name)
	}
	res := runCmd(t, "--redis-url", b.url, "--campaign", b.name, "--status", "--status-sample", "0", "--queue", other)
	for _, w := range []string{"queue " + other + ": not found", "(campaign " + b.name + " was enqueued on queue " + b.name + ")"} {
		if !strings.Contains(res.out, w) {
			t.Errorf("status --queue %s lacks %q:\n%s", other, w, res.out)
		}
	}

	// What an enqueue before the queue was recorded left.
	b.rdb.Del(context.Background(), "enrollq:c:{"+b.name+"}:queue")
	if rep = b.statusJSON(t); rep.Queue != worker.DefaultQueue || rep.CampaignQueue != "" {
		t.Errorf("status of a campaign without a recorded queue: queue %q, campaign queue %q; want %s, \"\"",
			rep.Queue, rep.CampaignQueue, worker.DefaultQueue)
	}
}

// TestEnqueueOnSecondQueueRefused: a campaign lives on one queue; running
// it again on another enqueues nothing and names both.
func TestEnqueueOnSecondQueueRefused(t *testing.T) {
	t.Parallel()
	rdb, name, url := setupQueue(t)
	in := writeProfiles(t, 3)
	if res := runCmd(t, "--redis-url", url, "--queue", name, "--campaign", name, "--csv", in); res.err != nil {
		t.Fatalf("enqueue: %v\n%s", res.err, res.out)
	}
	other := name + "-b"
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	t.Cleanup(func() { insp.DeleteQueue(other, true) })

	res := runCmd(t, "--redis-url", url, "--queue", other, "--campaign", name, "--csv", in)
	if exitCode(res.err) != 2 || !strings.Contains(fmt.Sprint(res.err), `queue "`+name+`", not "`+other+`"`) {
		t.Errorf("enqueue on %s: err = %v (exit %d), want a usage error naming %s and %s", other, res.err, exitCode(res.err), name, other)
	}
	if queues, _ := insp.Queues(); slices.Contains(queues, other) {
		t.Errorf("the refused run created queue %s", other)
	}
	if q, err := campaign.NewStore(rdb, 0).Queue(context.Background(), name); err != nil || q != name {
		t.Errorf("campaign queue = %q, %v; want %s", q, err, name)
	}
}

// TestStatusAfterRefreshIsNotDone: right after a refresh every profile
// still has its old URL, but the refresh's tasks are queued: not done.
func TestStatusAfterRefreshIsNotDone(t *testing.T) {
	t.Parallel()
	b := setupCampaignOnQueue(t, campaign.StatusCreated)
	if rep := b.statusJSON(t); !rep.Done {
		t.Fatalf("status before the refresh: %+v, want done", rep)
	}
	if res := runCmd(t, "--redis-url", b.url, "--campaign", b.name, "--refresh", "--within", "10m"); res.err != nil {
		t.Fatalf("refresh: %v\n%s", res.err, res.out)
	}

	rep := b.statusJSON(t)
	if rep.Pending != 0 || rep.QueueQueued != 3 || rep.Done {
		t.Errorf("status after the refresh: pending %d, queued %d, done %v; want 0, 3, false", rep.Pending, rep.QueueQueued, rep.Done)
	}
	res := runCmd(t, "--redis-url", b.url, "--campaign", b.name, "--status", "--status-sample", "0")
	want := "every profile has a result; 3 tasks still queued on " + b.name + " (a refresh, a retry, or another campaign)\n"
	if !strings.Contains(res.out, want) || strings.Contains(res.out, "done:") {
		t.Errorf("status after the refresh:\n%s\nwant %q and no \"done:\"", res.out, want)
	}
}

func TestPrintStatusDoneOnlyWithAnEmptyQueue(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		queued int
		want   string
	}{
		{0, "done: every profile has a result\n"},
		{4, "every profile has a result; 4 tasks still queued on q (a refresh, a retry, or another campaign)\n"},
	} {
		var b strings.Builder
		rep := statusReport{Campaign: "c", Total: 4, Created: 4, Queue: "q", QueueFound: true,
			QueueSize: c.queued, QueueQueued: c.queued, Done: c.queued == 0}
		printStatus(&b, rep, 0)
		if !strings.HasSuffix(b.String(), c.want) {
			t.Errorf("%d queued: status ends\n%s\nwant %q", c.queued, b.String(), c.want)
		}
	}
}
