package tasks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/redistest"
)

// fakeCaller answers Create from a script, one answer per call.
type fakeCaller struct {
	mu      sync.Mutex
	answers []error // nil = success
	calls   int
}

func (f *fakeCaller) Create(_ context.Context, id string) (client.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var err error
	if len(f.answers) > 0 {
		err, f.answers = f.answers[0], f.answers[1:]
	}
	if err != nil {
		return client.Link{}, err
	}
	return client.Link{
		URL:       client.Secret("https://platform.claude.com/user-profiles/enrollment/tok_" + id),
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		RequestID: "req_ok",
	}, nil
}

type nopLimiter struct{}

func (nopLimiter) Wait(ctx context.Context) error { return ctx.Err() }

type blockedLimiter struct{}

func (blockedLimiter) Wait(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

type fakePauser struct {
	mu     sync.Mutex
	paused []string
}

func (p *fakePauser) PauseQueue(q string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = append(p.paused, q)
	return nil
}

type bundle struct {
	logs     *bytes.Buffer // the handler's log, as text
	caller   *fakeCaller
	pauser   *fakePauser
	store    *campaign.Store
	handler  *Handler
	campaign string
}

func setup(t *testing.T, answers ...error) *bundle {
	t.Helper()
	b := &bundle{
		logs:     &bytes.Buffer{},
		caller:   &fakeCaller{answers: answers},
		pauser:   &fakePauser{},
		store:    campaign.NewStore(redistest.New(t), time.Hour),
		campaign: redistest.Name(t),
	}
	h, err := NewHandler(HandlerConfig{
		Caller: b.caller, Store: b.store, Limiter: nopLimiter{}, Pauser: b.pauser,
		MaxLimiterWait: 50 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(b.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.handler = h
	return b
}

const testID = "uprof_01Hq3T9cVbW2mXy7LpZ4sQ8e"

// run runs one attempt as asynq would on its retried-th retry.
func (b *bundle) run(t *testing.T, ctx context.Context, retried int, p Payload) error {
	t.Helper()
	if p.Campaign == "" {
		p.Campaign = b.campaign
	}
	if p.ProfileID == "" {
		p.ProfileID = testID
	}
	p.Version = PayloadVersion
	a := &attempt{h: b.handler, base: b.handler.cfg.Logger, p: p, retried: retried,
		queue: "q-" + b.campaign, maxRetry: DefaultMaxRetry}
	return a.do(ctx)
}

func (b *bundle) result(t *testing.T) (campaign.Result, bool) {
	t.Helper()
	r, ok, err := b.store.Get(context.Background(), b.campaign, testID)
	if err != nil {
		t.Fatal(err)
	}
	return r, ok
}

func TestHandlerSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.run(t, context.Background(), 0, Payload{Seq: 7, Columns: map[string]string{"email": "a@example.com"}})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	r, ok := b.result(t)
	if !ok {
		t.Fatal("no result stored")
	}
	if r.Status != campaign.StatusCreated || r.URL != "https://platform.claude.com/user-profiles/enrollment/tok_"+testID ||
		r.RequestID != "req_ok" || r.Attempts != 1 || r.Seq != 7 || r.Columns["email"] != "a@example.com" {
		t.Errorf("result = %+v", r)
	}

	// A rerun after a crash between the store and asynq's
	// acknowledgement makes no call and keeps the row.
	if err := b.run(t, context.Background(), 1, Payload{}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if b.caller.calls != 1 {
		t.Errorf("calls = %d, want 1", b.caller.calls)
	}
}

func TestHandlerPermanent(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 404, 413} {
		b := setup(t, &client.Error{Kind: client.KindAPI, StatusCode: status, Type: "invalid_request_error",
			Message: "bad", RequestID: "req_perm"})
		err := b.run(t, context.Background(), 0, Payload{})
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%d: err = %v, want SkipRetry", status, err)
		}
		r, ok := b.result(t)
		if !ok || r.Status != campaign.StatusFailed || r.ErrorType != "invalid_request_error" ||
			r.ErrorMessage != "bad" || r.RequestID != "req_perm" || r.Attempts != 1 {
			t.Errorf("%d: result = %+v, %v", status, r, ok)
		}
	}
}

func TestHandlerRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, &client.Error{Kind: client.KindAPI, StatusCode: 429, Type: "rate_limit_error",
		RetryAfter: 3 * time.Second, HasRetryAfter: true})
	err := b.run(t, context.Background(), 0, Payload{})
	if IsFailure(err) {
		t.Errorf("IsFailure(%v) = true, want false for a rate limit", err)
	}
	if d := RetryDelay(Backoff{Base: time.Hour, Max: time.Hour})(0, err, nil); d != 3*time.Second {
		t.Errorf("retry delay = %v, want 3s", d)
	}
	if _, ok := b.result(t); ok {
		t.Error("a rate-limited profile got a result")
	}
}

