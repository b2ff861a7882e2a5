package sandbox

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Error types, as error.type carries them.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typeBilling        = "billing_error"
	typePermission     = "permission_error"
	typeNotFound       = "not_found_error"
	typeConflict       = "conflict_error"
	typeTooLarge       = "request_too_large"
	typeRateLimit      = "rate_limit_error"
	typeAPI            = "api_error"
	typeTimeout        = "timeout_error"
	typeOverloaded     = "overloaded_error"
)

// Codes carried in error.details.error_code.
const (
	codeProfileNotFound = "user_profile_not_found"
	codeSpendLimit      = "enforced_spend_limit_reached"
)

// Response headers.
const (
	hdrRequestID    = "Request-Id"
	hdrOrgID        = "Anthropic-Organization-Id"
	hdrLimit        = "Anthropic-Ratelimit-Requests-Limit"
	hdrRemaining    = "Anthropic-Ratelimit-Requests-Remaining"
	hdrReset        = "Anthropic-Ratelimit-Requests-Reset"
	hdrRetryAfter   = "Retry-After"
	hdrRetryAfterMS = "Retry-After-Ms"
	hdrShouldRetry  = "X-Should-Retry"
)

const contentTypeJSON = "application/json"

// urlBase starts every minted URL.
const urlBase = "https://platform.claude.com/user-profiles/enrollment/"

// Labels under which Stats.ByStatus counts answers that have no status.
const (
	labelReset = "reset" // connection closed without a response
	labelDrop  = "drop"  // connection closed in the middle of the body
	labelGone  = "gone"  // the client went away before the answer
)

// outcome is how a request was answered, for the counters and the log.
type outcome struct {
	label   string // the status code, or one of the labels above
	limited bool   // a 429 served by the token bucket, not injected
	abort   bool   // the connection could not be hijacked; abort the handler
}

// apiError is an error answer to send. It is not a Go error: nothing went
// wrong in the sandbox when it sends one.
type apiError struct {
	status  int
	typ     string
	message string
	code    string // error.details.error_code, when not empty
}

type errorBody struct {
	Type      string      `json:"type"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id"`
}

type errorDetail struct {
	Type    string        `json:"type"`
	Message string        `json:"message"`
	Details *errorDetails `json:"details,omitempty"`
}

type errorDetails struct {
	ErrorCode string `json:"error_code"`
}

// urlBody is the success body of both routes.
type urlBody struct {
	ExpiresAt string `json:"expires_at"`
	Type      string `json:"type"`
	URL       string `json:"url,omitempty"`
}

// fail answers with e in the API's error body.
func (s *Server) fail(ex *exchange, e apiError) outcome {
	body := errorBody{
		Type:      "error",
		Error:     errorDetail{Type: e.typ, Message: e.message},
		RequestID: ex.requestID,
	}
	if e.code != "" {
		body.Error.Details = &errorDetails{ErrorCode: e.code}
	}
	return s.writeJSON(ex, e.status, body)
}

// mint returns a new URL, valid for Config.TTL from now.
func (s *Server) mint(ex *exchange) urlBody {
	return urlBody{
		ExpiresAt: formatExpiry(s.cfg.Now().Add(s.cfg.TTL)),
		Type:      ex.route.objectType(),
		URL:       urlBase + randomAlnum(40),
	}
}

func formatExpiry(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) writeJSON(ex *exchange, status int, v any) outcome {
	b, err := jsonBody(v)
	if err != nil {
		return s.internalError(ex, err)
	}
	return writeBody(ex.w, status, contentTypeJSON, b)
}

// internalError answers 500 when the sandbox itself fails to build an
// answer, which only a bug can cause.
func (s *Server) internalError(ex *exchange, err error) outcome {
	s.cfg.Logger.Error("build response", slog.String("request_id", ex.requestID), slog.Any("error", err))
	http.Error(ex.w, "sandbox: "+err.Error(), http.StatusInternalServerError)
	return outcome{label: strconv.Itoa(http.StatusInternalServerError)}
}

func jsonBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) outcome {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return outcome{label: strconv.Itoa(status)}
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n letters and digits from crypto/rand. Bytes of 248
// and above are skipped so that every character is equally likely.
func randomAlnum(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, b := range buf {
			if b >= 248 || len(out) == n {
				continue
			}
			out = append(out, alnum[int(b)%len(alnum)])
		}
	}
	return string(out)
}

func newRequestID() string { return "req_" + randomAlnum(24) }

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
