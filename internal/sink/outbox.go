package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
)

// Outbox tuning.
const (
	outboxBatch = 16
	outboxGroup = "deliver"

	// DefaultClaimIdle is how long an entry may sit with a consumer that
	// neither delivers nor retries it (a worker that died) before another
	// takes it over. A live consumer retries its own entries far sooner.
	DefaultClaimIdle = time.Minute
)

// Outbox makes delivery to a webhook or a table durable: Put appends the
// result to a Redis stream, which returns at once, and Run, in every
// worker, delivers the stream's entries and deletes each only once the
// receiver has answered 2xx or the database has written the row. A
// delivery that fails stays with its consumer, retried with backoff until
// it succeeds; one whose worker died is taken over by another after a
// minute. So a receiver or a database that is down for hours loses
// nothing and costs no API calls: the URLs wait in Redis, as the results
// do.
//
// Every worker of a queue must run the same --sink: they share the
// queue's stream. An Outbox is safe for concurrent use.
//
// Like a campaign's keys, the stream does not keep results forever: each
// Put trims entries older than Retention and makes the stream expire after
// Retention without a Put, so that the bearer URLs of a campaign whose
// sink was dropped do not stay in Redis for good. A worker whose
// stream expired makes the group again.
type Outbox struct {
	// Retention: default campaign.DefaultRetention, as the result store's.
	// Set it before the first Put.
	Retention time.Duration

	// ClaimIdle: see DefaultClaimIdle. Set it before Run.
	ClaimIdle time.Duration

	rdb              redis.UniversalClient
	to               outboxTarget
	backoff, maxWait time.Duration
	stream           string
	consumer         string
	log              *slog.Logger
}

var _ Results = (*Outbox)(nil)

// outboxTarget is where an Outbox delivers: a Webhook or a Table.
type outboxTarget interface {
	// deliver hands on one result, the JSON the outbox holds, and returns
	// nil once it is taken. delivery is the result's delivery id.
	deliver(ctx context.Context, body []byte, delivery string) error
	String() string
	Close() error
}

var (
	_ outboxTarget = (*Webhook)(nil)
	_ outboxTarget = (*Table)(nil)
	_ outboxTarget = (*laterTable)(nil)
)

// NewOutbox returns an Outbox for queue's results, delivering through
// hook, with the hook's backoff. Its stream is enrollq:webhook:{queue}.
func NewOutbox(rdb redis.UniversalClient, queue string, hook *Webhook) *Outbox {
	return newOutbox(rdb, "enrollq:webhook:{"+queue+"}", hook, hook.cfg.Backoff, hook.cfg.MaxWait, hook.cfg.Logger)
}

// NewTableOutbox returns an Outbox for queue's results, writing them into
// table, retried with the webhook's default backoff. Its stream is
// enrollq:table:{queue}.
func NewTableOutbox(rdb redis.UniversalClient, queue string, table *Table, log *slog.Logger) *Outbox {
	return newTableOutbox(rdb, queue, table, log)
}

// newTableOutbox is NewTableOutbox for a Table or a laterTable.
func newTableOutbox(rdb redis.UniversalClient, queue string, table outboxTarget, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.Default()
	}
	return newOutbox(rdb, "enrollq:table:{"+queue+"}", table, DefaultWebhookBackoff, DefaultWebhookMaxWait, log)
}

func newOutbox(rdb redis.UniversalClient, stream string, to outboxTarget, backoff, maxWait time.Duration, log *slog.Logger) *Outbox {
	host, _ := os.Hostname()
	return &Outbox{
		Retention: campaign.DefaultRetention,
		ClaimIdle: DefaultClaimIdle,
		rdb:       rdb,
		to:        to,
		backoff:   backoff,
		maxWait:   maxWait,
		log:       log,
		stream:    stream,
		consumer:  fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32()),
	}
}

// Put appends r to the stream, trims the entries older than Retention
// and restarts the stream's expiry, in one round trip.
func (o *Outbox) Put(ctx context.Context, r campaign.Result) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("outbox: encode %s: %w", r.ProfileID, err)
	}
	oldest := time.Now().Add(-o.Retention).UnixMilli()
	_, err = o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{
			Stream: o.stream,
			MinID:  fmt.Sprintf("%d-0", oldest),
			Values: []string{"body", string(body), "delivery", deliveryID(r)},
		})
		p.Expire(ctx, o.stream, o.Retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox: add %s: %w", r.ProfileID, err)
	}
	return nil
}

// Undelivered counts the results not yet taken by the receiver.
func (o *Outbox) Undelivered(ctx context.Context) (int64, error) {
	n, err := o.rdb.XLen(ctx, o.stream).Result()
	if err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	return n, nil
}

// drainTries is how often each result left must have failed before Drain
// gives up on them.
const drainTries = 6

// Drain waits until every result is delivered, or ctx ends, or every
// result left has failed drainTries deliveries (one the receiver or the
// database refuses for good: they stay in the stream, and Drain says how
// many and where).
func (o *Outbox) Drain(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	left := "some"
	for {
		n, err := o.Undelivered(ctx)
		if err == nil && n == 0 {
			return nil
		}
		if err == nil {
			left = fmt.Sprint(n)
			if stuck, err := o.failedTries(ctx, n); err == nil && stuck == n {
				return fmt.Errorf("%d results could not be delivered to the %s after %d tries each (the log says why); "+
					"they stay in the Redis stream %s, and in the result store for export", n, o.to, drainTries, o.stream)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s results not yet delivered to the %s: %w", left, o.to, ctx.Err())
		case <-tick.C:
		}
	}
}

// failedTries counts the entries, of the first left, that have been
// handed out drainTries times or more without being delivered.
func (o *Outbox) failedTries(ctx context.Context, left int64) (int64, error) {
	pend, err := o.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: o.stream, Group: outboxGroup, Start: "-", End: "+", Count: min(left, 1000),
	}).Result()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range pend {
		if p.RetryCount >= drainTries {
			n++
		}
	}
	return n, nil
}

