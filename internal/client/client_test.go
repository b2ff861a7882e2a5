package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/sandbox"
)

const (
	// testKey is distinctive enough that a leak into any message is found
	// by a substring search.
	testKey     = "sk-ant-test-Zq8wLk3VnP0xRt"
	testProfile = "uprof_01AbCdEf9"

	enrollPath = "/v1/user_profiles/" + testProfile + "/enrollment_url"
	actionPath = "/v1/user_profiles/" + testProfile + "/action_urls"

	// mintedURLPrefix starts every URL the sandbox mints.
	mintedURLPrefix = "https://platform.claude.com/user-profiles/enrollment/"

	// callTimeout is the client timeout of tests that do not test timeouts:
	// long enough never to fire on a loaded machine.
	callTimeout = 10 * time.Second
)

// tap records the last response the sandbox wrote, so that a test can
// compare what the client reports with what was on the wire.
type tap struct {
	mu     sync.Mutex
	header http.Header
	body   bytes.Buffer
}

func (tp *tap) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.header = nil
		tp.body.Reset()
		tp.mu.Unlock()
		next.ServeHTTP(&tapWriter{ResponseWriter: w, tap: tp}, r)
	})
}

// bodyRequestID returns the request_id of the last JSON body written.
func (tp *tap) bodyRequestID(t *testing.T) string {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var b struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(tp.body.Bytes(), &b); err != nil {
		t.Fatalf("sandbox body %q is not JSON: %v", tp.body.String(), err)
	}
	return b.RequestID
}

// tapWriter copies what passes through it into its tap. Unwrap lets
// http.ResponseController reach the real writer to flush and hijack.
type tapWriter struct {
	http.ResponseWriter
	tap *tap
}

func (w *tapWriter) WriteHeader(status int) {
	w.tap.mu.Lock()
	w.tap.header = w.ResponseWriter.Header().Clone()
	w.tap.mu.Unlock()
	w.ResponseWriter.WriteHeader(status)
}

func (w *tapWriter) Write(p []byte) (int, error) {
	w.tap.mu.Lock()
	w.tap.body.Write(p)
	w.tap.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *tapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bundle is a client talking to a sandbox on a loopback port.
type bundle struct {
	sandbox *sandbox.Server
	server  *httptest.Server
	tap     *tap
	client  *client.Client
}

// setup starts a sandbox for sbCfg and a client for cfg pointed at it. The
// client gets testKey and callTimeout unless cfg sets its own.
func setup(t *testing.T, sbCfg sandbox.Config, cfg client.Config) *bundle {
	t.Helper()
	sb, err := sandbox.New(sbCfg)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	tp := &tap{}
	srv := httptest.NewServer(tp.wrap(sb))
	t.Cleanup(srv.Close)

	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = srv.URL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = callTimeout
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return &bundle{sandbox: sb, server: srv, tap: tp, client: c}
}

// asError returns err as a *client.Error, failing the test when it is not.
func asError(t *testing.T, err error) *client.Error {
	t.Helper()
	if err == nil {
		t.Fatal("Create: got nil error, want *client.Error")
	}
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("Create: got error %T %v, want *client.Error", err, err)
	}
	return e
}

// wantLink checks the parts of a link every success shares.
func wantLink(t *testing.T, link client.Link) {
	t.Helper()
	if got := link.URL.Reveal(); !strings.HasPrefix(got, "https://") {
		t.Errorf("URL.Reveal() = %q, want an https:// URL", got)
	}
	if !strings.HasPrefix(link.RequestID, "req_") {
		t.Errorf("RequestID = %q, want req_ prefix", link.RequestID)
	}
	if got := link.ExpiresAt.Location(); got != time.UTC {
		t.Errorf("ExpiresAt location = %v, want UTC", got)
	}
}

func ptr[T any](v T) *T { return &v }

func fmtBoolPtr(p *bool) string {
	if p == nil {
		return "nil"
	}
	if *p {
		return "true"
	}
	return "false"
}

// requestIDWant says what Error.RequestID must hold.
type requestIDWant int

const (
	reqIDHeader requestIDWant = iota // the request-id header: req_...
	reqIDBody                        // the body's request_id
	reqIDNone                        // empty: no answer arrived
	reqIDAny                         // not checked
)

type faultCase struct {
	fault     string
	kind      client.Kind
	status    int
	typ       string
	code      string
	requestID requestIDWant

	// The retry hint must lie in [minWait, maxWait]; hasWait says whether
	// there is one at all.
	hasWait          bool
	minWait, maxWait time.Duration

	shouldRetry *bool
	retryable   bool
}

