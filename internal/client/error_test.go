package client_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/client"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	// now is a whole second, so that HTTP dates built from it are exact.
	now := time.Date(2026, 12, 3, 19, 15, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }

	for _, tc := range []struct {
		name     string
		header   map[string]string
		want     time.Duration
		wantHint bool
	}{
		{"none", nil, 0, false},
		{"empty", map[string]string{"retry-after": ""}, 0, false},
		{"seconds", map[string]string{"retry-after": "3"}, 3 * time.Second, true},
		{"seconds with spaces", map[string]string{"retry-after": " 3 "}, 3 * time.Second, true},
		{"zero", map[string]string{"retry-after": "0"}, 0, true},
		{"fractional", map[string]string{"retry-after": "0.5"}, 500 * time.Millisecond, true},
		{"negative", map[string]string{"retry-after": "-5"}, 0, true},
		{"garbage", map[string]string{"retry-after": "soon"}, 0, false},
		{"NaN", map[string]string{"retry-after": "NaN"}, 0, false},
		{"Inf", map[string]string{"retry-after": "+Inf"}, 0, false},
		{"huge", map[string]string{"retry-after": "999999999"}, client.MaxRetryAfter, true},
		{"just over the cap", map[string]string{"retry-after": "601"}, client.MaxRetryAfter, true},
		{"at the cap", map[string]string{"retry-after": "600"}, client.MaxRetryAfter, true},
		{"http date ahead", map[string]string{"retry-after": date(10 * time.Second)}, 10 * time.Second, true},
		{"http date past", map[string]string{"retry-after": date(-time.Minute)}, 0, true},
		{"http date far ahead", map[string]string{"retry-after": date(48 * time.Hour)}, client.MaxRetryAfter, true},
		{"rfc 850 date", map[string]string{"retry-after": now.Add(7 * time.Second).Format(time.RFC850)}, 7 * time.Second, true},
		{"ms wins over seconds", map[string]string{"retry-after-ms": "1500", "retry-after": "3"}, 1500 * time.Millisecond, true},
		{"ms alone", map[string]string{"retry-after-ms": "250"}, 250 * time.Millisecond, true},
		{"ms fractional", map[string]string{"retry-after-ms": "0.5"}, 500 * time.Microsecond, true},
		{"ms negative", map[string]string{"retry-after-ms": "-100"}, 0, true},
		{"ms over the cap", map[string]string{"retry-after-ms": "600001"}, client.MaxRetryAfter, true},
		{"ms garbage falls back to seconds", map[string]string{"retry-after-ms": "soon", "retry-after": "2"}, 2 * time.Second, true},
		{"ms garbage alone", map[string]string{"retry-after-ms": "soon"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			got, hint := client.RetryAfter(h, now)
			if got != tc.want || hint != tc.wantHint {
				t.Errorf("RetryAfter(%v) = %v, %t, want %v, %t", tc.header, got, hint, tc.want, tc.wantHint)
			}
		})
	}
}

// TestRetryAfterHugeMilliseconds checks the cap on a retry-after-ms value
// too large for a time.Duration.
func TestRetryAfterHugeMilliseconds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 19, 15, 0, 0, time.UTC)
	for _, v := range []string{"99999999999999", "1e20", "1e300"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			h.Set("retry-after-ms", v)
			got, hint := client.RetryAfter(h, now)
			if got != client.MaxRetryAfter || !hint {
				t.Errorf("RetryAfter(retry-after-ms: %s) = %v, %t, want %v, true", v, got, hint, client.MaxRetryAfter)
			}
		})
	}
}

func TestRetryableStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		want   bool
	}{
		{400, false}, {401, false}, {402, false}, {403, false}, {404, false},
		{405, false}, {408, true}, {409, true}, {413, false}, {422, false},
		{429, true}, {500, true}, {502, true}, {503, true}, {504, true}, {529, true},
	} {
		if got := client.RetryableStatus(tc.status); got != tc.want {
			t.Errorf("RetryableStatus(%d) = %t, want %t", tc.status, got, tc.want)
		}
	}
}

func TestErrorRetryable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  client.Error
		want bool
	}{
		{"invalid id", client.Error{Kind: client.KindInvalidID}, false},
		{"canceled", client.Error{Kind: client.KindCanceled}, false},
		{"timeout", client.Error{Kind: client.KindTimeout}, true},
		{"network", client.Error{Kind: client.KindNetwork}, true},
		{"malformed", client.Error{Kind: client.KindMalformed, StatusCode: 200}, true},
		{"api 400", client.Error{Kind: client.KindAPI, StatusCode: 400}, false},
		{"api 429", client.Error{Kind: client.KindAPI, StatusCode: 429}, true},
		{"api 503", client.Error{Kind: client.KindAPI, StatusCode: 503}, true},
		{"should-retry true beats 400", client.Error{Kind: client.KindAPI, StatusCode: 400, ShouldRetry: ptr(true)}, true},
		{"should-retry false beats 503", client.Error{Kind: client.KindAPI, StatusCode: 503, ShouldRetry: ptr(false)}, false},
		{"should-retry false beats network", client.Error{Kind: client.KindNetwork, ShouldRetry: ptr(false)}, false},
	} {
		if got := tc.err.Retryable(); got != tc.want {
			t.Errorf("%s: Retryable() = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  *client.Error
		want string
	}{
		{
			"api error with everything",
			&client.Error{ProfileID: "uprof_A", Kind: client.KindAPI, StatusCode: 429, Type: "rate_limit_error",
				Code: "enforced_spend_limit_reached", Message: "limit", RequestID: "req_1"},
			"create enrollment url for uprof_A: 429 rate_limit_error (enforced_spend_limit_reached): limit [request_id req_1]",
		},
		{
			"status without type",
			&client.Error{ProfileID: "uprof_A", Kind: client.KindAPI, StatusCode: 502, Message: "html"},
			"create enrollment url for uprof_A: 502 Bad Gateway: html",
		},
		{
			"no status",
			&client.Error{ProfileID: "uprof_A", Kind: client.KindTimeout, Message: "no answer within 1s"},
			"create enrollment url for uprof_A: timeout: no answer within 1s",
		},
		{
			"kind only",
			&client.Error{ProfileID: "", Kind: client.KindInvalidID},
			"create enrollment url for : invalid_id",
		},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%s: Error() =\n%q\nwant\n%q", tc.name, got, tc.want)
		}
	}
}

func TestErrorUnwrap(t *testing.T) {
	t.Parallel()
	cause := errors.New("read: connection reset by peer")
	e := &client.Error{Kind: client.KindNetwork, Err: cause}
	if !errors.Is(e, cause) {
		t.Errorf("errors.Is(e, cause) = false, want true")
	}
	wrapped := errors.Join(errors.New("task"), e)
	var got *client.Error
	if !errors.As(wrapped, &got) || got != e {
		t.Errorf("errors.As through a wrap = %v, want the *Error", got)
	}
	if strings.Contains(e.Error(), cause.Error()) {
		t.Errorf("Error() = %q repeats Err; want Message only", e.Error())
	}
}
