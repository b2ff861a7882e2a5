package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	spec := "500=0.05, 529=0.05,429=0.05,400=0.1,reset=0.01,malformed=0.02"
	got, err := ParseFaults(spec)
	if err != nil {
		t.Fatalf("ParseFaults(%q): %v", spec, err)
	}
	want := Faults{{"500", 0.05}, {"529", 0.05}, {"429", 0.05}, {"400", 0.1}, {"reset", 0.01}, {"malformed", 0.02}}
	if len(got) != len(want) {
		t.Fatalf("ParseFaults(%q) = %v, want %v", spec, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("fault %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if s, w := got.String(), "500=0.05,529=0.05,429=0.05,400=0.1,reset=0.01,malformed=0.02"; s != w {
		t.Errorf("String() = %q, want %q", s, w)
	}

	for _, empty := range []string{"", "  "} {
		f, err := ParseFaults(empty)
		if f != nil || err != nil {
			t.Errorf("ParseFaults(%q) = %v, %v; want nil, nil", empty, f, err)
		}
	}
	full, err := ParseFaults("500=0.1,502=0.2,503=0.7")
	if err != nil || len(full) != 3 {
		t.Errorf("ParseFaults of a sum of exactly 1 = %v, %v; want 3 faults", full, err)
	}
}

func TestParseFaultsErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec, want string
	}{
		{"500", `fault "500": want name=probability`},
		{"500=0.1,", `fault "": want name=probability`},
		{"500=lots", `fault "500=lots": probability is not a number`},
		{"500=-0.1", `fault "500=-0.1": probability of "500" is -0.1; want 0 to 1`},
		{"500=1.5", `fault "500=1.5": probability of "500" is 1.5; want 0 to 1`},
		{"500=NaN", `fault "500=NaN": probability of "500" is NaN; want 0 to 1`},
		{"500=0.1,500=0.2", `fault "500=0.2": fault "500" is listed twice`},
		{"500=0.5,529=0.3,reset=0.3", `fault "reset=0.3": probabilities sum to 1.1 at "reset"; want at most 1`},
		{"501=0.1", `fault "501=0.1": unknown fault "501" (known: ` + strings.Join(FaultNames(), " ") + ")"},
	} {
		_, err := ParseFaults(tc.spec)
		if err == nil {
			t.Errorf("ParseFaults(%q): got no error, want %q", tc.spec, tc.want)
			continue
		}
		if got := err.Error(); got != tc.want {
			t.Errorf("ParseFaults(%q): got %q, want %q", tc.spec, got, tc.want)
		}
	}
}

func TestFaultNames(t *testing.T) {
	t.Parallel()
	want := "400 401 402 403 404 408 409 413 429 429-date 429-ms 429-nohint 500 502 503 504 529 " +
		"drop expired html502 html503 malformed malformed-content-type malformed-expires " +
		"malformed-type malformed-url no-request-id reset retry-false retry-true slow spend"
	if got := strings.Join(FaultNames(), " "); got != want {
		t.Errorf("FaultNames() = %q, want %q", got, want)
	}
}

// always returns a Config that injects fault on every request.
func always(fault string) Config {
	return Config{Faults: Faults{{fault, 1}}}
}

func TestStatusFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fault   string
		status  int
		typ     string
		code    string
		headers map[string]string
	}{
		{"400", 400, "invalid_request_error", "", nil},
		{"401", 401, "authentication_error", "", nil},
		{"402", 402, "billing_error", "", nil},
		{"403", 403, "permission_error", "", nil},
		{"404", 404, "not_found_error", "", nil},
		{"408", 408, "timeout_error", "", nil},
		{"409", 409, "conflict_error", "", nil},
		{"413", 413, "request_too_large", "", nil},
		{"429", 429, "rate_limit_error", "", map[string]string{"retry-after": "1", "retry-after-ms": ""}},
		{"500", 500, "api_error", "", map[string]string{"x-should-retry": ""}},
		{"502", 502, "api_error", "", nil},
		{"503", 503, "api_error", "", nil},
		{"504", 504, "timeout_error", "", nil},
		{"529", 529, "overloaded_error", "", map[string]string{"retry-after": ""}},
		{"429-nohint", 429, "rate_limit_error", "", map[string]string{"retry-after": "", "retry-after-ms": ""}},
		{"429-ms", 429, "rate_limit_error", "", map[string]string{"retry-after": "", "retry-after-ms": "250"}},
		{"spend", 429, "rate_limit_error", "enforced_spend_limit_reached",
			map[string]string{"retry-after": "", "retry-after-ms": ""}},
		{"retry-true", 500, "api_error", "", map[string]string{"x-should-retry": "true"}},
		{"retry-false", 503, "api_error", "", map[string]string{"x-should-retry": "false"}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			b := setup(t, always(tc.fault))
			a := b.do(t, newRequest("POST", enrollPath, ""))
			wantError(t, a, tc.status, tc.typ, tc.code)
			wantHeaders(t, a.header, tc.headers)
			status := strconv.Itoa(tc.status)
			if got := b.srv.Stats().ByStatus[status]; got != 1 {
				t.Errorf("by_status[%s] = %d, want 1", status, got)
			}
		})
	}
}