func apiFault(fault string, status int, typ string, retryable bool) faultCase {
	return faultCase{fault: fault, kind: client.KindAPI, status: status, typ: typ, retryable: retryable}
}

func (tc faultCase) wait(lo, hi time.Duration) faultCase {
	tc.hasWait, tc.minWait, tc.maxWait = true, lo, hi
	return tc
}

func malformedFault(fault string) faultCase {
	return faultCase{fault: fault, kind: client.KindMalformed, status: http.StatusOK, retryable: true}
}

// faultCases holds one row per sandbox fault name.
var faultCases = []faultCase{
	apiFault("400", 400, "invalid_request_error", false),
	apiFault("401", 401, "authentication_error", false),
	apiFault("402", 402, "billing_error", false),
	apiFault("403", 403, "permission_error", false),
	apiFault("404", 404, "not_found_error", false),
	apiFault("408", 408, "timeout_error", true),
	apiFault("409", 409, "conflict_error", true),
	apiFault("413", 413, "request_too_large", false),
	apiFault("429", 429, "rate_limit_error", true).wait(time.Second, time.Second),
	apiFault("500", 500, "api_error", true),
	apiFault("502", 502, "api_error", true),
	apiFault("503", 503, "api_error", true),
	apiFault("504", 504, "timeout_error", true),
	apiFault("529", 529, "overloaded_error", true),
	apiFault("429-nohint", 429, "rate_limit_error", true),
	apiFault("429-ms", 429, "rate_limit_error", true).wait(250*time.Millisecond, 250*time.Millisecond),
	// The date is whole seconds 1 to 2 s ahead of the server's clock; the
	// client reads it a moment later.
	apiFault("429-date", 429, "rate_limit_error", true).wait(time.Nanosecond, 2*time.Second),
	func() faultCase {
		// Retryable follows the status rule; the task policy, not the
		// client, turns the spend code into a pause.
		tc := apiFault("spend", 429, "rate_limit_error", true)
		tc.code = "enforced_spend_limit_reached"
		return tc
	}(),
	// An HTML page has no error.type.
	apiFault("html502", 502, "", true),
	apiFault("html503", 503, "", true),
	func() faultCase {
		tc := apiFault("retry-true", 500, "api_error", true)
		tc.shouldRetry = ptr(true)
		return tc
	}(),
	func() faultCase {
		tc := apiFault("retry-false", 503, "api_error", false)
		tc.shouldRetry = ptr(false)
		return tc
	}(),
	func() faultCase {
		tc := apiFault("no-request-id", 500, "api_error", true)
		tc.requestID = reqIDBody
		return tc
	}(),
	{fault: "slow", kind: client.KindTimeout, requestID: reqIDNone, retryable: true},
	{fault: "reset", kind: client.KindNetwork, requestID: reqIDNone, retryable: true},
	// The 200 headers (and their request-id) arrived before the cut; what
	// the error reports of them is not part of the contract.
	{fault: "drop", kind: client.KindNetwork, requestID: reqIDAny, retryable: true},
	malformedFault("malformed"),
	malformedFault("malformed-url"),
	malformedFault("malformed-expires"),
	malformedFault("malformed-type"),
	malformedFault("malformed-content-type"),
	malformedFault("expired"),
}

func TestFaultCasesCoverEverySandboxFault(t *testing.T) {
	t.Parallel()
	var got []string
	for _, tc := range faultCases {
		got = append(got, tc.fault)
	}
	slices.Sort(got)
	if want := sandbox.FaultNames(); !slices.Equal(got, want) {
		t.Errorf("fault table covers %q,\nwant every sandbox fault %q", got, want)
	}
}

func TestCreateFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range faultCases {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			sbCfg := sandbox.Config{Script: []string{tc.fault}}
			cfg := client.Config{}
			if tc.fault == "slow" {
				sbCfg.SlowDelay = 5 * time.Second
				cfg.Timeout = 200 * time.Millisecond
			}
			b := setup(t, sbCfg, cfg)

			start := time.Now()
			link, err := b.client.Create(context.Background(), testProfile)
			elapsed := time.Since(start)
			e := asError(t, err)

			if link != (client.Link{}) {
				t.Errorf("Link = %+v, want the zero Link alongside an error", link)
			}
			if e.ProfileID != testProfile {
				t.Errorf("ProfileID = %q, want %q", e.ProfileID, testProfile)
			}
			if e.Kind != tc.kind {
				t.Errorf("Kind = %q, want %q (error: %v)", e.Kind, tc.kind, e)
			}
			if e.StatusCode != tc.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tc.status)
			}
			if e.Type != tc.typ {
				t.Errorf("Type = %q, want %q", e.Type, tc.typ)
			}
			if e.Code != tc.code {
				t.Errorf("Code = %q, want %q", e.Code, tc.code)
			}
			if e.Message == "" {
				t.Error("Message is empty, want a description")
			}

			switch tc.requestID {
			case reqIDHeader:
				if !strings.HasPrefix(e.RequestID, "req_") || len(e.RequestID) <= len("req_") {
					t.Errorf("RequestID = %q, want req_ and an id", e.RequestID)
				}
			case reqIDBody:
				want := b.tap.bodyRequestID(t)
				if !strings.HasPrefix(want, "req_") {
					t.Fatalf("sandbox body request_id = %q, want req_ prefix", want)
				}
				if e.RequestID != want {
					t.Errorf("RequestID = %q, want the body's request_id %q", e.RequestID, want)
				}
			case reqIDNone:
				if e.RequestID != "" {
					t.Errorf("RequestID = %q, want empty: no answer arrived", e.RequestID)
				}
			}

			if e.HasRetryAfter != tc.hasWait {
				t.Errorf("HasRetryAfter = %t, want %t", e.HasRetryAfter, tc.hasWait)
			}
			if e.RetryAfter < tc.minWait || e.RetryAfter > tc.maxWait {
				t.Errorf("RetryAfter = %v, want in [%v, %v]", e.RetryAfter, tc.minWait, tc.maxWait)
			}
			if fmtBoolPtr(e.ShouldRetry) != fmtBoolPtr(tc.shouldRetry) {
				t.Errorf("ShouldRetry = %s, want %s", fmtBoolPtr(e.ShouldRetry), fmtBoolPtr(tc.shouldRetry))
			}
			if got := e.Retryable(); got != tc.retryable {
				t.Errorf("Retryable() = %t, want %t", got, tc.retryable)
			}

			msg := e.Error()
			if strings.Contains(msg, testKey) {
				t.Errorf("Error() = %q holds the API key", msg)
			}
			if strings.Contains(msg, mintedURLPrefix) {
				t.Errorf("Error() = %q holds a minted URL", msg)
			}
			if want := "create enrollment url for " + testProfile + ": "; !strings.HasPrefix(msg, want) {
				t.Errorf("Error() = %q, want prefix %q", msg, want)
			}

			if got := b.sandbox.Stats().Requests; got != 1 {
				t.Errorf("sandbox received %d requests, want 1 (the SDK must not retry)", got)
			}
			if tc.fault == "slow" && elapsed > 3*time.Second {
				t.Errorf("slow call took %v, want it cut near the 200ms timeout", elapsed)
			}
		})
	}
}

// TestCreateFaultErrorUnwrap checks what the *Error wraps: the transport
// cause for calls without an answer, nothing for API answers (the SDK's
// error repeats the request URL and raw body).
func TestCreateFaultErrorUnwrap(t *testing.T) {
	t.Parallel()
	t.Run("slow wraps DeadlineExceeded", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sandbox.Config{Script: []string{"slow"}, SlowDelay: 5 * time.Second},
			client.Config{Timeout: 100 * time.Millisecond})
		_, err := b.client.Create(context.Background(), testProfile)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false, want true", err)
		}
	})
	t.Run("api answer wraps nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sandbox.Config{Script: []string{"500"}}, client.Config{})
		_, err := b.client.Create(context.Background(), testProfile)
		if got := errors.Unwrap(err); got != nil {
			t.Errorf("errors.Unwrap(err) = %v, want nil", got)
		}
	})
}

func TestCreateErrorMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{Script: []string{"spend"}}, client.Config{})
	_, err := b.client.Create(context.Background(), testProfile)
	e := asError(t, err)

	want := "create enrollment url for " + testProfile + ": 429 rate_limit_error " +
		"(enforced_spend_limit_reached): This organization has reached its enforced spend limit " +
		"(sandbox fault) [request_id " + e.RequestID + "]"
	if got := err.Error(); got != want {
		t.Errorf("Error() =\n%q\nwant\n%q", got, want)
	}
}

