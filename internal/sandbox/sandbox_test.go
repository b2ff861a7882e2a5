package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testKey     = "sk-test-key"
	enrollPath  = "/v1/user_profiles/uprof_abc123/enrollment_url"
	actionPath  = "/v1/user_profiles/uprof_abc123/action_urls"
	actionBody  = `{"action":{"type":"enroll_end_user"}}`
	testProfile = "uprof_abc123"
)

// epoch is the fake clock's start, a whole second.
var epoch = time.Date(2026, 12, 3, 19, 15, 0, 0, time.UTC)

var (
	requestIDPattern = regexp.MustCompile(`^req_[A-Za-z0-9]{24}$`)
	uuidPattern      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	urlPattern       = regexp.MustCompile(`^https://platform\.claude\.com/user-profiles/enrollment/[A-Za-z0-9]{32,}$`)
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bundle is what most tests need: a server on a fake clock.
type bundle struct {
	srv   *Server
	clock *fakeClock
}

// setup returns a server for cfg, on a fake clock starting at epoch and a
// fixed seed unless cfg sets its own.
func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	clock := &fakeClock{t: epoch}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &bundle{srv: srv, clock: clock}
}

// newRequest returns a request that passes every check: x-api-key,
// version 2023-06-01 and the first user-profiles beta.
func newRequest(method, path, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("X-Api-Key", testKey)
	r.Header.Set("Anthropic-Version", "2023-06-01")
	r.Header.Set("Anthropic-Beta", "user-profiles-2026-03-24")
	return r
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// doRaw serves r and returns the answer, checking nothing.
func (b *bundle) doRaw(t *testing.T, r *http.Request) answer {
	t.Helper()
	rec := httptest.NewRecorder()
	b.srv.ServeHTTP(rec, r)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return answer{status: res.StatusCode, header: res.Header, body: body}
}

// do serves r and checks the headers every answer carries.
func (b *bundle) do(t *testing.T, r *http.Request) answer {
	t.Helper()
	a := b.doRaw(t, r)
	checkCommonHeaders(t, b.srv, a.header)
	return a
}

func checkCommonHeaders(t *testing.T, srv *Server, h http.Header) {
	t.Helper()
	if got := h.Get("request-id"); !requestIDPattern.MatchString(got) {
		t.Errorf("request-id = %q, want req_ and 24 letters and digits", got)
	}
	if got, want := h.Get("anthropic-organization-id"), srv.OrganizationID(); got != want {
		t.Errorf("anthropic-organization-id = %q, want %q", got, want)
	}
}

// wantError checks that a is the API error body with the given status,
// type and details.error_code ("" for none), and nothing else.
func wantError(t *testing.T, a answer, status int, typ, code string) {
	t.Helper()
	if a.status != status {
		t.Errorf("status = %d, want %d (body %s)", a.status, status, a.body)
	}
	if got := a.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("content-type = %q, want application/json", got)
	}
	var body struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
			Details *struct {
				ErrorCode string `json:"error_code"`
			} `json:"details"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("decode error body %s: %v", a.body, err)
	}
	if body.Type != "error" {
		t.Errorf("type = %q, want error", body.Type)
	}
	if body.Error.Type != typ {
		t.Errorf("error.type = %q, want %q", body.Error.Type, typ)
	}
	if body.Error.Message == "" {
		t.Errorf("error.message is empty")
	}
	gotCode := ""
	if body.Error.Details != nil {
		gotCode = body.Error.Details.ErrorCode
	}
	if gotCode != code {
		t.Errorf("error.details.error_code = %q, want %q", gotCode, code)
	}
	if !requestIDPattern.MatchString(body.RequestID) {
		t.Errorf("request_id = %q, want req_ and 24 letters and digits", body.RequestID)
	}
	if h := a.header.Get("request-id"); h != "" && h != body.RequestID {
		t.Errorf("request_id = %q, want the request-id header %q", body.RequestID, h)
	}
}

// wantURL checks that a is a success body of objectType expiring at
// expires, and returns the URL.
func wantURL(t *testing.T, a answer, objectType string, expires time.Time) string {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", a.status, a.body)
	}
	if got := a.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("content-type = %q, want application/json", got)
	}
	var body map[string]string
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
	if len(body) != 3 {
		t.Errorf("body has %d fields, want 3: %s", len(body), a.body)
	}
	if got, want := body["type"], objectType; got != want {
		t.Errorf("type = %q, want %q", got, want)
	}
	if got, want := body["expires_at"], expires.UTC().Format(time.RFC3339); got != want {
		t.Errorf("expires_at = %q, want %q", got, want)
	}
	if !urlPattern.MatchString(body["url"]) {
		t.Errorf("url = %q, want the enrollment base and a token of 32+ letters and digits", body["url"])
	}
	return body["url"]
}

func TestEnrollmentURL(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})

	first := wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(time.Hour))
	second := wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(time.Hour))
	if first == second {
		t.Errorf("two calls minted the same url %q, want a new one each call", first)
	}
}

func TestEnrollmentURLAcceptsBodiesAndQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path, body string
	}{
		{"empty", enrollPath, ""},
		{"empty object", enrollPath, "{}"},
		{"spaced object", enrollPath, " { }\n"},
		{"beta query", enrollPath + "?beta=true", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{})
			wantURL(t, b.do(t, newRequest("POST", tc.path, tc.body)), "enrollment_url", epoch.Add(time.Hour))
		})
	}
}

func TestActionURLs(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	wantURL(t, b.do(t, newRequest("POST", actionPath, actionBody)), "user_profile_action_url", epoch.Add(time.Hour))

	for _, body := range []string{
		"",
		"{}",
		`{"action":{"type":"other"}}`,
		`{"action":{"type":"enroll_end_user"},"extra":1}`,
		`not json`,
	} {
		a := b.do(t, newRequest("POST", actionPath, body))
		wantError(t, a, http.StatusBadRequest, "invalid_request_error", "")
	}
}

func TestBadBody(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for _, tc := range []struct {
		body   string
		status int
		typ    string
	}{
		{`{"note":"x"}`, 400, "invalid_request_error"},
		{`[]`, 400, "invalid_request_error"},
		{`{`, 400, "invalid_request_error"},
		{"{" + strings.Repeat(" ", maxBodyBytes) + "}", 413, "request_too_large"},
	} {
		wantError(t, b.do(t, newRequest("POST", enrollPath, tc.body)), tc.status, tc.typ, "")
	}
}

func TestTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{TTL: 90 * time.Second})
	b.clock.Advance(1500 * time.Millisecond)
	wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(91*time.Second))
}

func TestAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		keys    []string
		headers map[string]string
		status  int
	}{
		{"x-api-key, any key", nil, map[string]string{"X-Api-Key": "k1"}, 200},
		{"bearer, any key", nil, map[string]string{"Authorization": "Bearer k1"}, 200},
		{"bearer lowercase scheme", nil, map[string]string{"Authorization": "bearer k1"}, 200},
		{"x-api-key, listed", []string{"k1", "k2"}, map[string]string{"X-Api-Key": "k2"}, 200},
		{"bearer, listed", []string{"k1", "k2"}, map[string]string{"Authorization": "Bearer k1"}, 200},
		{"x-api-key wins over bearer", []string{"k1"}, map[string]string{"X-Api-Key": "k1", "Authorization": "Bearer nope"}, 200},
		{"none", nil, nil, 401},
		{"empty bearer", nil, map[string]string{"Authorization": "Bearer "}, 401},
		{"basic scheme", nil, map[string]string{"Authorization": "Basic azE6"}, 401},
		{"x-api-key, unknown", []string{"k1"}, map[string]string{"X-Api-Key": "k3"}, 401},
		{"bearer, unknown", []string{"k1"}, map[string]string{"Authorization": "Bearer k3"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{Keys: tc.keys})
			r := newRequest("POST", enrollPath, "")
			r.Header.Del("X-Api-Key")
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			a := b.do(t, r)
			if tc.status == 200 {
				wantURL(t, a, "enrollment_url", epoch.Add(time.Hour))
				return
			}
			wantError(t, a, tc.status, "authentication_error", "")
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version string
		status  int
	}{
		{"2023-06-01", 200},
		{"2026-10-21", 200},
		{"", 400},
		{"2023-01-01", 400},
		{"2026-10-21 ", 400},
	} {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{})
			r := newRequest("POST", enrollPath, "")
			r.Header.Set("Anthropic-Version", tc.version)
			a := b.do(t, r)
			if tc.status == 200 {
				wantURL(t, a, "enrollment_url", epoch.Add(time.Hour))
				return
			}
			wantError(t, a, tc.status, "invalid_request_error", "")
		})
	}
}

func TestBeta(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		headers []string // one anthropic-beta header each
		status  int
		message string
	}{
		{"first", []string{"user-profiles-2026-03-24"}, 200, ""},
		{"later", []string{"user-profiles-2026-09-04"}, 200, ""},
		{"sdk default", []string{"user-profiles-2026-08-18"}, 200, ""},
		{"list", []string{"files-api-2025-04-14, user-profiles-2026-08-18,skills-2025-10-02"}, 200, ""},
		{"repeated header", []string{"files-api-2025-04-14", "user-profiles-2026-03-24"}, 200, ""},
		{"missing", nil, 400,
			"anthropic-beta: this endpoint requires user-profiles-2026-03-24 or later"},
		{"no user-profiles value", []string{"files-api-2025-04-14"}, 400,
			"anthropic-beta: this endpoint requires user-profiles-2026-03-24 or later"},
		{"unknown value", []string{"user-profiles-2026-03-24,user-profiles-2099-01-01"}, 400,
			`anthropic-beta: unexpected value "user-profiles-2099-01-01"`},
		{"unknown in repeated header", []string{"user-profiles-2026-03-24", "bogus"}, 400,
			`anthropic-beta: unexpected value "bogus"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{})
			r := newRequest("POST", enrollPath, "")
			r.Header.Del("Anthropic-Beta")
			for _, v := range tc.headers {
				r.Header.Add("Anthropic-Beta", v)
			}
			a := b.do(t, r)
			if tc.status == 200 {
				wantURL(t, a, "enrollment_url", epoch.Add(time.Hour))
				return
			}
			wantError(t, a, tc.status, "invalid_request_error", "")
			if got := errorMessage(t, a); got != tc.message {
				t.Errorf("message = %q, want %q", got, tc.message)
			}
		})
	}
}

