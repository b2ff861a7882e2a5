package tasks

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/enrollq/enrollq/internal/client"
)

// Action is what the queue does after an API answer.
type Action int

const (
	// Succeed stores the URL and completes the task.
	Succeed Action = iota
	// Fail records the profile as failed and does not retry.
	Fail
	// Retry tries again after backoff, counting against MaxRetry.
	Retry
	// RetryMalformed is Retry with the smaller MaxMalformed budget.
	RetryMalformed
	// Wait tries again after the API's hint; not a failure.
	Wait
	// Pause pauses the queue: the fault is the account's, not the
	// profile's. The task waits without using up its retries.
	Pause
)

var actionNames = [...]string{"succeed", "fail", "retry", "retry_malformed", "wait", "pause"}

func (a Action) String() string { return actionNames[a] }

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Delay is the API's wait hint for Wait; 0 means "use backoff".
	Delay time.Duration
	// Reason says why, for logs and the result's error_type.
	Reason string
}

// spendCodes are the error_code values of a 429 that is a spend cap, not a
// rate limit: waiting does not help, money does.
var spendCodes = []string{
	"enforced_spend_limit_reached",
	"spend_limit_reached",
	"credit_balance_too_low",
	"billing_limit_reached",
}

// Decide maps one call's outcome to the queue's next step. It is the table
// of the package documentation; err is nil on success.
func Decide(err error) Decision {
	if err == nil {
		return Decision{Action: Succeed}
	}
	var e *client.Error
	if !errors.As(err, &e) {
		return Decision{Action: Retry, Reason: "internal_error"}
	}

	switch e.Kind {
	case client.KindInvalidID:
		return Decision{Action: Fail, Reason: "invalid_user_profile_id"}
	case client.KindCanceled:
		return Decision{Action: Retry, Reason: "canceled"}
	case client.KindMalformed:
		return Decision{Action: RetryMalformed, Reason: "malformed_response"}
	case client.KindTimeout:
		return Decision{Action: Retry, Reason: "timeout"}
	case client.KindNetwork:
		return Decision{Action: Retry, Reason: "network_error"}
	}

	reason := e.Type
	if reason == "" {
		reason = fmt.Sprintf("http_%d", e.StatusCode)
	}
	switch {
	case e.StatusCode == http.StatusTooManyRequests && slices.Contains(spendCodes, e.Code):
		return Decision{Action: Pause, Reason: e.Code}
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusPaymentRequired ||
		e.StatusCode == http.StatusForbidden:
		return Decision{Action: Pause, Reason: reason}
	case e.ShouldRetry != nil && !*e.ShouldRetry:
		return Decision{Action: Fail, Reason: reason}
	case e.StatusCode == http.StatusTooManyRequests:
		return Decision{Action: Wait, Delay: e.RetryAfter, Reason: reason}
	case e.ShouldRetry != nil && *e.ShouldRetry:
		return Decision{Action: Retry, Reason: reason}
	case client.RetryableStatus(e.StatusCode):
		return Decision{Action: Retry, Reason: reason}
	}
	return Decision{Action: Fail, Reason: reason}
}

// Backoff is capped exponential backoff with full jitter: attempt n waits a
// random time in [Base, min(Max, Base*2^n)]. The floor of Base keeps a
// retry from ever running at once.
type Backoff struct {
	Base, Max time.Duration
	// Rand returns a float in [0, 1). Default math/rand/v2.Float64.
	Rand func() float64
}

// Delay returns the wait before retry n (0 for the first retry).
func (b Backoff) Delay(n int) time.Duration {
	ceil := b.Base
	for i := 0; i < n && ceil < b.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.Max)
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return b.Base + time.Duration(r()*float64(ceil-b.Base))
}

// waitError is returned to asynq for a retry that is not a failure: a rate
// limit or a paused queue. IsFailure reports false for it and RetryDelay
// uses its delay.
type waitError struct {
	delay time.Duration
	err   error
}

func (e *waitError) Error() string { return e.err.Error() }
func (e *waitError) Unwrap() error { return e.err }

// retryError carries a chosen backoff for a counted retry.
type retryError struct {
	delay time.Duration
	err   error
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// IsFailure is asynq's Config.IsFailure: rate-limit waits and pauses do not
// use up a task's retries.
func IsFailure(err error) bool {
	var w *waitError
	return !errors.As(err, &w)
}

// RetryDelay is asynq's Config.RetryDelayFunc: the delay the handler chose,
// or fallback's backoff for an error that chose none (a panic, say).
func RetryDelay(fallback Backoff) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var w *waitError
		if errors.As(err, &w) {
			return w.delay
		}
		var r *retryError
		if errors.As(err, &r) {
			return r.delay
		}
		return fallback.Delay(n)
	}
}