func TestHandlerTransient(t *testing.T) {
	t.Parallel()
	fault := &client.Error{Kind: client.KindAPI, StatusCode: 529, Type: "overloaded_error", RequestID: "req_t"}

	b := setup(t, fault)
	err := b.run(t, context.Background(), 0, Payload{})
	var r *retryError
	if !errors.As(err, &r) || !IsFailure(err) || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v, want a counted retry", err)
	}
	if r.delay < DefaultBackoffBase || r.delay > 2*DefaultBackoffBase {
		t.Errorf("first retry delay = %v, want within [1s, 2s]", r.delay)
	}
	if _, ok := b.result(t); ok {
		t.Error("a retried profile got a result")
	}

	// The last counted attempt records the failure.
	b = setup(t, fault)
	err = b.run(t, context.Background(), DefaultMaxRetry, Payload{})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v, want SkipRetry after the budget", err)
	}
	res, ok := b.result(t)
	if !ok || res.Status != campaign.StatusFailed || res.ErrorType != "overloaded_error" || res.RequestID != "req_t" {
		t.Errorf("result = %+v", res)
	}
}

func TestHandlerMalformedIsBounded(t *testing.T) {
	t.Parallel()
	bad := &client.Error{Kind: client.KindMalformed, StatusCode: 200, Message: "200 without url"}
	b := setup(t, bad, bad, bad)
	for i := range DefaultMaxMalformed - 1 {
		if err := b.run(t, context.Background(), i, Payload{}); !IsFailure(err) || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("malformed answer %d: err = %v, want a counted retry", i+1, err)
		}
	}
	err := b.run(t, context.Background(), DefaultMaxMalformed-1, Payload{})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("malformed answer %d: err = %v, want SkipRetry", DefaultMaxMalformed, err)
	}
	if r, _ := b.result(t); r.ErrorType != "malformed_response" || r.ErrorMessage != "200 without url" {
		t.Errorf("result = %+v", r)
	}
}

// TestHandlerMalformedBudgetIsItsOwn: transient faults before a malformed
// answer do not use up the malformed budget (the chaos suite's
// [500 500 malformed] failed a profile that a later call would have
// served).
func TestHandlerMalformedBudgetIsItsOwn(t *testing.T) {
	t.Parallel()
	fault := &client.Error{Kind: client.KindAPI, StatusCode: 500, Type: "api_error"}
	bad := &client.Error{Kind: client.KindMalformed, StatusCode: 200, Message: "200 without url"}
	b := setup(t, fault, fault, bad, nil)
	for i := range 3 {
		if err := b.run(t, context.Background(), i, Payload{}); !IsFailure(err) || errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("answer %d: err = %v, want a counted retry", i+1, err)
		}
	}
	if err := b.run(t, context.Background(), 3, Payload{}); err != nil {
		t.Fatalf("answer 4: err = %v, want success", err)
	}
	r, ok := b.result(t)
	if !ok || r.Status != campaign.StatusCreated || r.Attempts != 4 {
		t.Errorf("result = %+v, want created after 4 attempts", r)
	}
}

