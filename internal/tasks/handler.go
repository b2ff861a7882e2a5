package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/uprof"
)

// Defaults for HandlerConfig.
const (
	DefaultMaxRetry       = 8
	DefaultMaxMalformed   = 3
	DefaultMaxCalls       = 60
	DefaultBackoffBase    = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultMaxLimiterWait = 10 * time.Second
	DefaultPauseDelay     = 30 * time.Second

	// MaxProfilePauses is how often one profile's 403 may pause the queue.
	// A 403 usually means the key lacks a permission, which a resume after
	// a fix cures; one that outlives two resumes is this profile's own, and
	// is recorded as its failure so that the campaign can end.
	MaxProfilePauses = 2
)

// Caller mints one link. *client.Client is one.
type Caller interface {
	Create(ctx context.Context, profileID string) (client.Link, error)
}

// Limiter paces calls. Wait blocks until a call may go, or returns an
// error when ctx ends first (including when the wait would outlast ctx's
// deadline).
type Limiter interface {
	Wait(ctx context.Context) error
}

// Allower is a Limiter that can grant a call at once without blocking.
// The handler asks it first: a call whose token is free then costs no
// bounded wait (a timer and a context a task), which with the limit off is
// every call. Allow must be false whenever Wait would block or fail.
type Allower interface {
	Allow() bool
}

// Observer is told of every API answer, so that a limiter can cool down
// after a 429 or follow the API's rate-limit headers. It may be nil.
type Observer interface {
	Observe(ctx context.Context, link client.Link, err error)
}

// Recorder receives the handler's measurements; *metrics.Metrics is one.
// It may be nil.
type Recorder interface {
	ObserveCall(outcome string, err error, d time.Duration)
	ObserveWait(d time.Duration)
	ObserveResult(status string)
}

// Store is the shared result store. *campaign.Store is one.
type Store interface {
	Status(ctx context.Context, campaign, profileID string) (campaign.Status, error)
	BeginCall(ctx context.Context, campaign, profileID string, staleBefore time.Time) (campaign.Status, int64, error)
	CountCall(ctx context.Context, campaign, profileID string) (int64, error)
	Calls(ctx context.Context, campaign, profileID string) (int64, error)
	CountPause(ctx context.Context, campaign, profileID string) (int64, error)
	CountMalformed(ctx context.Context, campaign, profileID string) (int64, error)
	NoteRequest(ctx context.Context, campaign, profileID, requestID string) error
	LastRequest(ctx context.Context, campaign, profileID string) (string, error)
	Put(ctx context.Context, r campaign.Result) (bool, error)
	PutCall(ctx context.Context, r campaign.Result) (bool, int64, error)
}

// Pauser pauses a queue. *asynq.Inspector is one.
type Pauser interface {
	PauseQueue(queue string) error
}

var (
	_ Caller = (*client.Client)(nil)
	_ Store  = (*campaign.Store)(nil)
	_ Pauser = (*asynq.Inspector)(nil)
)

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	Caller  Caller   // required
	Store   Store    // required
	Limiter Limiter  // required; pace of every call
	Pauser  Pauser   // required; pauses the queue on an account fault
	Observe Observer // optional
	Metrics Recorder // optional

	// MaxRetry is the retry budget for transient faults; it must equal the
	// task's asynq MaxRetry. Default DefaultMaxRetry.
	MaxRetry int

	// MaxMalformed bounds attempts that get an unusable 200. Default
	// DefaultMaxMalformed.
	MaxMalformed int

	// MaxCalls bounds the API calls for one profile, rate-limit waits
	// included. Default DefaultMaxCalls.
	MaxCalls int64

	// Backoff paces counted retries. Default DefaultBackoffBase up to
	// DefaultBackoffMax.
	Backoff Backoff

	// MaxLimiterWait is the longest a task holds a worker slot waiting for
	// the limiter; past it the task goes back to the queue. Default
	// DefaultMaxLimiterWait.
	MaxLimiterWait time.Duration

	// PauseDelay is how long a task waits in the retry set after a pause.
	// Default DefaultPauseDelay.
	PauseDelay time.Duration

	// ResumeHint is what the log of a pause tells the operator to do once
	// the fault is fixed. Default: the enqueue --resume command of the
	// queue, a fleet's way; a local run, which ends at a pause, says to
	// run again.
	ResumeHint string

	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now
}

