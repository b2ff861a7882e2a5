// Package producer turns a source of profile records into tasks: it
// screens each record (valid id, not a repeat), admits the profile into the
// campaign, and enqueues one task per new profile with bounded concurrency.
//
// Every record read is counted exactly once, so that
// Read = Enqueued + AlreadyEnqueued + Repeats + Invalid.
package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/source"
	"github.com/enrollq/enrollq/internal/tasks"
)

// Defaults for Config.
const (
	DefaultConcurrency = 64
	DefaultBatch       = 64
	enqueueAttempts    = 4
)

// Records is a stream of input records; *source.CSV is one.
type Records interface {
	Columns() []string
	Next() (source.Record, error)
}

var _ Records = (*source.CSV)(nil)

// Config configures Enqueue.
type Config struct {
	Redis    redis.UniversalClient // required
	Queue    string                // required
	Campaign string                // required

	// Concurrency is how many enqueue goroutines run. Default
	// DefaultConcurrency.
	Concurrency int

	// MaxRetry is each task's retry budget. Default tasks.DefaultMaxRetry.
	MaxRetry int

	// Deadline, when set, is the campaign's end (see tasks.Payload).
	Deadline time.Time

	// Screen judges each record. Default a fresh source.Screen; a file
	// read twice passes the source.Repeats its first pass prepared.
	Screen Screener

	// Progress, when set, is called with the records read so far, from
	// one goroutine, about every thousand records.
	Progress func(read int64)

	Logger *slog.Logger
}

// Summary accounts for every record read.
type Summary struct {
	source.Summary

	// Enqueued profiles got a new task; AlreadyEnqueued ones had a task or
	// a result in this campaign already. Reminted counts the enqueued
	// profiles whose stored URL was about to expire.
	Enqueued        int64
	AlreadyEnqueued int64
	Reminted        int64

	// Unsent counts valid records read but not enqueued because the run
	// stopped (an error or Ctrl-C); zero for a run that completed.
	Unsent int64
}

// Check reports an error when the counts do not add up.
func (s *Summary) Check() error {
	sum := s.Enqueued + s.AlreadyEnqueued + int64(s.Repeats) + int64(s.Invalid) + s.Unsent
	if int64(s.Read) != sum {
		return fmt.Errorf("counts do not add up: read %d, enqueued %d + already enqueued %d + repeats %d + invalid %d + not enqueued %d = %d",
			s.Read, s.Enqueued, s.AlreadyEnqueued, s.Repeats, s.Invalid, s.Unsent, sum)
	}
	return nil
}

// Screener judges a record: valid, invalid or a repeat.
type Screener interface {
	Check(rec source.Record) (v source.Verdict, reason error, firstLine int)
}

var (
	_ Screener = (*source.Screen)(nil)
	_ Screener = (*source.Repeats)(nil)
)

// Validate reads records to the end without enqueuing anything, so that a
// structurally broken input enqueues nothing, and passes each to each
// (which may be nil). It returns the number of records.
func Validate(recs Records, each func(source.Record)) (int, error) {
	n := 0
	for {
		rec, err := recs.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if each != nil {
			each(rec)
		}
		n++
	}
}

type job struct {
	rec source.Record
}

// Enqueue screens and enqueues every record of recs. On an error it stops
// and returns the summary so far with the error: a Redis outage mid-run
// leaves the enqueued tasks in place, and running again completes the rest.
// A campaign lives on one queue: when it is on another queue than
// cfg.Queue, Enqueue enqueues nothing and returns a
// *campaign.QueueConflictError.
func Enqueue(ctx context.Context, cfg Config, recs Records) (Summary, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	store := campaign.NewStore(cfg.Redis, 0)
	if err := store.ClaimQueue(ctx, cfg.Campaign, cfg.Queue); err != nil {
		return Summary{}, err
	}
	if _, err := store.SetColumns(ctx, cfg.Campaign, recs.Columns()); err != nil {
		return Summary{}, err
	}
	columns := recs.Columns()
	client := asynq.NewClientFromRedisClient(cfg.Redis)
	// The client wraps cfg.Redis, which the caller owns: do not Close it.

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		sum             Summary
		enqueued, known atomic.Int64
		reminted        atomic.Int64
		batches         = make(chan []source.Record, cfg.Concurrency)
		wg              sync.WaitGroup
	)
	for range cfg.Concurrency {
		wg.Go(func() {
			for batch := range batches {
				n, err := enqueueBatch(ctx, cfg, store, client, columns, batch)
				enqueued.Add(n.enqueued)
				known.Add(n.known)
				reminted.Add(n.reminted)
				if err != nil {
					cancel(err)
				}
			}
		})
	}

	screen := cfg.Screen
	if screen == nil {
		screen = &source.Screen{}
	}
	batch := make([]source.Record, 0, DefaultBatch)
	var readErr error
	for ctx.Err() == nil {
		rec, err := recs.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		v, reason, first := screen.Check(rec)
		sum.Add(rec, v, reason, first)
		if cfg.Progress != nil && sum.Read%1000 == 0 {
			cfg.Progress(int64(sum.Read))
		}
		if v != source.Valid {
			continue
		}
		batch = append(batch, rec)
		if len(batch) == cap(batch) {
			select {
			case batches <- batch:
			case <-ctx.Done():
			}
			batch = make([]source.Record, 0, DefaultBatch)
		}
	}
	if len(batch) > 0 && ctx.Err() == nil {
		batches <- batch
	}
	close(batches)
	wg.Wait()

	sum.Enqueued, sum.AlreadyEnqueued, sum.Reminted = enqueued.Load(), known.Load(), reminted.Load()
	if cfg.Progress != nil {
		cfg.Progress(int64(sum.Read))
	}
	err := readErr
	if err == nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		// Records read but lost with an unfinished batch: say so, so that
		// the counts still add up.
		sum.Unsent = int64(sum.Valid) - sum.Enqueued - sum.AlreadyEnqueued
		return sum, err
	}
	return sum, sum.Check()
}