func TestFaultRetryAfterDate(t *testing.T) {
	t.Parallel()
	b := setup(t, always("429-date"))
	b.clock.Advance(500 * time.Millisecond)
	a := b.do(t, newRequest("POST", enrollPath, ""))
	wantError(t, a, http.StatusTooManyRequests, "rate_limit_error", "")
	wantHeaders(t, a.header, map[string]string{
		"retry-after":    "Thu, 03 Dec 2026 19:15:02 GMT",
		"retry-after-ms": "",
	})
}

func TestFaultNoRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t, always("no-request-id"))
	a := b.doRaw(t, newRequest("POST", enrollPath, ""))
	if got := a.header.Values("request-id"); len(got) != 0 {
		t.Errorf("request-id = %q, want no header", got)
	}
	wantError(t, a, http.StatusInternalServerError, "api_error", "")
}

func TestFaultHTML(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fault  string
		status int
		title  string
	}{
		{"html502", 502, "<title>502 Bad Gateway</title>"},
		{"html503", 503, "<title>503 Service Unavailable</title>"},
	} {
		b := setup(t, always(tc.fault))
		a := b.do(t, newRequest("POST", enrollPath, ""))
		if a.status != tc.status {
			t.Errorf("%s: status = %d, want %d", tc.fault, a.status, tc.status)
		}
		if got := a.header.Get("Content-Type"); got != "text/html" {
			t.Errorf("%s: content-type = %q, want text/html", tc.fault, got)
		}
		if !strings.Contains(string(a.body), tc.title) {
			t.Errorf("%s: body = %q, want it to hold %q", tc.fault, a.body, tc.title)
		}
		if json.Valid(a.body) {
			t.Errorf("%s: body is JSON, want HTML", tc.fault)
		}
	}
}

// decodeURLBody decodes a 200 body into its fields, whatever they hold.
func decodeURLBody(t *testing.T, a answer) map[string]any {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status = %d, want 200", a.status)
	}
	var body map[string]any
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
	return body
}

func TestFaultMalformedVariants(t *testing.T) {
	t.Parallel()
	validExpiry := epoch.Add(time.Hour).Format(time.RFC3339)
	for _, tc := range []struct {
		fault       string
		contentType string
		expiresAt   any
		typ         any
		hasURL      bool
	}{
		{"malformed-url", "application/json", validExpiry, "enrollment_url", false},
		{"malformed-expires", "application/json", "2026-12-03 20:15:00", "enrollment_url", true},
		{"malformed-type", "application/json", validExpiry, "user_profile", true},
		{"malformed-content-type", "text/plain; charset=utf-8", validExpiry, "enrollment_url", true},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			b := setup(t, always(tc.fault))
			a := b.do(t, newRequest("POST", enrollPath, ""))
			body := decodeURLBody(t, a)
			if got := a.header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("content-type = %q, want %q", got, tc.contentType)
			}
			if body["expires_at"] != tc.expiresAt {
				t.Errorf("expires_at = %v, want %v", body["expires_at"], tc.expiresAt)
			}
			if body["type"] != tc.typ {
				t.Errorf("type = %v, want %v", body["type"], tc.typ)
			}
			if _, got := body["url"]; got != tc.hasURL {
				t.Errorf("has url = %v, want %v", got, tc.hasURL)
			}
		})
	}
}

func TestFaultMalformedPicksEveryVariant(t *testing.T) {
	t.Parallel()
	b := setup(t, always("malformed"))
	seen := make(map[string]bool)
	for range 100 {
		a := b.do(t, newRequest("POST", enrollPath, ""))
		body := decodeURLBody(t, a)
		switch {
		case body["url"] == nil:
			seen["malformed-url"] = true
		case body["type"] != "enrollment_url":
			seen["malformed-type"] = true
		case a.header.Get("Content-Type") != "application/json":
			seen["malformed-content-type"] = true
		default:
			if _, err := time.Parse(time.RFC3339, body["expires_at"].(string)); err == nil {
				t.Fatalf("body %s is well formed, want one malformation", a.body)
			}
			seen["malformed-expires"] = true
		}
	}
	if len(seen) != 4 {
		t.Errorf("100 draws produced %d variants %v, want all 4", len(seen), seen)
	}
}

func TestFaultExpired(t *testing.T) {
	t.Parallel()
	b := setup(t, always("expired"))
	wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(-time.Minute))
}