func TestHandlerPausesOnAccountFaults(t *testing.T) {
	t.Parallel()
	for _, e := range []*client.Error{
		{Kind: client.KindAPI, StatusCode: 401, Type: "authentication_error"},
		{Kind: client.KindAPI, StatusCode: 402, Type: "billing_error"},
		{Kind: client.KindAPI, StatusCode: 403, Type: "permission_error"},
		{Kind: client.KindAPI, StatusCode: 429, Type: "rate_limit_error", Code: "enforced_spend_limit_reached"},
	} {
		b := setup(t, e)
		err := b.run(t, context.Background(), 0, Payload{})
		if IsFailure(err) {
			t.Errorf("%d: IsFailure = true, want false: the task must keep its retries", e.StatusCode)
		}
		if len(b.pauser.paused) != 1 || b.pauser.paused[0] != "q-"+b.campaign {
			t.Errorf("%d: paused = %v, want [q-%s]", e.StatusCode, b.pauser.paused, b.campaign)
		}
		if _, ok := b.result(t); ok {
			t.Errorf("%d: an account fault recorded a result", e.StatusCode)
		}
		if want := `resume="go run ./cmd/enqueue --resume --queue q-` + b.campaign; !strings.Contains(b.logs.String(), want) {
			t.Errorf("%d: the pause's log lacks %s:\n%s", e.StatusCode, want, b.logs.String())
		}
	}

	// A local run, which ends at a pause, has its own advice.
	b := setup(t, &client.Error{Kind: client.KindAPI, StatusCode: 401, Type: "authentication_error"})
	b.handler.cfg.ResumeHint = "run the same command again"
	b.run(t, context.Background(), 0, Payload{})
	if logs := b.logs.String(); !strings.Contains(logs, `resume="run the same command again"`) || strings.Contains(logs, "--resume") {
		t.Errorf("the pause's log with a ResumeHint:\n%s\nwant only the hint", logs)
	}
}

func TestHandlerMaxCallsBoundsWaits(t *testing.T) {
	t.Parallel()
	b := setup(t, &client.Error{Kind: client.KindAPI, StatusCode: 429, Type: "rate_limit_error"})
	for range DefaultMaxCalls - 1 {
		if _, _, err := b.store.BeginCall(context.Background(), b.campaign, testID, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	err := b.run(t, context.Background(), 0, Payload{})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v, want SkipRetry once MaxCalls is reached", err)
	}
	if r, _ := b.result(t); r.Status != campaign.StatusFailed || r.Attempts != DefaultMaxCalls {
		t.Errorf("result = %+v, want failed after %d calls", r, DefaultMaxCalls)
	}
}

// TestHandlerFirstRunCountsEveryCall: a first run skips the store's check
// before its call, so its call is counted afterwards: with the result, or
// on its own when the answer was a wait.
func TestHandlerFirstRunCountsEveryCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	limited := &client.Error{Kind: client.KindAPI, StatusCode: 429, Type: "rate_limit_error"}
	b := setup(t, limited, limited, nil)
	for i := range 2 { // a 429 is a wait: asynq runs the task again with no retry counted
		if err := b.run(t, ctx, 0, Payload{}); err == nil || IsFailure(err) {
			t.Fatalf("429 %d: err = %v, want a wait", i+1, err)
		}
		if n, _ := b.store.Calls(ctx, b.campaign, testID); n != int64(i+1) {
			t.Errorf("after 429 %d: calls counted = %d, want %d", i+1, n, i+1)
		}
	}
	if err := b.run(t, ctx, 0, Payload{PriorAttempts: 4}); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if r, ok := b.result(t); !ok || r.Status != campaign.StatusCreated || r.Attempts != 4+3 {
		t.Errorf("result = %+v, want created with attempts 7 (4 before --retry-failed, 3 now)", r)
	}
	if n, _ := b.store.Calls(ctx, b.campaign, testID); n != 3 || b.caller.calls != 3 {
		t.Errorf("calls counted = %d, made = %d; want 3 and 3", n, b.caller.calls)
	}

	// A first run of a profile that has a result (a second producer
	// enqueued it again as its task completed) calls again: the newest URL
	// replaces the row, and the count says both calls.
	b = setup(t)
	for range 2 {
		if err := b.run(t, ctx, 0, Payload{}); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := b.store.Progress(ctx, b.campaign)
	if r, _ := b.result(t); r.Attempts != 2 || b.caller.calls != 2 || p.Created != 1 {
		t.Errorf("after a duplicate first run: attempts %d, calls %d, created %d; want 2, 2, 1", r.Attempts, b.caller.calls, p.Created)
	}
}

func TestHandlerDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.run(t, context.Background(), 0, Payload{Deadline: time.Now().Add(-time.Minute)})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v, want SkipRetry", err)
	}
	if b.caller.calls != 0 {
		t.Errorf("calls = %d, want 0 after the deadline", b.caller.calls)
	}
	if r, _ := b.result(t); r.ErrorType != "campaign_deadline_passed" {
		t.Errorf("error_type = %q, want campaign_deadline_passed", r.ErrorType)
	}

	// A profile whose calls failed before the deadline names the last one.
	b = setup(t, &client.Error{Kind: client.KindAPI, StatusCode: 500, Type: "api_error", RequestID: "req_1"},
		&client.Error{Kind: client.KindAPI, StatusCode: 529, Type: "overloaded_error", RequestID: "req_2"})
	deadline := time.Now().Add(time.Hour)
	for retried := range 2 {
		if err := b.run(t, context.Background(), retried, Payload{Deadline: deadline}); !IsFailure(err) {
			t.Fatalf("run %d: err = %v, want a counted retry", retried, err)
		}
	}
	err = b.run(t, context.Background(), 2, Payload{Deadline: time.Now().Add(-time.Second)})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("err = %v, want SkipRetry", err)
	}
	if r, _ := b.result(t); r.ErrorType != "campaign_deadline_passed" || r.RequestID != "req_2" || r.Attempts != 2 {
		t.Errorf("result = %s %s after %d attempts, want campaign_deadline_passed req_2 after 2", r.ErrorType, r.RequestID, r.Attempts)
	}
}