type batchCounts struct{ enqueued, known, reminted int64 }

// enqueueBatch admits a batch into the campaign in one round trip, then
// enqueues a task for each profile without a result. A profile counts once,
// as enqueued or known, unless the batch stops on an error: then the
// profiles it admitted but enqueued no task for are taken back out of the
// campaign (see campaign.Store.Unadmit), so that its counts hold no
// profile that nothing will run.
func enqueueBatch(ctx context.Context, cfg Config, store *campaign.Store, client *asynq.Client,
	columns []string, batch []source.Record) (n batchCounts, err error) {
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.ID
	}
	// A stop (Ctrl-C) does not cut the admission short: one cut while its
	// round trip is out would leave the batch admitted on the server and
	// unknown here, counted in the campaign with no task. It finishes,
	// and the batch is then taken back out as a whole.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), admitTimeout)
	adm, err := store.Admit(actx, cfg.Campaign, ids)
	cancel()
	if err != nil {
		return n, err
	}
	if ctx.Err() != nil {
		unadmit(ctx, cfg, store, ids, adm)
		return n, context.Cause(ctx)
	}

	for i, rec := range batch {
		if adm[i] == campaign.HasResult {
			n.known++
			continue
		}
		switch err := enqueueRecord(ctx, cfg, client, columns, rec); {
		case err == nil:
			n.enqueued++
			if adm[i] == campaign.Remint {
				n.reminted++
			}
		case errors.Is(err, asynq.ErrTaskIDConflict):
			n.known++
		default:
			unadmit(ctx, cfg, store, ids[i:], adm[i:])
			return n, err
		}
	}
	return n, nil
}

// admitTimeout bounds an admission, which a stop does not cut short, and
// unadmitTimeout bounds unadmit, which runs after the run's context may
// have ended.
const (
	admitTimeout   = 10 * time.Second
	unadmitTimeout = 5 * time.Second
)

// unadmit takes the profiles of a stopped batch that got no task back out
// of the campaign. A failure is logged: the counts then include profiles
// without a task, which running the same input again enqueues.
func unadmit(ctx context.Context, cfg Config, store *campaign.Store, ids []string, adm []campaign.Admission) {
	var added, reminted []string
	for i, id := range ids {
		switch adm[i] {
		case campaign.Admitted:
			added = append(added, id)
		case campaign.Remint:
			reminted = append(reminted, id)
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unadmitTimeout)
	defer cancel()
	if err := store.Unadmit(ctx, cfg.Campaign, added, reminted); err != nil {
		cfg.Logger.Warn("stopped batch: its profiles stay counted in the campaign without a task; run the same input again",
			"campaign", cfg.Campaign, "profiles", len(ids), "error", err)
	}
}

// enqueueRecord enqueues the task of one record.
func enqueueRecord(ctx context.Context, cfg Config, client *asynq.Client, columns []string, rec source.Record) error {
	task, err := tasks.NewTask(tasks.Payload{
		Campaign:   cfg.Campaign,
		ProfileID:  rec.ID,
		Seq:        int64(rec.Line),
		Columns:    columnMap(columns, rec.Values),
		Deadline:   cfg.Deadline,
		EnqueuedAt: time.Now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("line %d: %w", rec.Line, err)
	}
	err = enqueueOne(ctx, client, task, tasks.Options(cfg.Queue, cfg.Campaign, rec.ID, cfg.MaxRetry))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue line %d (%s): %w", rec.Line, rec.ID, err)
	}
	return err
}

// enqueueOne retries a failed enqueue a few times with a short backoff:
// a Redis blip must not cost a profile.
func enqueueOne(ctx context.Context, client *asynq.Client, task *asynq.Task, opts []asynq.Option) error {
	delay := 100 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		_, err = client.EnqueueContext(ctx, task, opts...)
		if err == nil || errors.Is(err, asynq.ErrTaskIDConflict) || attempt == enqueueAttempts || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(delay):
			delay *= 2
		case <-ctx.Done():
			return err
		}
	}
}

func columnMap(columns, values []string) map[string]string {
	if len(columns) == 0 {
		return nil
	}
	m := make(map[string]string, len(columns))
	for i, c := range columns {
		if i < len(values) {
			m[c] = values[i]
		}
	}
	return m
}