func TestFaultsDrawnAfterChecks(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Rate: 1, Faults: Faults{{"500", 1}}})
	r := newRequest("POST", enrollPath, "")
	r.Header.Del("X-Api-Key")
	wantError(t, b.do(t, r), http.StatusUnauthorized, "authentication_error", "")
	wantError(t, b.do(t, newRequest("POST", enrollPath, "")), http.StatusInternalServerError, "api_error", "")
	wantError(t, b.do(t, newRequest("POST", enrollPath, "")), http.StatusTooManyRequests, "rate_limit_error", "")
}

func TestFaultProbabilities(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Faults: Faults{{"500", 0.25}, {"529", 0.25}}})
	const n = 4000
	for range n {
		b.do(t, newRequest("POST", enrollPath, ""))
	}
	st := b.srv.Stats()
	for _, status := range []string{"500", "529"} {
		if got := st.ByStatus[status]; got < n/4-150 || got > n/4+150 {
			t.Errorf("by_status[%s] = %d, want %d ± 150", status, got, n/4)
		}
	}
	if got := st.ByStatus["200"] + st.ByStatus["500"] + st.ByStatus["529"]; got != n {
		t.Errorf("answers = %d, want %d", got, n)
	}
}

func TestScript(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Script: []string{"429", "ok", "500"}, Faults: Faults{{"404", 1}}})
	wantStatuses := func(want ...int) {
		t.Helper()
		for i, w := range want {
			if got := b.do(t, newRequest("POST", enrollPath, "")).status; got != w {
				t.Errorf("request %d: status = %d, want %d", i, got, w)
			}
		}
	}
	wantStatuses(429, 200, 500, 404)
	b.srv.Reset()
	wantStatuses(429, 200)
}

// serve starts a real server for b, for the faults that need a connection.
func (b *bundle) serve(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(b.srv)
	t.Cleanup(ts.Close)
	return ts
}

// post sends a valid request to ts with ctx.
func post(ctx context.Context, ts *httptest.Server) (*http.Response, error) {
	r := newRequest("POST", enrollPath, "")
	req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+enrollPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header = r.Header
	return ts.Client().Do(req)
}

// waitForStatus polls Stats until label has want answers.
func (b *bundle) waitForStatus(t *testing.T, label string, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := b.srv.Stats().ByStatus[label]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("by_status[%s] = %d after 5s, want %d", label, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFaultReset(t *testing.T) {
	t.Parallel()
	b := setup(t, always("reset"))
	ts := b.serve(t)

	res, err := post(t.Context(), ts)
	if err == nil {
		res.Body.Close()
		t.Fatalf("got status %d, want a connection reset", res.StatusCode)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("error = %v, want %v", err, syscall.ECONNRESET)
	}
	b.waitForStatus(t, "reset", 1)
}

func TestFaultDrop(t *testing.T) {
	t.Parallel()
	b := setup(t, always("drop"))
	ts := b.serve(t)

	res, err := post(t.Context(), ts)
	if err != nil {
		t.Fatalf("post: %v, want a 200 whose body breaks off", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200", res.StatusCode)
	}
	checkCommonHeaders(t, b.srv, res.Header)
	body, err := io.ReadAll(res.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read body: error %v, want %v", err, io.ErrUnexpectedEOF)
	}
	if got, want := int64(len(body)), res.ContentLength/2; got != want || want < 50 {
		t.Errorf("read %d of %d bytes, want %d", got, res.ContentLength, want)
	}
	b.waitForStatus(t, "drop", 1)
}

func TestFaultDropOnRecorderAborts(t *testing.T) {
	t.Parallel()
	b := setup(t, always("drop"))
	defer func() {
		if got := recover(); got != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", got)
		}
		if got := b.srv.Stats().ByStatus["drop"]; got != 1 {
			t.Errorf(`by_status["drop"] = %d, want 1`, got)
		}
	}()
	b.srv.ServeHTTP(httptest.NewRecorder(), newRequest("POST", enrollPath, ""))
}

func TestFaultSlowAnswersAfterTheStall(t *testing.T) {
	t.Parallel()
	const stall = 50 * time.Millisecond
	cfg := always("slow")
	cfg.SlowDelay = stall
	b := setup(t, cfg)

	start := time.Now()
	wantURL(t, b.do(t, newRequest("POST", enrollPath, "")), "enrollment_url", epoch.Add(time.Hour))
	if got := time.Since(start); got < stall {
		t.Errorf("answered after %v, want at least %v", got, stall)
	}
}

func TestFaultSlowEndsWhenTheClientLeaves(t *testing.T) {
	t.Parallel()
	cfg := always("slow")
	cfg.SlowDelay = time.Hour
	b := setup(t, cfg)
	ts := b.serve(t)

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	res, err := post(ctx, ts)
	if err == nil {
		res.Body.Close()
		t.Fatalf("got status %d, want the client to time out", res.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want %v", err, context.DeadlineExceeded)
	}
	b.waitForStatus(t, "gone", 1)
}