func TestCreateSuccess(t *testing.T) {
	t.Parallel()
	const ttl = 90 * time.Minute
	b := setup(t, sandbox.Config{TTL: ttl}, client.Config{})

	before := time.Now()
	link, err := b.client.Create(context.Background(), testProfile)
	after := time.Now()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	wantLink(t, link)
	if got := link.URL.Reveal(); !strings.HasPrefix(got, mintedURLPrefix) {
		t.Errorf("URL.Reveal() = %q, want prefix %q", got, mintedURLPrefix)
	}
	// The sandbox prints expires_at in whole seconds, truncated.
	lo := before.Add(ttl).Add(-time.Second)
	hi := after.Add(ttl)
	if link.ExpiresAt.Before(lo) || link.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt = %v, want within a second of now+%v (%v to %v)", link.ExpiresAt, ttl, lo, hi)
	}
	// With no rate limit configured the sandbox sends no budget headers.
	if want := (client.RateLimitInfo{Limit: -1, Remaining: -1}); link.RateLimit != want {
		t.Errorf("RateLimit = %+v, want %+v", link.RateLimit, want)
	}
	if got := b.sandbox.Stats().ByStatus["200"]; got != 1 {
		t.Errorf("sandbox served %d 200s, want 1", got)
	}
}

func TestCreateActionURL(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{}, client.Config{Endpoint: client.ActionURL})
	if got := b.client.Endpoint(); got != client.ActionURL {
		t.Errorf("Endpoint() = %q, want %q", got, client.ActionURL)
	}

	link, err := b.client.Create(context.Background(), testProfile)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	wantLink(t, link)
	if got := b.sandbox.Stats().ByProfile[testProfile]; got != 1 {
		t.Errorf("sandbox calls for %s = %d, want 1", testProfile, got)
	}
}

// TestCreateWrongTypeForEndpoint checks that the type check follows the
// endpoint: enrollment_url is the wrong type on the action_urls route.
func TestCreateWrongTypeForEndpoint(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", "req_wrongtype000000000000")
		w.Header().Set("content-type", "application/json")
		expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		io.WriteString(w, `{"expires_at":"`+expires+`","type":"enrollment_url","url":"https://x.test/t"}`)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, client.Config{BaseURL: srv.URL, Endpoint: client.ActionURL})

	_, err := c.Create(context.Background(), testProfile)
	e := asError(t, err)
	if e.Kind != client.KindMalformed || e.StatusCode != http.StatusOK {
		t.Errorf("Kind, StatusCode = %q, %d, want %q, 200", e.Kind, e.StatusCode, client.KindMalformed)
	}
	if e.RequestID != "req_wrongtype000000000000" {
		t.Errorf("RequestID = %q, want req_wrongtype000000000000", e.RequestID)
	}
}

func TestCreateRateLimitInfo(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{Rate: 1, Burst: 5}, client.Config{})

	link, err := b.client.Create(context.Background(), testProfile)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if link.RateLimit.Limit != 5 {
		t.Errorf("RateLimit.Limit = %d, want 5", link.RateLimit.Limit)
	}
	if link.RateLimit.Remaining != 4 {
		t.Errorf("RateLimit.Remaining = %d, want 4", link.RateLimit.Remaining)
	}
	if link.RateLimit.Reset.IsZero() {
		t.Error("RateLimit.Reset is zero, want the time the bucket is full again")
	}
}

// TestCreateTokenBucket429 checks a 429 the sandbox's own limiter serves
// (not an injected fault): it carries retry-after in whole seconds.
func TestCreateTokenBucket429(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{Rate: 0.5, Burst: 1}, client.Config{})
	if _, err := b.client.Create(context.Background(), testProfile); err != nil {
		t.Fatalf("first Create: %v", err)
	}

	_, err := b.client.Create(context.Background(), testProfile)
	e := asError(t, err)
	if e.StatusCode != http.StatusTooManyRequests || e.Type != "rate_limit_error" {
		t.Errorf("StatusCode, Type = %d, %q, want 429, rate_limit_error", e.StatusCode, e.Type)
	}
	if !e.HasRetryAfter || e.RetryAfter < time.Second || e.RetryAfter > 2*time.Second {
		t.Errorf("RetryAfter, HasRetryAfter = %v, %t, want 1s or 2s, true", e.RetryAfter, e.HasRetryAfter)
	}
	if !e.Retryable() {
		t.Error("Retryable() = false, want true")
	}
}

