package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/source"
)

// stoppingRecords yields n valid records and calls stop once it has
// yielded at, as Ctrl-C would in the middle of an enqueue.
type stoppingRecords struct {
	n, at, i int
	stop     func()
}

func (r *stoppingRecords) Columns() []string { return []string{"email"} }

func (r *stoppingRecords) Next() (source.Record, error) {
	if r.i == r.n {
		return source.Record{}, io.EOF
	}
	r.i++
	if r.i == r.at {
		r.stop()
	}
	return source.Record{
		Line: r.i + 1, ID: fmt.Sprintf("uprof_01S%023d", r.i),
		Values: []string{fmt.Sprintf("user.%d@example.com", r.i)},
	}, nil
}

// TestStoppedEnqueueCountsOnlyWhatItEnqueued stops an enqueue while its
// batches are in flight: the campaign then counts exactly the profiles
// that got a task, so that a --wait or --status can end once they are
// done, and a re-run enqueues the rest.
func TestStoppedEnqueueCountsOnlyWhatItEnqueued(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	redistest.DeleteQueueAtEnd(t, rdb, name)
	cfg := Config{Redis: rdb, Queue: name, Campaign: name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	stop := func() {
		// Stop once some batches are in, so that others are in flight.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if qi, err := insp.GetQueueInfo(name); err == nil && qi.Size >= 200 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}
	recs := &stoppingRecords{n: 8000, at: 2500, stop: stop}
	sum, err := Enqueue(ctx, cfg, recs)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if sum.Unsent == 0 || sum.Enqueued == 0 {
		t.Fatalf("summary %+v: want some profiles enqueued and some not", sum)
	}

	qi, err := insp.GetQueueInfo(name)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := campaign.NewStore(rdb, time.Hour).Progress(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if prog.Total != sum.Enqueued || int64(qi.Size) != sum.Enqueued {
		t.Errorf("campaign total %d, tasks %d, want both %d (the enqueued; %d not enqueued)",
			prog.Total, qi.Size, sum.Enqueued, sum.Unsent)
	}

	// The same input again enqueues the rest, and the counts meet.
	recs = &stoppingRecords{n: 8000, stop: func() {}}
	again, err := Enqueue(context.Background(), cfg, recs)
	if err != nil {
		t.Fatal(err)
	}
	if again.Enqueued+again.AlreadyEnqueued != 8000 || again.Enqueued != 8000-sum.Enqueued {
		t.Errorf("second run enqueued %d, already %d; want %d and %d",
			again.Enqueued, again.AlreadyEnqueued, 8000-sum.Enqueued, sum.Enqueued)
	}
	prog, _ = campaign.NewStore(rdb, time.Hour).Progress(context.Background(), name)
	if prog.Total != 8000 {
		t.Errorf("campaign total %d after the second run, want 8000", prog.Total)
	}
}

// stopDuringAdmit is a go-redis hook that stops the run (cancel) once the
// first admission of a batch has been carried out by the server, and then
// answers as go-redis does for a context that ended while the reply was
// on its way: with the context's error, the batch admitted all the same.
type stopDuringAdmit struct {
	cancel context.CancelFunc
	once   sync.Once
}

func (h *stopDuringAdmit) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *stopDuringAdmit) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (h *stopDuringAdmit) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		admit := len(cmds) > 0 && cmds[0].Name() == "smismember" && strings.HasSuffix(fmt.Sprint(cmds[0].Args()[1]), ":profiles")
		if !admit {
			return err
		}
		h.once.Do(h.cancel)
		if ctx.Err() != nil {
			for _, c := range cmds {
				c.SetErr(ctx.Err())
			}
			return ctx.Err()
		}
		return err
	}
}

// TestStopDuringAdmitCountsNoProfileWithoutATask stops an enqueue while
// a batch's admission is out: the batch was admitted on the server, and
// is taken back out, so that the campaign counts only the profiles that
// got a task.
func TestStopDuringAdmitCountsNoProfileWithoutATask(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t)
	name := redistest.Name(t)
	redistest.DeleteQueueAtEnd(t, rdb, name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb.AddHook(&stopDuringAdmit{cancel: cancel})
	cfg := Config{Redis: rdb, Queue: name, Campaign: name, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	sum, err := Enqueue(ctx, cfg, &stoppingRecords{n: 1200, stop: func() {}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	defer insp.Close()
	size := 0
	if qi, err := insp.GetQueueInfo(name); err == nil {
		size = qi.Size
	}
	prog, err := campaign.NewStore(rdb, time.Hour).Progress(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if prog.Total != sum.Enqueued || int64(size) != sum.Enqueued {
		t.Errorf("campaign total %d, tasks %d, want both %d (the enqueued; %d not enqueued)",
			prog.Total, size, sum.Enqueued, sum.Unsent)
	}
	if sum.Unsent == 0 {
		t.Errorf("summary %+v: want the stopped batch's profiles counted as not enqueued", sum)
	}
}