// Run delivers until ctx ends. An entry whose delivery fails waits its
// own backoff (doubling from the first wait up to the longest, by how
// often it was tried) while the others go on: one result that the
// receiver or the database refuses for good holds up no other. When every
// delivery of a round fails (the receiver is down), the whole loop backs
// off too.
func (o *Outbox) Run(ctx context.Context) {
	base, maxWait := o.backoff, o.maxWait
	wait := base
	grouped := false
	for ctx.Err() == nil {
		var msgs []redis.XMessage
		err := o.ensureGroup(ctx, &grouped)
		if err == nil {
			msgs, err = o.next(ctx)
		}
		delivered, failed := 0, 0
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if strings.Contains(err.Error(), "NOGROUP") {
				// The stream expired (see Retention), and its group with
				// it: make them again.
				grouped = false
			} else {
				o.log.Warn("result outbox: redis", "error", err)
			}
			failed = 1
		} else {
			failed = o.deliverAll(ctx, msgs)
			delivered = len(msgs) - failed
		}
		if failed == 0 || delivered > 0 {
			wait = base
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(rand.N(wait) + time.Millisecond): // full jitter
		}
		wait = min(wait*2, maxWait)
	}
}

// retryWait is how long an entry handed out tries times waits after its
// last failed delivery: the first wait, doubled per try, up to the longest
// wait and below ClaimIdle (so that no other worker takes it over from a
// live one).
func (o *Outbox) retryWait(tries int64) time.Duration {
	w := o.backoff
	for i := int64(1); i < tries && w < o.maxWait; i++ {
		w *= 2
	}
	return min(w, o.maxWait, o.ClaimIdle/2)
}

// ensureGroup creates the stream's consumer group once.
func (o *Outbox) ensureGroup(ctx context.Context, done *bool) error {
	if *done {
		return nil
	}
	err := o.rdb.XGroupCreateMkStream(ctx, o.stream, outboxGroup, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return err
	}
	*done = true
	return nil
}

// outboxScan bounds the entries of its own that a consumer looks over
// for the ones due again.
const outboxScan = 100

// next returns entries to deliver: this consumer's own that failed before
// and have waited their retryWait, then those of a consumer gone quiet,
// then new ones (waiting up to a second for them when nothing else is
// due). Own entries not yet due hold up none of the others.
func (o *Outbox) next(ctx context.Context) ([]redis.XMessage, error) {
	pend, err := o.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: o.stream, Group: outboxGroup, Start: "-", End: "+", Count: outboxScan, Consumer: o.consumer,
	}).Result()
	if err != nil {
		return nil, err
	}
	var due []string
	for _, p := range pend {
		if p.Idle >= o.retryWait(p.RetryCount) && len(due) < outboxBatch {
			due = append(due, p.ID)
		}
	}
	var msgs []redis.XMessage
	if len(due) > 0 {
		// Claiming its own entries counts a try and restarts their idle
		// time, as a read would.
		if msgs, err = o.rdb.XClaim(ctx, &redis.XClaimArgs{
			Stream: o.stream, Group: outboxGroup, Consumer: o.consumer, Messages: due,
		}).Result(); err != nil {
			return nil, err
		}
	}
	if len(msgs) == 0 {
		if msgs, _, err = o.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: o.stream, Group: outboxGroup, Consumer: o.consumer,
			MinIdle: o.ClaimIdle, Start: "0-0", Count: outboxBatch,
		}).Result(); err != nil {
			return nil, err
		}
	}
	block := time.Second
	if len(msgs) > 0 || len(pend) > 0 {
		block = -1 // do not wait: something is due, or soon will be
	}
	res, err := o.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: outboxGroup, Consumer: o.consumer, Streams: []string{o.stream, ">"},
		Count: outboxBatch, Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	if err != nil {
		return msgs, err
	}
	if len(res) > 0 {
		msgs = append(msgs, res[0].Messages...)
	}
	if len(msgs) == 0 && len(pend) > 0 {
		// Only entries that are not due yet: look again shortly.
		select {
		case <-ctx.Done():
		case <-time.After(min(o.backoff, 100*time.Millisecond)):
		}
	}
	return msgs, nil
}

// deliverAll delivers msgs at once and returns how many failed.
func (o *Outbox) deliverAll(ctx context.Context, msgs []redis.XMessage) int {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	for _, m := range msgs {
		wg.Go(func() {
			if err := o.deliver(ctx, m); err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

func (o *Outbox) deliver(ctx context.Context, m redis.XMessage) error {
	body, _ := m.Values["body"].(string)
	delivery, _ := m.Values["delivery"].(string)
	if body != "" {
		if err := o.to.deliver(ctx, []byte(body), delivery); err != nil {
			o.log.Warn("result delivery failed; it stays in the outbox and is retried",
				"sink", o.to.String(), "delivery", delivery, "error", err)
			return err
		}
	}
	// Acknowledged, then deleted: Undelivered counts what is left.
	if err := o.rdb.XAck(ctx, o.stream, outboxGroup, m.ID).Err(); err != nil {
		return err
	}
	return o.rdb.XDel(ctx, o.stream, m.ID).Err()
}

// String names the webhook or table.
func (o *Outbox) String() string { return o.to.String() + " (through a Redis outbox)" }

// Close closes the webhook's idle connections or the table's pool.
func (o *Outbox) Close() error { return o.to.Close() }
