package tasks

import (
	"errors"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/client"
)

func apiErr(status int, typ string) *client.Error {
	return &client.Error{ProfileID: "uprof_x", Kind: client.KindAPI, StatusCode: status, Type: typ, RequestID: "req_1"}
}

func with(e *client.Error, f func(*client.Error)) *client.Error {
	f(e)
	return e
}

func boolp(b bool) *bool { return &b }

// TestDecide is DESIGN.md's outcome table, one row per response.
func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantAction Action
		wantDelay  time.Duration
		wantReason string
	}{
		{"200 valid", nil, Succeed, 0, ""},
		{"200 malformed", &client.Error{Kind: client.KindMalformed, StatusCode: 200}, RetryMalformed, 0, "malformed_response"},
		{"429 retry-after", with(apiErr(429, "rate_limit_error"), func(e *client.Error) {
			e.RetryAfter, e.HasRetryAfter = 2*time.Second, true
		}), Wait, 2 * time.Second, "rate_limit_error"},
		{"429 retry-after-ms", with(apiErr(429, "rate_limit_error"), func(e *client.Error) {
			e.RetryAfter, e.HasRetryAfter = 250*time.Millisecond, true
		}), Wait, 250 * time.Millisecond, "rate_limit_error"},
		{"429 no hint", apiErr(429, "rate_limit_error"), Wait, 0, "rate_limit_error"},
		{"429 spend limit", with(apiErr(429, "rate_limit_error"), func(e *client.Error) {
			e.Code = "enforced_spend_limit_reached"
		}), Pause, 0, "enforced_spend_limit_reached"},
		{"408", apiErr(408, "timeout_error"), Retry, 0, "timeout_error"},
		{"409", apiErr(409, "conflict_error"), Retry, 0, "conflict_error"},
		{"500", apiErr(500, "api_error"), Retry, 0, "api_error"},
		{"502 html", apiErr(502, ""), Retry, 0, "http_502"},
		{"503", apiErr(503, ""), Retry, 0, "http_503"},
		{"504", apiErr(504, "timeout_error"), Retry, 0, "timeout_error"},
		{"529", apiErr(529, "overloaded_error"), Retry, 0, "overloaded_error"},
		{"timeout", &client.Error{Kind: client.KindTimeout}, Retry, 0, "timeout"},
		{"connection reset", &client.Error{Kind: client.KindNetwork}, Retry, 0, "network_error"},
		{"x-should-retry false on 500", with(apiErr(500, "api_error"), func(e *client.Error) {
			e.ShouldRetry = boolp(false)
		}), Fail, 0, "api_error"},
		{"x-should-retry true on 400", with(apiErr(400, "invalid_request_error"), func(e *client.Error) {
			e.ShouldRetry = boolp(true)
		}), Retry, 0, "invalid_request_error"},
		{"x-should-retry false on 429", with(apiErr(429, "rate_limit_error"), func(e *client.Error) {
			e.ShouldRetry = boolp(false)
		}), Fail, 0, "rate_limit_error"},
		{"400", apiErr(400, "invalid_request_error"), Fail, 0, "invalid_request_error"},
		{"404", apiErr(404, "not_found_error"), Fail, 0, "not_found_error"},
		{"413", apiErr(413, "request_too_large"), Fail, 0, "request_too_large"},
		{"401", apiErr(401, "authentication_error"), Pause, 0, "authentication_error"},
		{"402", apiErr(402, "billing_error"), Pause, 0, "billing_error"},
		{"403", apiErr(403, "permission_error"), Pause, 0, "permission_error"},
		{"401 with x-should-retry false still pauses", with(apiErr(401, "authentication_error"), func(e *client.Error) {
			e.ShouldRetry = boolp(false)
		}), Pause, 0, "authentication_error"},
		{"invalid id", &client.Error{Kind: client.KindInvalidID}, Fail, 0, "invalid_user_profile_id"},
		{"not a client error", errors.New("boom"), Retry, 0, "internal_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.err)
			if got.Action != tt.wantAction || got.Delay != tt.wantDelay || got.Reason != tt.wantReason {
				t.Errorf("Decide = {%v %v %q}, want {%v %v %q}",
					got.Action, got.Delay, got.Reason, tt.wantAction, tt.wantDelay, tt.wantReason)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := Backoff{Base: time.Second, Max: 5 * time.Minute}
	tests := []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{0, 0, time.Second},
		{0, 0.999, time.Second},
		{1, 1, 2 * time.Second},
		{3, 0.5, time.Second + 3500*time.Millisecond},
		{20, 1, 5 * time.Minute},
		{1000, 0, time.Second},
	}
	for _, tt := range tests {
		b.Rand = func() float64 { return tt.r }
		if got := b.Delay(tt.n); got != tt.want {
			t.Errorf("Delay(%d) with rand %v = %v, want %v", tt.n, tt.r, got, tt.want)
		}
	}
	b.Rand = nil
	for n := range 50 {
		if d := b.Delay(n); d < b.Base || d > b.Max {
			t.Fatalf("Delay(%d) = %v, outside [%v, %v]", n, d, b.Base, b.Max)
		}
	}
}

func TestIsFailureAndRetryDelay(t *testing.T) {
	t.Parallel()
	fallback := Backoff{Base: 7 * time.Second, Max: 7 * time.Second}
	delay := RetryDelay(fallback)
	tests := []struct {
		name        string
		err         error
		wantFailure bool
		wantDelay   time.Duration
	}{
		{"wait", &waitError{delay: 3 * time.Second, err: errors.New("429")}, false, 3 * time.Second},
		{"counted retry", &retryError{delay: 4 * time.Second, err: errors.New("500")}, true, 4 * time.Second},
		{"plain error", errors.New("panic"), true, 7 * time.Second},
	}
	for _, tt := range tests {
		if got := IsFailure(tt.err); got != tt.wantFailure {
			t.Errorf("%s: IsFailure = %v, want %v", tt.name, got, tt.wantFailure)
		}
		if got := delay(0, tt.err, nil); got != tt.wantDelay {
			t.Errorf("%s: RetryDelay = %v, want %v", tt.name, got, tt.wantDelay)
		}
	}
}