func TestHandlerWritesNothingOnceContextIsDone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.run(t, ctx, 0, Payload{}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if _, ok := b.result(t); ok {
		t.Error("a result was written after the context ended")
	}
}

func TestHandlerLimiterWaitGivesTaskBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.handler.cfg.Limiter = blockedLimiter{}
	err := b.run(t, context.Background(), 0, Payload{})
	if err == nil || IsFailure(err) {
		t.Errorf("err = %v, want a wait that is not a failure", err)
	}
	if b.caller.calls != 0 {
		t.Errorf("calls = %d, want 0", b.caller.calls)
	}
}

// allowLimiter grants calls through Allow as told; its Wait never does.
type allowLimiter struct {
	blockedLimiter
	allow bool
}

func (l allowLimiter) Allow() bool { return l.allow }

func TestHandlerAllowSkipsTheWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.handler.cfg.Limiter = allowLimiter{allow: true}
	if err := b.run(t, context.Background(), 0, Payload{}); err != nil {
		t.Fatalf("err = %v, want nil: a free token needs no wait", err)
	}
	if b.caller.calls != 1 {
		t.Errorf("calls = %d, want 1", b.caller.calls)
	}

	// No free token: the handler waits, and this Wait never grants one.
	b = setup(t)
	b.handler.cfg.Limiter = allowLimiter{allow: false}
	if err := b.run(t, context.Background(), 0, Payload{}); err == nil || IsFailure(err) {
		t.Errorf("err = %v, want a wait that is not a failure", err)
	}
	if b.caller.calls != 0 {
		t.Errorf("calls = %d, want 0", b.caller.calls)
	}
}

func TestHandlerInvalidIDNeverCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.run(t, context.Background(), 0, Payload{ProfileID: "../../v1/messages"})
	if !errors.Is(err, asynq.SkipRetry) || b.caller.calls != 0 {
		t.Errorf("err = %v, calls = %d; want SkipRetry and no call", err, b.caller.calls)
	}
}

