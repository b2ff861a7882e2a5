package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Paths of the control endpoints. They need no auth and are not counted.
const (
	StatsPath = "/_sandbox/stats"
	ResetPath = "/_sandbox/reset"
)

// maxBodyBytes bounds a request body; larger bodies answer 413, as the
// edge proxy in front of the API does.
const maxBodyBytes = 64 << 10

// Server stands in for the user-profile URL endpoints. It is an
// http.Handler, safe for concurrent use; create it with New.
type Server struct {
	cfg   Config
	orgID string
	keys  map[string]bool
	lists map[string]apiError // profile id -> its fixed answer

	mu       sync.Mutex // guards the fields below
	rng      *rand.Rand
	scriptAt int
	limiters map[string]*rate.Limiter
	sweepAt  int // len(limiters) at which take next drops full buckets

	stats statsRecorder
}

// New returns a Server for cfg, with defaults filled in. The error names the
// first field it cannot accept.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	s := &Server{
		cfg:      cfg,
		orgID:    newUUID(),
		keys:     make(map[string]bool, len(cfg.Keys)),
		lists:    make(map[string]apiError),
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x5eed)),
		limiters: make(map[string]*rate.Limiter),
	}
	for _, k := range cfg.Keys {
		s.keys[k] = true
	}
	for _, id := range cfg.NotFound {
		s.lists[id] = apiError{status: http.StatusNotFound, typ: typeNotFound,
			message: "User profile " + id + " not found"}
	}
	for _, id := range cfg.BadRequest {
		s.lists[id] = apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: "User profile " + id + " not found", code: codeProfileNotFound}
	}
	for _, id := range cfg.Forbidden {
		s.lists[id] = apiError{status: http.StatusForbidden, typ: typePermission,
			message: "This API key may not create links for user profile " + id}
	}
	s.stats.reset()
	return s, nil
}

// OrganizationID returns the anthropic-organization-id the server sends,
// a random UUID chosen by New.
func (s *Server) OrganizationID() string { return s.orgID }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Reset zeroes the counters and rewinds Config.Script. The token buckets
// keep their state.
func (s *Server) Reset() {
	s.stats.reset()
	s.mu.Lock()
	s.scriptAt = 0
	s.mu.Unlock()
}

// ServeHTTP answers the API routes and the control endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case StatsPath:
		s.serveStats(w, r)
	case ResetPath:
		s.serveReset(w, r)
	default:
		s.serveAPI(w, r)
	}
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	b, err := json.Marshal(s.Stats())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, b)
}

func (s *Server) serveReset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

// route is an API route the sandbox serves.
type route int

const (
	routeNone route = iota
	routeEnrollmentURL
	routeActionURLs
)

// objectType is the type field of the route's success body.
func (rt route) objectType() string {
	if rt == routeActionURLs {
		return "user_profile_action_url"
	}
	return "enrollment_url"
}

// matchRoute finds the route and the profile id in u. It works on the
// escaped path, so that an escaped slash stays inside the id, where it
// makes the id malformed.
func matchRoute(u *url.URL) (route, string) {
	rest, ok := strings.CutPrefix(u.EscapedPath(), "/v1/user_profiles/")
	if !ok {
		return routeNone, ""
	}
	id, action, ok := strings.Cut(rest, "/")
	if !ok {
		return routeNone, ""
	}
	switch action {
	case "enrollment_url":
		return routeEnrollmentURL, id
	case "action_urls":
		return routeActionURLs, id
	}
	return routeNone, ""
}

// exchange is one request being answered.
type exchange struct {
	w         http.ResponseWriter
	r         *http.Request
	route     route
	profile   string
	requestID string
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ex := &exchange{w: w, r: r, requestID: newRequestID()}
	ex.route, ex.profile = matchRoute(r.URL)
	w.Header().Set(hdrRequestID, ex.requestID)
	w.Header().Set(hdrOrgID, s.orgID)

	s.stats.arrive(s.cfg.Now(), ex.profile)
	out := s.handle(ex)
	s.stats.finish(out)

	if log := s.cfg.Logger; log.Enabled(r.Context(), slog.LevelDebug) {
		log.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.EscapedPath()),
			slog.String("query", r.URL.RawQuery),
			slog.Any("headers", loggedHeaders(r.Header)),
			slog.String("status", out.label),
			slog.String("request_id", ex.requestID),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		)
	}
	if out.abort {
		panic(http.ErrAbortHandler)
	}
}