func errorMessage(t *testing.T, a answer) string {
	t.Helper()
	var body struct {
		Error struct{ Message string } `json:"error"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
	return body.Error.Message
}

func TestWorkspace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, configured, sent string
		status                 int
	}{
		{"not scoped", "", "wrkspc_a", 200},
		{"same", "wrkspc_a", "wrkspc_a", 200},
		{"not sent", "wrkspc_a", "", 200},
		{"differs", "wrkspc_a", "wrkspc_b", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{WorkspaceID: tc.configured})
			r := newRequest("POST", enrollPath, "")
			if tc.sent != "" {
				r.Header.Set("Anthropic-Workspace-Id", tc.sent)
			}
			a := b.do(t, r)
			if tc.status == 200 {
				wantURL(t, a, "enrollment_url", epoch.Add(time.Hour))
				return
			}
			wantError(t, a, tc.status, "permission_error", "")
		})
	}
}

func TestMalformedID(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for _, id := range []string{
		"", "uprof_", "user_abc", "UPROF_abc", "uprof_a-b", "uprof_a%2Fb", "uprof_%C3%A9",
		"uprof_" + strings.Repeat("a", maxProfileIDLen),
	} {
		a := b.do(t, newRequest("POST", "/v1/user_profiles/"+id+"/enrollment_url", ""))
		wantError(t, a, http.StatusBadRequest, "invalid_request_error", "")
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for _, tc := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{"POST", "/v1/user_profiles/uprof_abc/enrollment_urls", 404, "not_found_error"},
		{"POST", "/v1/user_profiles/uprof_abc", 404, "not_found_error"},
		{"POST", "/v1/messages", 404, "not_found_error"},
		{"GET", enrollPath, 405, "invalid_request_error"},
		{"PUT", actionPath, 405, "invalid_request_error"},
	} {
		a := b.do(t, newRequest(tc.method, tc.path, ""))
		wantError(t, a, tc.status, tc.typ, "")
	}
}

func TestErrorBodyShape(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{BadRequest: []string{testProfile}})
	a := b.do(t, newRequest("POST", enrollPath, ""))

	var raw map[string]json.RawMessage
	if err := json.Unmarshal(a.body, &raw); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
	want := `{"type":"error","error":{"type":"invalid_request_error",` +
		`"message":"User profile uprof_abc123 not found",` +
		`"details":{"error_code":"user_profile_not_found"}},` +
		`"request_id":"` + a.header.Get("request-id") + `"}`
	if got := string(a.body); got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestProfileLists(t *testing.T) {
	t.Parallel()
	cfg := Config{
		NotFound:   []string{"uprof_missing"},
		BadRequest: []string{"uprof_bad"},
		Forbidden:  []string{"uprof_locked"},
	}
	b := setup(t, cfg)
	for _, tc := range []struct {
		id     string
		status int
		typ    string
		code   string
	}{
		{"uprof_missing", 404, "not_found_error", ""},
		{"uprof_bad", 400, "invalid_request_error", "user_profile_not_found"},
		{"uprof_locked", 403, "permission_error", ""},
	} {
		a := b.do(t, newRequest("POST", "/v1/user_profiles/"+tc.id+"/enrollment_url", ""))
		wantError(t, a, tc.status, tc.typ, tc.code)
	}
	wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(time.Hour))
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Disabled: true, Forbidden: []string{testProfile}})
	a := b.do(t, newRequest("POST", enrollPath, ""))
	wantError(t, a, http.StatusNotFound, "not_found_error", "")
	if got, want := errorMessage(t, a), "Enrollment link creation is not enabled for this organization"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const latency = 40 * time.Millisecond
	b := setup(t, Config{Latency: latency, Jitter: 10 * time.Millisecond})

	start := time.Now()
	wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(time.Hour))
	if got := time.Since(start); got < latency {
		t.Errorf("answered after %v, want at least %v", got, latency)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.do(t, newRequest("POST", enrollPath, "").WithContext(ctx))
	if got := b.srv.Stats().ByStatus["gone"]; got != 1 {
		t.Errorf(`by_status["gone"] = %d, want 1 after a client left during the latency`, got)
	}
}

func TestLatencyNotAddedToRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Latency: time.Minute})
	r := newRequest("POST", enrollPath, "")
	r.Header.Del("X-Api-Key")
	wantError(t, b.do(t, r), http.StatusUnauthorized, "authentication_error", "")
}

func TestLogRedactsKeys(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := setup(t, Config{Logger: logger})

	r := newRequest("POST", enrollPath, "")
	r.Header.Set("X-Api-Key", "sk-secret-one")
	b.do(t, r)
	r = newRequest("POST", enrollPath, "")
	r.Header.Del("X-Api-Key")
	r.Header.Set("Authorization", "Bearer sk-secret-two")
	b.do(t, r)

	out := buf.String()
	for _, secret := range []string{"sk-secret-one", "sk-secret-two"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds the key %q:\n%s", secret, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("log has %d lines, want 2:\n%s", len(lines), out)
	}
	var line struct {
		Level   string            `json:"level"`
		Msg     string            `json:"msg"`
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Status  string            `json:"status"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &line); err != nil {
		t.Fatalf("decode %s: %v", lines[1], err)
	}
	want := [][2]string{
		{line.Level, "DEBUG"},
		{line.Msg, "request"},
		{line.Method, "POST"},
		{line.Path, enrollPath},
		{line.Status, "200"},
		{line.Headers["authorization"], "Bearer " + Fingerprint("sk-secret-two")},
		{line.Headers["anthropic-version"], "2023-06-01"},
	}
	for i, w := range want {
		if w[0] != w[1] {
			t.Errorf("field %d = %q, want %q", i, w[0], w[1])
		}
	}
	if !strings.Contains(lines[0], `"x-api-key":"`+Fingerprint("sk-secret-one")+`"`) {
		t.Errorf("first line lacks the x-api-key fingerprint %s:\n%s", Fingerprint("sk-secret-one"), lines[0])
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	// The SHA-256 of "abc" starts ba7816bf.
	if got, want := Fingerprint("abc"), "sha256:ba7816bf"; got != want {
		t.Errorf("Fingerprint(abc) = %q, want %q", got, want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty key", Config{Keys: []string{"k", ""}},
			"sandbox config: Keys[1] is empty or has surrounding space"},
		{"negative rate", Config{Rate: -1},
			"sandbox config: Rate is -1; want a finite number >= 0 (0 means unlimited)"},
		{"negative latency", Config{Latency: -time.Second},
			"sandbox config: Latency is -1s; want >= 0"},
		{"negative jitter", Config{Jitter: -time.Second},
			"sandbox config: Jitter is -1s; want >= 0"},
		{"negative ttl", Config{TTL: -time.Second},
			"sandbox config: TTL is -1s; want >= 0"},
		{"negative slow delay", Config{SlowDelay: -time.Second},
			"sandbox config: SlowDelay is -1s; want >= 0"},
		{"faults over 1", Config{Faults: Faults{{"500", 0.6}, {"529", 0.6}}},
			`sandbox config: Faults: probabilities sum to 1.2 at "529"; want at most 1`},
		{"unknown script entry", Config{Script: []string{"ok", "501"}},
			`sandbox config: Script[1] is "501"; want "ok" or a fault name`},
		{"malformed listed id", Config{NotFound: []string{"uprof_a", "uprof-b"}},
			`sandbox config: NotFound[1] is "uprof-b"; want uprof_ followed by letters and digits`},
		{"id in two lists", Config{NotFound: []string{"uprof_a"}, Forbidden: []string{"uprof_a"}},
			"sandbox config: Forbidden[0] uprof_a is also in NotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			if err == nil {
				t.Fatalf("New: got no error, want %q", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("New: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Rate: 1e9, Burst: 1e6, Faults: Faults{{"500", 0.5}}})
	const workers, each = 8, 100

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				rec := httptest.NewRecorder()
				b.srv.ServeHTTP(rec, newRequest("POST", enrollPath, ""))
			}
		})
	}
	wg.Wait()

	st := b.srv.Stats()
	if got, want := st.Requests, int64(workers*each); got != want {
		t.Errorf("requests = %d, want %d", got, want)
	}
	if got, want := st.ByStatus["200"]+st.ByStatus["500"], int64(workers*each); got != want {
		t.Errorf("200s + 500s = %d, want %d", got, want)
	}
	if got, want := st.ByProfile[testProfile], int64(workers*each); got != want {
		t.Errorf("by_profile[%s] = %d, want %d", testProfile, got, want)
	}
}