func TestProcessTaskBadPayload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, payload := range []string{`{`, `{"v":99,"campaign":"c","user_profile_id":"uprof_a"}`, `{"v":1,"campaign":"../x"}`} {
		err := b.handler.ProcessTask(context.Background(), asynq.NewTask(TypeEnrollmentURL, []byte(payload)))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("payload %s: err = %v, want SkipRetry", payload, err)
		}
	}
	if b.caller.calls != 0 {
		t.Errorf("calls = %d, want 0", b.caller.calls)
	}
}

func TestNewTaskRefusesWhatCannotRun(t *testing.T) {
	t.Parallel()
	if _, err := NewTask(Payload{Campaign: "c", ProfileID: "uprof_"}); err == nil {
		t.Error("NewTask accepted the bare prefix")
	}
	if _, err := NewTask(Payload{Campaign: "a b", ProfileID: testID}); err == nil {
		t.Error("NewTask accepted a campaign name with a space")
	}
	task, err := NewTask(Payload{Campaign: "c", ProfileID: testID, Columns: map[string]string{"email": "e"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePayload(task.Payload())
	if err != nil || p.ProfileID != testID || p.Columns["email"] != "e" || p.Version != PayloadVersion {
		t.Errorf("round trip = %+v, %v", p, err)
	}
}

// TestHandlerRefresh checks a refresh task: a stored URL that expires by
// RefreshBefore is minted again and replaced; a newer one ends the task
// without a call; a refresh that fails keeps a URL that is still alive.
func TestHandlerRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stale := func(b *bundle) {
		t.Helper()
		old := campaign.Result{Campaign: b.campaign, ProfileID: testID, Seq: 3, Status: campaign.StatusCreated,
			URL: "https://old", ExpiresAt: time.Now().Add(20 * time.Minute), Attempts: 1}
		if _, err := b.store.Put(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now().Add(30 * time.Minute)

	b := setup(t)
	stale(b)
	if err := b.run(t, ctx, 0, Payload{Seq: 3, RefreshBefore: cutoff}); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if r, _ := b.result(t); r.URL == "https://old" || r.Status != campaign.StatusCreated || b.caller.calls != 1 {
		t.Errorf("after refresh: %+v, %d calls; want a new URL from 1 call", r, b.caller.calls)
	}
	if err := b.run(t, ctx, 0, Payload{Seq: 3, RefreshBefore: cutoff}); err != nil || b.caller.calls != 1 {
		t.Errorf("refresh run again: %v, %d calls; want no second call", err, b.caller.calls)
	}
	if err := b.run(t, ctx, 1, Payload{Seq: 3}); err != nil || b.caller.calls != 1 {
		t.Errorf("plain rerun after refresh: %v, %d calls; want none", err, b.caller.calls)
	}

	b = setup(t, &client.Error{Kind: client.KindAPI, StatusCode: 404, Type: "not_found_error", Message: "gone"})
	stale(b)
	// The profile keeps its live URL as its result: the task is done, not
	// archived as a failure, and the row counts the failed call.
	if err := b.run(t, ctx, 0, Payload{Seq: 3, RefreshBefore: cutoff, PriorAttempts: 1}); err != nil {
		t.Errorf("failed refresh: err %v, want nil (the live URL is the result)", err)
	}
	if r, _ := b.result(t); r.URL != "https://old" || r.Status != campaign.StatusCreated || r.Attempts != 2 {
		t.Errorf("after a failed refresh: %+v, want the live old URL kept, with 2 attempts", r)
	}
	// The log says what became of the profile: it did not fail.
	if logs := b.logs.String(); strings.Contains(logs, "profile failed") ||
		!strings.Contains(logs, "keeps its live url") || !strings.Contains(logs, "error_type=not_found_error") {
		t.Errorf("log of a failed refresh that kept the live URL:\n%s\nwant 'keeps its live url' with its error_type, not 'profile failed'", logs)
	}
}