// handle runs the checks in the order the package documentation lists and
// answers at the first that refuses the request.
func (s *Server) handle(ex *exchange) outcome {
	r := ex.r
	if ex.route == routeNone {
		return s.fail(ex, apiError{status: http.StatusNotFound, typ: typeNotFound,
			message: fmt.Sprintf("No route for %s %s", r.Method, r.URL.EscapedPath())})
	}
	if r.Method != http.MethodPost {
		ex.w.Header().Set("Allow", http.MethodPost)
		return s.fail(ex, apiError{status: http.StatusMethodNotAllowed, typ: typeInvalidRequest,
			message: fmt.Sprintf("Method %s is not allowed here; use POST", r.Method)})
	}

	key, e := s.check(ex)
	if e != nil {
		return s.fail(ex, *e)
	}

	if e := s.admit(ex, key); e != nil {
		out := s.fail(ex, *e)
		out.limited = true
		return out
	}

	if !sleep(r.Context(), s.latency()) {
		return outcome{label: labelGone}
	}

	if fault := s.drawFault(); fault != "" {
		if out, answered := faultTable[fault](s, ex); answered {
			return out
		}
	}

	if s.cfg.Disabled {
		return s.fail(ex, apiError{status: http.StatusNotFound, typ: typeNotFound,
			message: "Enrollment link creation is not enabled for this organization"})
	}
	if e, ok := s.lists[ex.profile]; ok {
		return s.fail(ex, e)
	}
	return s.writeJSON(ex, http.StatusOK, s.mint(ex))
}

// check runs the checks on headers, id and body, and returns the API key
// that passed them.
func (s *Server) check(ex *exchange) (string, *apiError) {
	h := ex.r.Header
	key, e := s.authenticate(h)
	if e != nil {
		return "", e
	}
	for _, check := range []func(http.Header) *apiError{checkVersion, checkBeta, s.checkWorkspace} {
		if e := check(h); e != nil {
			return "", e
		}
	}
	if !validProfileID(ex.profile) {
		return "", &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: fmt.Sprintf("user_profile_id: %q is not a valid user profile id", ex.profile)}
	}
	return key, checkBody(ex)
}

// authenticate returns the request's API key, taken from x-api-key or else
// from Authorization: Bearer.
func (s *Server) authenticate(h http.Header) (string, *apiError) {
	key := h.Get("X-Api-Key")
	if key == "" {
		scheme, token, _ := strings.Cut(h.Get("Authorization"), " ")
		if strings.EqualFold(scheme, "Bearer") {
			key = strings.TrimSpace(token)
		}
	}
	if key == "" {
		return "", &apiError{status: http.StatusUnauthorized, typ: typeAuthentication,
			message: "x-api-key header is required"}
	}
	if len(s.keys) > 0 && !s.keys[key] {
		return "", &apiError{status: http.StatusUnauthorized, typ: typeAuthentication,
			message: "invalid x-api-key"}
	}
	return key, nil
}

// Versions the API accepts in anthropic-version.
var knownVersions = map[string]bool{"2023-06-01": true, "2026-10-21": true}

func checkVersion(h http.Header) *apiError {
	v := h.Get("Anthropic-Version")
	switch {
	case v == "":
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: "anthropic-version: header is required"}
	case !knownVersions[v]:
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: fmt.Sprintf("anthropic-version: %q is not a valid version", v)}
	}
	return nil
}

// userProfilesBetas are the beta values that enable the endpoints; at least
// one must be sent.
var userProfilesBetas = map[string]bool{
	"user-profiles-2026-03-24": true,
	"user-profiles-2026-08-18": true,
	"user-profiles-2026-09-04": true,
}