// TestCreateSandboxRefusals runs the answers the sandbox gives by its
// configuration rather than by an injected fault.
func TestCreateSandboxRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		sbCfg  sandbox.Config
		cfg    client.Config
		status int
		typ    string
		code   string
	}{
		{"unknown key", sandbox.Config{Keys: []string{"sk-other"}}, client.Config{},
			401, "authentication_error", ""},
		{"unknown version", sandbox.Config{}, client.Config{Version: "2020-01-01"},
			400, "invalid_request_error", ""},
		{"unknown beta", sandbox.Config{}, client.Config{Betas: []string{"user-profiles-2026-03-24", "nope-2020"}},
			400, "invalid_request_error", ""},
		{"no user-profiles beta", sandbox.Config{}, client.Config{Betas: []string{"files-api-2025-04-14"}},
			400, "invalid_request_error", ""},
		{"workspace mismatch", sandbox.Config{WorkspaceID: "wrkspc_a"}, client.Config{WorkspaceID: "wrkspc_b"},
			403, "permission_error", ""},
		{"profile not found", sandbox.Config{NotFound: []string{testProfile}}, client.Config{},
			404, "not_found_error", ""},
		{"profile bad request", sandbox.Config{BadRequest: []string{testProfile}}, client.Config{},
			400, "invalid_request_error", "user_profile_not_found"},
		{"profile forbidden", sandbox.Config{Forbidden: []string{testProfile}}, client.Config{},
			403, "permission_error", ""},
		{"links disabled", sandbox.Config{Disabled: true}, client.Config{},
			404, "not_found_error", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.sbCfg, tc.cfg)
			_, err := b.client.Create(context.Background(), testProfile)
			e := asError(t, err)
			if e.Kind != client.KindAPI {
				t.Errorf("Kind = %q, want %q", e.Kind, client.KindAPI)
			}
			if e.StatusCode != tc.status || e.Type != tc.typ || e.Code != tc.code {
				t.Errorf("StatusCode, Type, Code = %d, %q, %q, want %d, %q, %q",
					e.StatusCode, e.Type, e.Code, tc.status, tc.typ, tc.code)
			}
			if !strings.HasPrefix(e.RequestID, "req_") {
				t.Errorf("RequestID = %q, want req_ prefix", e.RequestID)
			}
			if e.Retryable() {
				t.Error("Retryable() = true, want false")
			}
		})
	}
}

// TestCreateSandboxAccepts checks settings the sandbox accepts besides the
// defaults.
func TestCreateSandboxAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sbCfg sandbox.Config
		cfg   client.Config
	}{
		{"newer version", sandbox.Config{}, client.Config{Version: "2026-10-21"}},
		{"several betas", sandbox.Config{}, client.Config{Betas: []string{"files-api-2025-04-14", "user-profiles-2026-09-04"}}},
		{"matching workspace", sandbox.Config{WorkspaceID: "wrkspc_a"}, client.Config{WorkspaceID: "wrkspc_a"}},
		{"listed key", sandbox.Config{Keys: []string{"sk-other", testKey}}, client.Config{}},
		{"action url with newer beta", sandbox.Config{}, client.Config{
			Endpoint: client.ActionURL, Betas: []string{"user-profiles-2026-08-18"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.sbCfg, tc.cfg)
			link, err := b.client.Create(context.Background(), testProfile)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			wantLink(t, link)
		})
	}
}

// TestCreateInjectedClock checks that Config.Now decides whether a link has
// already expired.
func TestCreateInjectedClock(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{TTL: time.Hour}, client.Config{
		Now: func() time.Time { return time.Now().Add(2 * time.Hour) },
	})
	_, err := b.client.Create(context.Background(), testProfile)
	e := asError(t, err)
	if e.Kind != client.KindMalformed || e.StatusCode != http.StatusOK {
		t.Errorf("Kind, StatusCode = %q, %d, want %q, 200", e.Kind, e.StatusCode, client.KindMalformed)
	}
}

func TestCreateConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{}, client.Config{})

	const n = 16
	urls := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			link, err := b.client.Create(context.Background(), testProfile)
			urls[i], errs[i] = link.URL.Reveal(), err
		})
	}
	wg.Wait()

	seen := make(map[string]bool)
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Create #%d: %v", i, errs[i])
			continue
		}
		if seen[urls[i]] {
			t.Errorf("Create #%d: URL repeated, want a fresh URL per call", i)
		}
		seen[urls[i]] = true
	}
	if got := b.sandbox.Stats().Requests; got != n {
		t.Errorf("sandbox received %d requests, want %d", got, n)
	}
}

