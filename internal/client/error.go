package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
)

// Kind sorts failures by what caused them, before any policy decides what to
// do about them.
type Kind string

const (
	// KindAPI is an HTTP error answer from the API (or a proxy before it).
	KindAPI Kind = "api"
	// KindMalformed is a 200 whose body cannot be used.
	KindMalformed Kind = "malformed"
	// KindTimeout is a call that hit its deadline.
	KindTimeout Kind = "timeout"
	// KindNetwork is a connection refused, reset or cut mid-body.
	KindNetwork Kind = "network"
	// KindInvalidID is an id refused before anything was sent.
	KindInvalidID Kind = "invalid_id"
	// KindCanceled is a call abandoned because its caller's context ended.
	KindCanceled Kind = "canceled"
)

// MaxRetryAfter caps any wait the API asks for, so that a garbage or huge
// hint cannot park a task for days.
const MaxRetryAfter = 10 * time.Minute

// Error is every failure of Create. It carries what the API said, so that
// the caller's retry policy can decide, and nothing secret: no key, no URL.
type Error struct {
	ProfileID  string
	Kind       Kind
	StatusCode int    // 0 when no HTTP answer arrived
	Type       string // error.type, e.g. "rate_limit_error"; "" when absent
	Code       string // error.details.error_code, e.g. "enforced_spend_limit_reached"
	Message    string // error.message, or a description of the fault
	RequestID  string // request-id header, else the body's request_id

	// RetryAfter is the wait the API asked for (retry-after-ms or
	// retry-after, seconds or HTTP date), capped at MaxRetryAfter.
	// HasRetryAfter tells a hint of zero from no hint.
	RetryAfter    time.Duration
	HasRetryAfter bool

	// ShouldRetry is the x-should-retry header: nil when absent.
	ShouldRetry *bool

	// RateLimit holds the anthropic-ratelimit-requests-* headers of an API
	// answer; its zero value (Limit 0) means none arrived.
	RateLimit RateLimitInfo

	Err error // the transport error, when there was one
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "create enrollment url for %s: ", e.ProfileID)
	switch {
	case e.StatusCode != 0 && e.Type != "":
		fmt.Fprintf(&b, "%d %s", e.StatusCode, e.Type)
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	default:
		b.WriteString(string(e.Kind))
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request_id %s]", e.RequestID)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the same call could succeed later: the
// x-should-retry header when sent, otherwise the status or kind.
func (e *Error) Retryable() bool {
	if e.ShouldRetry != nil {
		return *e.ShouldRetry
	}
	switch e.Kind {
	case KindInvalidID, KindCanceled:
		return false
	case KindAPI:
		return RetryableStatus(e.StatusCode)
	}
	return true
}

// RetryableStatus is the status rule alone: 408, 409, 429 and 5xx (529
// included) may succeed later; other 4xx will not.
func RetryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusConflict ||
		status == http.StatusTooManyRequests || status >= 500
}

// classify turns an SDK error into an *Error. ctx is the caller's context,
// not the call's: its end means the caller gave up, while the call's own
// deadline means the API was too slow.
func (c *Client) classify(ctx context.Context, profileID string, resp *http.Response, err error) *Error {
	e := &Error{ProfileID: profileID, Err: err}

	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		e.Kind = KindAPI
		e.StatusCode = apiErr.StatusCode
		e.Type = string(apiErr.Type())
		e.Code = string(apiErr.ErrorCode())
		e.Message = apiErr.Message
		if apiErr.Response != nil {
			resp = apiErr.Response
		}
		e.RequestID = headerRequestID(resp)
		if e.RequestID == "" {
			e.RequestID = bodyRequestID(apiErr.RawJSON())
		}
		if e.RequestID == "" {
			e.RequestID = apiErr.RequestID
		}
		if e.Message == "" {
			e.Message = describeBody(resp, apiErr.RawJSON())
		}
		e.RetryAfter, e.HasRetryAfter = RetryAfter(resp.Header, c.cfg.Now())
		e.ShouldRetry = shouldRetry(resp.Header)
		e.RateLimit = rateLimitInfo(resp)
		// The API's error text goes into our messages; the SDK's own
		// wrapping (which repeats the request URL and raw body) does not.
		e.Err = nil
		return e
	}

	switch {
	case ctx.Err() != nil:
		e.Kind = KindCanceled
		e.Message = "caller gave up: " + ctx.Err().Error()
	case errors.Is(err, context.DeadlineExceeded):
		e.Kind = KindTimeout
		e.Message = fmt.Sprintf("no answer within %s", c.cfg.Timeout)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
		e.Kind = KindNetwork
		e.Message = "connection closed before the answer was complete"
	default:
		e.Kind = KindNetwork
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			e.Kind = KindTimeout
		}
		e.Message = transportMessage(err)
	}
	return e
}

// transportMessage keeps the part of a transport error that helps an
// operator (the syscall and address), without the SDK's request dump.
func transportMessage(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Error()
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && len(msg)-i < 200 {
		return msg[i+2:]
	}
	return msg
}

func headerRequestID(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	return resp.Header.Get("Request-Id")
}

func bodyRequestID(raw string) string {
	var b struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal([]byte(raw), &b) != nil {
		return ""
	}
	return b.RequestID
}

// describeBody says what an error answer without a JSON message was, such
// as a proxy's HTML page, without quoting the page.
func describeBody(resp *http.Response, raw string) string {
	ct := ""
	if resp != nil {
		ct = resp.Header.Get("content-type")
	}
	if ct == "" {
		ct = "no content-type"
	}
	return fmt.Sprintf("answer without an API error body (%s, %d bytes)", ct, len(raw))
}

// RetryAfter reads the API's wait hint: retry-after-ms first, then
// retry-after as whole or fractional seconds or an HTTP date. Negative
// values count as zero; huge ones are capped at MaxRetryAfter; garbage is
// no hint at all.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(ms) && !math.IsInf(ms, 0) {
			return seconds(ms / 1000), true
		}
	}
	v := strings.TrimSpace(h.Get("retry-after"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(s) && !math.IsInf(s, 0) {
		return seconds(s), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return clampWait(t.Sub(now)), true
	}
	return 0, false
}

// seconds turns a hint in seconds into a wait, capped before conversion so
// that a huge value cannot overflow into a negative duration.
func seconds(s float64) time.Duration {
	if s > MaxRetryAfter.Seconds() {
		return MaxRetryAfter
	}
	return clampWait(time.Duration(s * float64(time.Second)))
}

func clampWait(d time.Duration) time.Duration {
	return min(max(d, 0), MaxRetryAfter)
}

func shouldRetry(h http.Header) *bool {
	switch strings.ToLower(strings.TrimSpace(h.Get("x-should-retry"))) {
	case "true":
		v := true
		return &v
	case "false":
		v := false
		return &v
	}
	return nil
}

func rateLimitInfo(resp *http.Response) RateLimitInfo {
	info := RateLimitInfo{Limit: -1, Remaining: -1}
	if resp == nil {
		return info
	}
	if n, err := strconv.Atoi(resp.Header.Get("Anthropic-Ratelimit-Requests-Limit")); err == nil {
		info.Limit = n
	}
	if n, err := strconv.Atoi(resp.Header.Get("Anthropic-Ratelimit-Requests-Remaining")); err == nil {
		info.Remaining = n
	}
	if t, err := time.Parse(time.RFC3339, resp.Header.Get("Anthropic-Ratelimit-Requests-Reset")); err == nil {
		info.Reset = t
	}
	return info
}