// otherBetas are the other beta values the API knows; sending one is fine,
// sending a value in neither set is a 400.
var otherBetas = map[string]bool{
	"message-batches-2024-09-24":               true,
	"prompt-caching-2024-07-31":                true,
	"computer-use-2024-10-22":                  true,
	"computer-use-2025-01-24":                  true,
	"pdfs-2024-09-25":                          true,
	"token-counting-2024-11-01":                true,
	"token-efficient-tools-2025-02-19":         true,
	"output-128k-2025-02-19":                   true,
	"files-api-2025-04-14":                     true,
	"mcp-client-2025-04-04":                    true,
	"mcp-client-2025-11-20":                    true,
	"dev-full-thinking-2025-05-14":             true,
	"interleaved-thinking-2025-05-14":          true,
	"code-execution-2025-05-22":                true,
	"extended-cache-ttl-2025-04-11":            true,
	"context-1m-2025-08-07":                    true,
	"context-management-2025-06-27":            true,
	"model-context-window-exceeded-2025-08-26": true,
	"skills-2025-10-02":                        true,
	"fast-mode-2026-02-01":                     true,
	"output-300k-2026-03-24":                   true,
	"advisor-tool-2026-03-01":                  true,
	"managed-agents-2026-04-01":                true,
}

// checkBeta reads every anthropic-beta header as a comma-separated list.
func checkBeta(h http.Header) *apiError {
	enabled := false
	for _, line := range h.Values("Anthropic-Beta") {
		for v := range strings.SplitSeq(line, ",") {
			v = strings.TrimSpace(v)
			switch {
			case v == "":
			case userProfilesBetas[v]:
				enabled = true
			case !otherBetas[v]:
				return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
					message: fmt.Sprintf("anthropic-beta: unexpected value %q", v)}
			}
		}
	}
	if !enabled {
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: "anthropic-beta: this endpoint requires user-profiles-2026-03-24 or later"}
	}
	return nil
}

func (s *Server) checkWorkspace(h http.Header) *apiError {
	ws := h.Get("Anthropic-Workspace-Id")
	if s.cfg.WorkspaceID == "" || ws == "" || ws == s.cfg.WorkspaceID {
		return nil
	}
	return &apiError{status: http.StatusForbidden, typ: typePermission,
		message: fmt.Sprintf("anthropic-workspace-id: this API key may not act in workspace %q", ws)}
}

// checkBody reads the whole body, so that the server notices when the
// client goes away during a stall, and checks it against the route.
func checkBody(ex *exchange) *apiError {
	b, err := io.ReadAll(http.MaxBytesReader(ex.w, ex.r.Body, maxBodyBytes))
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			return &apiError{status: http.StatusRequestEntityTooLarge, typ: typeTooLarge,
				message: fmt.Sprintf("Request body exceeds %d bytes", maxBodyBytes)}
		}
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: "Request body could not be read"}
	}

	if ex.route == routeActionURLs {
		return checkActionBody(b)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: "Request body is not a JSON object"}
	}
	if len(fields) > 0 {
		first := slices.Sorted(maps.Keys(fields))[0]
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: fmt.Sprintf("%s: Extra inputs are not permitted", first)}
	}
	return nil
}

// checkActionBody accepts only {"action":{"type":"enroll_end_user"}}.
func checkActionBody(b []byte) *apiError {
	var body struct {
		Action *struct {
			Type string `json:"type"`
		} `json:"action"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: "Request body must be {\"action\":{\"type\":\"enroll_end_user\"}}"}
	}
	switch {
	case body.Action == nil:
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: "action: Field required"}
	case body.Action.Type != "enroll_end_user":
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest,
			message: fmt.Sprintf("action.type: %q is not one of 'enroll_end_user'", body.Action.Type)}
	}
	return nil
}

// latency returns Config.Latency plus a uniform draw from [0, Jitter).
func (s *Server) latency() time.Duration {
	d := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		s.mu.Lock()
		d += time.Duration(s.rng.Int64N(int64(s.cfg.Jitter)))
		s.mu.Unlock()
	}
	return d
}

// drawFault returns the next scripted fault, or else a fault drawn from
// Config.Faults, or "" for none.
func (s *Server) drawFault() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scriptAt < len(s.cfg.Script) {
		name := s.cfg.Script[s.scriptAt]
		s.scriptAt++
		if name == scriptNoFault {
			return ""
		}
		return name
	}
	if len(s.cfg.Faults) == 0 {
		return ""
	}
	return s.cfg.Faults.draw(s.rng.Float64())
}

// sleep waits for d and reports whether it did; it returns false as soon
// as ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