func (c HandlerConfig) withDefaults() HandlerConfig {
	if c.MaxRetry <= 0 {
		c.MaxRetry = DefaultMaxRetry
	}
	if c.MaxMalformed <= 0 {
		c.MaxMalformed = DefaultMaxMalformed
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = DefaultMaxCalls
	}
	if c.Backoff.Base <= 0 {
		c.Backoff.Base = DefaultBackoffBase
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = DefaultBackoffMax
	}
	if c.MaxLimiterWait <= 0 {
		c.MaxLimiterWait = DefaultMaxLimiterWait
	}
	if c.PauseDelay <= 0 {
		c.PauseDelay = DefaultPauseDelay
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Handler runs TypeEnrollmentURL tasks. It is the same in local mode and
// in a fleet of workers. Use it as an asynq.Handler, with IsFailure and
// RetryDelay in the server's Config.
//
// ProcessTask returns nil when the profile has its result (new or found),
// an error wrapping asynq.SkipRetry when the profile failed for good (the
// failure is recorded first), a wait error that IsFailure ignores for rate
// limits and pauses, and any other error for a counted retry. It writes no
// result once its context is done.
type Handler struct {
	cfg HandlerConfig
}

// NewHandler returns a Handler, or an error naming a missing field.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	switch {
	case cfg.Caller == nil:
		return nil, errors.New("handler: Caller is required")
	case cfg.Store == nil:
		return nil, errors.New("handler: Store is required")
	case cfg.Limiter == nil:
		return nil, errors.New("handler: Limiter is required")
	case cfg.Pauser == nil:
		return nil, errors.New("handler: Pauser is required")
	}
	return &Handler{cfg: cfg.withDefaults()}, nil
}