// recorded is one request a recorder saw.
type recorded struct {
	method, path, rawQuery string
	header                 http.Header
	body                   string
}

// recorder is a plain handler that keeps every request and answers with
// respond.
type recorder struct {
	mu      sync.Mutex
	reqs    []recorded
	respond http.HandlerFunc
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{
		method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery,
		header: r.Header.Clone(), body: string(body),
	})
	rc.mu.Unlock()
	rc.respond(w, r)
}

func (rc *recorder) requests() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

// only returns the single request the recorder saw.
func (rc *recorder) only(t *testing.T) recorded {
	t.Helper()
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// respondOK answers like the API does on success, for route type typ.
func respondOK(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", "req_recorded0000000000000")
		w.Header().Set("content-type", "application/json")
		expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		io.WriteString(w, `{"expires_at":"`+expires+`","type":"`+typ+`","url":"https://x.test/t"}`)
	}
}

// startRecorder serves respond on a loopback port.
func startRecorder(t *testing.T, respond http.HandlerFunc) (*recorder, *httptest.Server) {
	t.Helper()
	rc := &recorder{respond: respond}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = callTimeout
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return c
}

func wantHeader(t *testing.T, h http.Header, name string, want []string) {
	t.Helper()
	if got := h.Values(name); !slices.Equal(got, want) {
		t.Errorf("header %s = %q, want %q", name, got, want)
	}
}

func TestCreateRequestHeaders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		cfg        client.Config
		baseSuffix string
		version    string
		beta       string
		workspace  []string
	}{
		{
			name:    "defaults",
			version: "2023-06-01",
			beta:    "user-profiles-2026-03-24",
		},
		{
			name: "configured",
			cfg: client.Config{
				Version:     "2026-10-21",
				Betas:       []string{"user-profiles-2026-09-04", "files-api-2025-04-14"},
				WorkspaceID: "wrkspc_01X",
			},
			version:   "2026-10-21",
			beta:      "user-profiles-2026-09-04,files-api-2025-04-14",
			workspace: []string{"wrkspc_01X"},
		},
		{
			name:       "base url with trailing slash",
			baseSuffix: "/",
			version:    "2023-06-01",
			beta:       "user-profiles-2026-03-24",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc, srv := startRecorder(t, respondOK("enrollment_url"))
			cfg := tc.cfg
			cfg.BaseURL = srv.URL + tc.baseSuffix
			c := newClient(t, cfg)

			if _, err := c.Create(context.Background(), "uprof_X"); err != nil {
				t.Fatalf("Create: %v", err)
			}
			req := rc.only(t)

			if req.method != http.MethodPost {
				t.Errorf("method = %s, want POST", req.method)
			}
			if want := "/v1/user_profiles/uprof_X/enrollment_url"; req.path != want {
				t.Errorf("path = %q, want %q", req.path, want)
			}
			// SDK v2.17.0 no longer sends ?beta=true.
			if req.rawQuery != "" {
				t.Errorf("query = %q, want none", req.rawQuery)
			}
			wantHeader(t, req.header, "X-Api-Key", []string{testKey})
			// The key goes in x-api-key only: no bearer copy of it.
			wantHeader(t, req.header, "Authorization", nil)
			wantHeader(t, req.header, "Anthropic-Version", []string{tc.version})
			wantHeader(t, req.header, "Anthropic-Beta", []string{tc.beta})
			wantHeader(t, req.header, "Anthropic-Workspace-Id", tc.workspace)
			if got := strings.TrimSpace(req.body); got != "" && got != "{}" {
				t.Errorf("body = %q, want empty or {}", got)
			}
		})
	}
}

func TestCreateActionURLRequest(t *testing.T) {
	t.Parallel()
	rc, srv := startRecorder(t, respondOK("user_profile_action_url"))
	c := newClient(t, client.Config{BaseURL: srv.URL, Endpoint: client.ActionURL})

	if _, err := c.Create(context.Background(), "uprof_X"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	req := rc.only(t)

	if req.method != http.MethodPost {
		t.Errorf("method = %s, want POST", req.method)
	}
	if want := "/v1/user_profiles/uprof_X/action_urls"; req.path != want {
		t.Errorf("path = %q, want %q", req.path, want)
	}
	var body map[string]map[string]string
	if err := json.Unmarshal([]byte(req.body), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", req.body, err)
	}
	if got := body["action"]["type"]; got != "enroll_end_user" || len(body) != 1 || len(body["action"]) != 1 {
		t.Errorf("body = %q, want {\"action\":{\"type\":\"enroll_end_user\"}}", req.body)
	}
	wantHeader(t, req.header, "X-Api-Key", []string{testKey})
	wantHeader(t, req.header, "Anthropic-Beta", []string{client.DefaultBeta})
}

// TestCreateIgnoresEnvironment checks that the SDK's environment defaults
// (a key and a base URL) are not used: both come from Config alone.
func TestCreateIgnoresEnvironment(t *testing.T) {
	envHits := atomic.Int64{}
	envSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		envHits.Add(1)
		respondOK("enrollment_url")(w, r)
	}))
	t.Cleanup(envSrv.Close)
	t.Setenv("ANTHROPIC_API_KEY", "sk-from-environment")
	t.Setenv("ANTHROPIC_AUTH_TOKEN", "tok-from-environment")
	t.Setenv("ANTHROPIC_BASE_URL", envSrv.URL)

	rc, srv := startRecorder(t, respondOK("enrollment_url"))
	c := newClient(t, client.Config{BaseURL: srv.URL})
	if _, err := c.Create(context.Background(), "uprof_X"); err != nil {
		t.Fatalf("Create: %v", err)
	}

	req := rc.only(t)
	wantHeader(t, req.header, "X-Api-Key", []string{testKey})
	wantHeader(t, req.header, "Authorization", nil)
	if got := envHits.Load(); got != 0 {
		t.Errorf("ANTHROPIC_BASE_URL server saw %d requests, want 0", got)
	}
}

func TestCreateUsesConfiguredHTTPClient(t *testing.T) {
	t.Parallel()
	rc, srv := startRecorder(t, respondOK("enrollment_url"))
	var used atomic.Int64
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := newClient(t, client.Config{BaseURL: srv.URL, HTTPClient: hc})

	if _, err := c.Create(context.Background(), "uprof_X"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := used.Load(); got != 1 {
		t.Errorf("configured transport used %d times, want 1", got)
	}
	rc.only(t)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCreateDoesNotRetry checks that the SDK sends every call once, even
// for answers it would retry by default.
func TestCreateDoesNotRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		respond http.HandlerFunc
		kind    client.Kind
		status  int
	}{
		{"500", errorAnswer(500, "api_error", nil), client.KindAPI, 500},
		{"529", errorAnswer(529, "overloaded_error", nil), client.KindAPI, 529},
		{"429 retry-after 0", errorAnswer(429, "rate_limit_error", map[string]string{"retry-after": "0"}), client.KindAPI, 429},
		{"409", errorAnswer(409, "conflict_error", nil), client.KindAPI, 409},
		{"400 x-should-retry true", errorAnswer(400, "invalid_request_error", map[string]string{"x-should-retry": "true"}), client.KindAPI, 400},
		{"connection closed", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}, client.KindNetwork, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc, srv := startRecorder(t, tc.respond)
			c := newClient(t, client.Config{BaseURL: srv.URL})

			_, err := c.Create(context.Background(), "uprof_X")
			e := asError(t, err)
			if e.Kind != tc.kind || e.StatusCode != tc.status {
				t.Errorf("Kind, StatusCode = %q, %d, want %q, %d", e.Kind, e.StatusCode, tc.kind, tc.status)
			}
			if got := len(rc.requests()); got != 1 {
				t.Errorf("server saw %d requests, want exactly 1", got)
			}
		})
	}
}