// ProcessTask implements asynq.Handler.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	log := h.cfg.Logger
	taskID, _ := asynq.GetTaskID(ctx)
	p, err := DecodePayload(t.Payload())
	if err != nil {
		// A payload this build cannot read will not read better later.
		log.Error("drop task", "task_id", taskID, "error", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}

	retried, _ := asynq.GetRetryCount(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	budget := h.cfg.MaxRetry
	if m, ok := asynq.GetMaxRetry(ctx); ok && m > 1 {
		budget = m - 1 // see Options
	}
	run := &attempt{h: h, base: log, taskID: taskID, p: p, retried: retried, queue: queue, maxRetry: budget}
	return run.do(ctx)
}

// done reports whether a stored status is final for this task.
func done(s campaign.Status) bool {
	return s == campaign.StatusCreated || s == campaign.StatusFailed
}

// attempt is one run of one task.
type attempt struct {
	h        *Handler
	base     *slog.Logger // the handler's; see log
	with     *slog.Logger // base with the task's fields, made on first use
	taskID   string
	p        Payload
	retried  int
	queue    string
	maxRetry int
	calls    int64 // the profile's calls counted so far

	// uncounted is set while a call made by a first run is not counted
	// yet: the store counts it with the result, or CountCall does.
	uncounted bool
}

// log returns the logger with the task's fields. It is made when first
// needed: most tasks log nothing.
func (a *attempt) log() *slog.Logger {
	if a.with == nil {
		a.with = a.base.With("campaign", a.p.Campaign, "user_profile_id", a.p.ProfileID, "task_id", a.taskID)
	}
	return a.with
}

// firstRun reports whether the task runs for the first time: no retry,
// no refresh. Such a run makes its call without asking the store first.
func (a *attempt) firstRun() bool {
	return a.retried == 0 && a.p.RefreshBefore.IsZero()
}

func (a *attempt) do(ctx context.Context) error {
	cfg := a.h.cfg
	p := a.p

	if err := uprof.Validate(p.ProfileID); err != nil {
		return a.fail(ctx, "invalid_user_profile_id", err.Error(), "")
	}

	if !p.Deadline.IsZero() && cfg.Now().After(p.Deadline) {
		status, err := cfg.Store.Status(ctx, p.Campaign, p.ProfileID)
		if err != nil || done(status) {
			return err
		}
		if a.calls, err = cfg.Store.Calls(ctx, p.Campaign, p.ProfileID); err != nil {
			return err
		}
		requestID, err := cfg.Store.LastRequest(ctx, p.Campaign, p.ProfileID)
		if err != nil {
			return err
		}
		return a.fail(ctx, "campaign_deadline_passed",
			"campaign deadline "+p.Deadline.UTC().Format(time.RFC3339)+" passed before a URL was created", requestID)
	}

	if err := a.waitTurn(ctx); err != nil {
		return err
	}

	// A first run makes its call at once and counts it with the result:
	// one round trip to Redis instead of two, on the path of nearly every
	// task. Any other run asks the store first, in one round trip that
	// also counts the call: a task that runs again after its result was
	// stored (a crash between the store and asynq's acknowledgement) makes
	// no second call, and a refresh learns whether a newer URL is there.
	// A first run that meets a stored result (asynq put the task back at
	// shutdown after the store, or a second producer enqueued the profile
	// again as its task completed) mints a second URL, which replaces the
	// first: calls are at least once, the newest URL wins, one row stays.
	// The price of counting after the call: a call in flight when the
	// process is killed is not counted (the rerun counts its own), where
	// counting before it counted calls a crash kept from being made.
	if a.firstRun() {
		a.uncounted = true
	} else {
		status, calls, err := cfg.Store.BeginCall(ctx, p.Campaign, p.ProfileID, p.RefreshBefore)
		if err != nil {
			return err
		}
		if done(status) {
			a.log().Debug("result already stored", "status", status)
			return nil
		}
		a.calls = calls
	}
	start := time.Now()
	link, callErr := cfg.Caller.Create(ctx, p.ProfileID)
	if cfg.Metrics != nil {
		cfg.Metrics.ObserveCall(Decide(callErr).Action.String(), callErr, time.Since(start))
	}
	if cfg.Observe != nil {
		cfg.Observe.Observe(ctx, link, callErr)
	}
	if ctx.Err() != nil {
		// Shutdown or task timeout: asynq puts the task back; a result
		// written now could race the next run. The call still counts.
		a.countLate(ctx)
		return ctx.Err()
	}
	return a.settle(ctx, link, callErr)
}

// lateCountTimeout bounds counting a call whose task's context ended.
const lateCountTimeout = 2 * time.Second

// countLate counts a first run's call after the task's context ended, on
// a short context of its own, so that the next run's attempts include it.
func (a *attempt) countLate(ctx context.Context) {
	if !a.uncounted {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lateCountTimeout)
	defer cancel()
	if err := a.countCall(cctx); err != nil {
		a.log().Warn("count call", "error", err)
	}
}

// countCall counts a first run's call that brought no result.
func (a *attempt) countCall(ctx context.Context) error {
	n, err := a.h.cfg.Store.CountCall(ctx, a.p.Campaign, a.p.ProfileID)
	if err != nil {
		return err
	}
	a.calls, a.uncounted = n, false
	return nil
}

// waitTurn waits for the limiter, at most MaxLimiterWait; a longer wait
// hands the task back to the queue rather than hold a worker slot.
func (a *attempt) waitTurn(ctx context.Context) error {
	if al, ok := a.h.cfg.Limiter.(Allower); ok && al.Allow() {
		if a.h.cfg.Metrics != nil {
			a.h.cfg.Metrics.ObserveWait(0)
		}
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, a.h.cfg.MaxLimiterWait)
	defer cancel()
	start := time.Now()
	err := a.h.cfg.Limiter.Wait(wctx)
	if a.h.cfg.Metrics != nil {
		a.h.cfg.Metrics.ObserveWait(time.Since(start))
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &waitError{delay: a.h.cfg.Backoff.Base, err: fmt.Errorf("rate limiter: %w", err)}
}

func (a *attempt) settle(ctx context.Context, link client.Link, callErr error) error {
	cfg := a.h.cfg
	d := Decide(callErr)
	var apiErr *client.Error
	errors.As(callErr, &apiErr)
	requestID := link.RequestID
	if apiErr != nil {
		requestID = apiErr.RequestID
	}

	// A first run's call that brought no result is counted now, before
	// the bounds below look at the count.
	if a.uncounted && d.Action != Succeed && d.Action != Fail {
		if err := a.countCall(ctx); err != nil {
			return err
		}
	}
	// Its request id is kept for a failure recorded later without a call
	// (the campaign's deadline), which names the last call made.
	if d.Action != Succeed && d.Action != Fail {
		if err := cfg.Store.NoteRequest(ctx, a.p.Campaign, a.p.ProfileID, requestID); err != nil {
			return err
		}
	}

	// Every call counts towards MaxCalls, so that even answers that do not
	// use up retries (429s, pauses) end some day.
	if d.Action != Succeed && d.Action != Fail && a.calls >= cfg.MaxCalls {
		return a.fail(ctx, d.Reason, fmt.Sprintf("gave up after %d calls: %v", a.calls, callErr), requestID)
	}

	// asynq archives a task, without asking, whose retries reach its
	// MaxRetry (maxRetry+1, see Options) whatever the error; crash
	// recoveries count as retries too. Record the failure first.
	if d.Action != Succeed && d.Action != Fail && a.retried > a.maxRetry {
		return a.fail(ctx, errorType(apiErr, d.Reason), message(apiErr, callErr), requestID)
	}

	switch d.Action {
	case Succeed:
		_, err := a.store(ctx, campaign.Result{
			Status: campaign.StatusCreated, URL: link.URL.Reveal(), ExpiresAt: link.ExpiresAt,
			RequestID: link.RequestID,
		})
		return err

	case Fail:
		return a.fail(ctx, errorType(apiErr, d.Reason), message(apiErr, callErr), requestID)

	case Wait:
		delay := d.Delay
		if delay <= 0 {
			delay = cfg.Backoff.Delay(int(a.calls))
		}
		a.log().Info("rate limited", "attempt", a.calls, "retry_in", delay.String(), "request_id", requestID)
		return &waitError{delay: delay, err: callErr}

	case Pause:
		if apiErr != nil && apiErr.StatusCode == http.StatusForbidden {
			n, err := cfg.Store.CountPause(ctx, a.p.Campaign, a.p.ProfileID)
			if err != nil {
				return err
			}
			if n > MaxProfilePauses {
				return a.fail(ctx, errorType(apiErr, d.Reason), fmt.Sprintf(
					"refused for this profile after %d resumes of the queue: %s", MaxProfilePauses, message(apiErr, callErr)), requestID)
			}
		}
		return a.pause(d, callErr, requestID)

	case RetryMalformed:
		n, err := cfg.Store.CountMalformed(ctx, a.p.Campaign, a.p.ProfileID)
		if err != nil {
			return err
		}
		if n >= int64(cfg.MaxMalformed) {
			return a.fail(ctx, d.Reason, message(apiErr, callErr), requestID)
		}
	}

	// Retry and RetryMalformed.
	if a.retried >= a.maxRetry {
		return a.fail(ctx, errorType(apiErr, d.Reason), message(apiErr, callErr), requestID)
	}
	delay := cfg.Backoff.Delay(a.retried)
	a.log().Warn("call failed, will retry", "attempt", a.calls, "retry_in", delay.String(),
		"request_id", requestID, "error", callErr)
	return &retryError{delay: delay, err: callErr}
}

// pause stops the queue on a fault of the account (key, billing,
// permission, spend cap): every other task would meet it too.
func (a *attempt) pause(d Decision, callErr error, requestID string) error {
	cfg := a.h.cfg
	if err := cfg.Pauser.PauseQueue(a.queue); err != nil && !isAlreadyPaused(err) {
		a.log().Error("pause queue", "queue", a.queue, "error", err)
	}
	a.log().Error("queue paused: the API refused the account, not the profile",
		"queue", a.queue, "reason", d.Reason, "request_id", requestID, "error", callErr,
		"fix", fixFor(d.Reason), "resume", a.resumeHint())
	return &waitError{delay: cfg.PauseDelay, err: callErr}
}

// resumeHint is HandlerConfig.ResumeHint, or the fleet's resume command.
func (a *attempt) resumeHint() string {
	if h := a.h.cfg.ResumeHint; h != "" {
		return h
	}
	return "go run ./cmd/enqueue --resume --queue " + a.queue + " (with the same --redis-url)"
}

// isAlreadyPaused spots asynq's answer to pausing a paused queue, which is
// the normal case when every in-flight task meets the same fault.
func isAlreadyPaused(err error) bool {
	return strings.Contains(err.Error(), "already paused")
}

func fixFor(reason string) string {
	switch reason {
	case "authentication_error", "http_401":
		return "check ANTHROPIC_API_KEY: it is missing, revoked or for another organisation"
	case "billing_error", "http_402":
		return "fix the organisation's billing in the Claude Console"
	case "permission_error", "http_403":
		return "give the key permission for user profiles, or check --workspace-id"
	}
	return "raise the organisation's spend limit or wait for it to reset"
}

// fail records the profile's failure and ends its task for good. When a
// live URL outranks the failure (a re-mint or refresh that failed), the
// profile keeps that URL as its result and the task is done: it is not
// archived as a failure.
func (a *attempt) fail(ctx context.Context, errType, msg, requestID string) error {
	kept, err := a.store(ctx, campaign.Result{
		Status: campaign.StatusFailed, ErrorType: errType, ErrorMessage: msg, RequestID: requestID,
	})
	if err != nil || !kept {
		return err
	}
	return fmt.Errorf("%s: %s: %w", a.p.ProfileID, errType, asynq.SkipRetry)
}

// store records r. It reports false when r, a failure, was outranked by a
// live URL stored before.
func (a *attempt) store(ctx context.Context, r campaign.Result) (bool, error) {
	if ctx.Err() != nil {
		a.countLate(ctx)
		return false, ctx.Err()
	}
	r.Campaign = a.p.Campaign
	r.ProfileID = a.p.ProfileID
	r.Seq = a.p.Seq
	r.Columns = a.p.Columns
	r.EnqueuedAt = a.p.EnqueuedAt
	r.FinishedAt = a.h.cfg.Now().UTC()
	var (
		kept bool
		err  error
	)
	if a.uncounted {
		r.Attempts = a.p.PriorAttempts + 1 // PutCall adds calls counted before
		var calls int64
		if kept, calls, err = a.h.cfg.Store.PutCall(ctx, r); err != nil {
			return false, err
		}
		a.calls, a.uncounted = calls, false
		r.Attempts = a.p.PriorAttempts + calls
	} else {
		r.Attempts = a.p.PriorAttempts + a.calls
		if kept, err = a.h.cfg.Store.Put(ctx, r); err != nil {
			return false, err
		}
	}
	if !kept {
		// Only a failure is ever outranked: by a URL stored before (a
		// refresh or re-mint that failed) that still lives. The profile's
		// result stays created, so it is neither a failure nor counted.
		a.log().Warn("call failed; the profile keeps its live url", "attempt", a.calls,
			"request_id", r.RequestID, "error_type", r.ErrorType, "error", r.ErrorMessage)
		return false, nil
	}
	if a.h.cfg.Metrics != nil {
		a.h.cfg.Metrics.ObserveResult(string(r.Status))
	}
	if r.Status == campaign.StatusCreated {
		if !a.base.Enabled(ctx, slog.LevelDebug) {
			return true, nil
		}
		a.log().Debug("enrollment url created", "status", r.Status, "attempt", a.calls,
			"request_id", r.RequestID, "expires_at", r.ExpiresAt.Format(time.RFC3339))
	} else {
		a.log().Warn("profile failed", "status", r.Status, "attempt", a.calls,
			"request_id", r.RequestID, "error_type", r.ErrorType, "error", r.ErrorMessage)
	}
	return true, nil
}

func errorType(e *client.Error, fallback string) string {
	if e != nil && e.Type != "" {
		return e.Type
	}
	return fallback
}

func message(e *client.Error, err error) string {
	if e != nil && e.Message != "" {
		return e.Message
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