// errorAnswer answers with the API's error body and extra headers.
func errorAnswer(status int, typ string, headers map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, k := range slices.Sorted(maps.Keys(headers)) {
			w.Header().Set(k, headers[k])
		}
		w.Header().Set("request-id", "req_recorded0000000000000")
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"type":"error","error":{"type":"`+typ+`","message":"m"},"request_id":"req_recorded0000000000000"}`)
	}
}

func TestCreateInvalidID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{
		"",
		"../../v1/messages",
		"uprof_01Ab/../x",
		"uprof_",
		"UPROF_01Ab",
		"uprof_01Ab%2F..",
		"uprof_01 Ab",
		"uprof_01Ab?x=1",
		"uprof_01Ab#frag",
		" uprof_01Ab",
		"uprof_01Ab\n",
		"1.23E+18",
		"uprof_" + strings.Repeat("a", 200),
	} {
		t.Run(strings.ReplaceAll(id, "/", "_"), func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				respondOK("enrollment_url")(w, r)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, client.Config{BaseURL: srv.URL})

			link, err := c.Create(context.Background(), id)
			e := asError(t, err)
			if e.Kind != client.KindInvalidID {
				t.Errorf("Kind = %q, want %q", e.Kind, client.KindInvalidID)
			}
			if e.ProfileID != id {
				t.Errorf("ProfileID = %q, want %q", e.ProfileID, id)
			}
			if e.StatusCode != 0 || e.RequestID != "" {
				t.Errorf("StatusCode, RequestID = %d, %q, want 0, \"\"", e.StatusCode, e.RequestID)
			}
			if e.Message == "" {
				t.Error("Message is empty, want why the id was refused")
			}
			if e.Retryable() {
				t.Error("Retryable() = true, want false")
			}
			if link != (client.Link{}) {
				t.Errorf("Link = %+v, want the zero Link", link)
			}
			if got := hits.Load(); got != 0 {
				t.Errorf("server hit %d times, want 0", got)
			}
		})
	}
}

func TestCreateCanceled(t *testing.T) {
	t.Parallel()
	t.Run("before the call", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sandbox.Config{}, client.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()

		_, err := b.client.Create(ctx, testProfile)
		wantCanceled(t, err)
	})
	t.Run("during the call", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sandbox.Config{Script: []string{"slow"}, SlowDelay: 10 * time.Second}, client.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(100*time.Millisecond, cancel)
		t.Cleanup(func() { timer.Stop() })

		start := time.Now()
		_, err := b.client.Create(ctx, testProfile)
		wantCanceled(t, err)
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("Create returned after %v, want soon after the cancel", elapsed)
		}
	})
	t.Run("caller deadline shorter than Timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sandbox.Config{Script: []string{"slow"}, SlowDelay: 10 * time.Second}, client.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		t.Cleanup(cancel)

		_, err := b.client.Create(ctx, testProfile)
		e := asError(t, err)
		// The caller's context ended, not the call's own deadline.
		if e.Kind != client.KindCanceled {
			t.Errorf("Kind = %q, want %q", e.Kind, client.KindCanceled)
		}
	})
}

func wantCanceled(t *testing.T, err error) {
	t.Helper()
	e := asError(t, err)
	if e.Kind != client.KindCanceled {
		t.Errorf("Kind = %q, want %q (not %q)", e.Kind, client.KindCanceled, client.KindTimeout)
	}
	if e.Retryable() {
		t.Error("Retryable() = true, want false")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false, want true", err)
	}
	if e.StatusCode != 0 {
		t.Errorf("StatusCode = %d, want 0", e.StatusCode)
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     client.Config
		wantErr string // substring naming the field; "" for no error
	}{
		{"missing key", client.Config{}, "api key"},
		{"key with line break", client.Config{APIKey: "sk-a\r\nX-Evil: 1"}, "api key: holds a line break"},
		{"key with a control character", client.Config{APIKey: "sk-ant-SEC RET\x01KEY2"}, "api key: holds a control character"},
		{"key with DEL", client.Config{APIKey: "sk-ant-x\x7f"}, "api key: holds a control character"},
		{"base url without scheme", client.Config{APIKey: testKey, BaseURL: "api.anthropic.com"}, "base url"},
		{"base url of another scheme", client.Config{APIKey: testKey, BaseURL: "ftp://api.anthropic.com"}, "base url"},
		{"unknown endpoint", client.Config{APIKey: testKey, Endpoint: "enrollment_urls"}, "endpoint"},
		{"defaults", client.Config{APIKey: testKey}, ""},
		{"http base url", client.Config{APIKey: testKey, BaseURL: "http://127.0.0.1:8787"}, ""},
		{"action url", client.Config{APIKey: testKey, Endpoint: client.ActionURL}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := client.New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v, want no error", err)
				}
				if c == nil {
					t.Fatal("New returned a nil Client")
				}
				return
			}
			if err == nil {
				t.Fatalf("New: got nil error, want one naming %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: error %q, want it to name %q", err, tc.wantErr)
			}
			if c != nil {
				t.Errorf("New returned a Client alongside error %v", err)
			}
			if tc.cfg.APIKey != "" && strings.Contains(err.Error(), tc.cfg.APIKey) {
				t.Errorf("New: error %q holds the API key", err)
			}
		})
	}
}

func TestNewDefaultEndpoint(t *testing.T) {
	t.Parallel()
	c := newClient(t, client.Config{})
	if got := c.Endpoint(); got != client.EnrollmentURL {
		t.Errorf("Endpoint() = %q, want %q", got, client.EnrollmentURL)
	}
}
