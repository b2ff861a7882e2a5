package sandbox

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault is one injected fault and the probability that a request draws it.
// The names are listed in the package documentation and by FaultNames.
type Fault struct {
	Name string
	P    float64
}

// Faults is the set of faults a Server draws from. At most one applies to a
// request: fault i with probability Faults[i].P, none with the remainder.
// The probabilities must sum to at most 1.
type Faults []Fault

// probabilitySlack absorbs rounding when decimal probabilities add up to
// exactly 1, such as 0.1+0.2+0.7.
const probabilitySlack = 1e-9

// ParseFaults parses a comma-separated list of name=probability items, such
// as "500=0.05,529=0.05,429=0.05,reset=0.01". An empty spec injects nothing.
// The error names the item it could not accept.
func ParseFaults(spec string) (Faults, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	var faults Faults
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		name, value, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("fault %q: want name=probability", item)
		}
		p, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("fault %q: probability is not a number", item)
		}
		faults = append(faults, Fault{Name: strings.TrimSpace(name), P: p})
		if err := faults.validate(); err != nil {
			return nil, fmt.Errorf("fault %q: %w", item, err)
		}
	}
	return faults, nil
}

// String returns f in the form ParseFaults reads.
func (f Faults) String() string {
	items := make([]string, len(f))
	for i, fault := range f {
		items[i] = fault.Name + "=" + strconv.FormatFloat(fault.P, 'g', -1, 64)
	}
	return strings.Join(items, ",")
}

// validate reports the first fault that is unknown, repeated, has a
// probability outside [0, 1], or brings the sum above 1.
func (f Faults) validate() error {
	var sum float64
	for i, fault := range f {
		if _, ok := faultTable[fault.Name]; !ok {
			return fmt.Errorf("unknown fault %q (known: %s)", fault.Name, strings.Join(FaultNames(), " "))
		}
		if slices.ContainsFunc(f[:i], func(g Fault) bool { return g.Name == fault.Name }) {
			return fmt.Errorf("fault %q is listed twice", fault.Name)
		}
		if !(fault.P >= 0 && fault.P <= 1) {
			return fmt.Errorf("probability of %q is %v; want 0 to 1", fault.Name, fault.P)
		}
		sum += fault.P
		if sum > 1+probabilitySlack {
			return fmt.Errorf("probabilities sum to %v at %q; want at most 1", sum, fault.Name)
		}
	}
	return nil
}

// draw returns the name of the fault that u, uniform in [0, 1), selects, or
// "" for none.
func (f Faults) draw(u float64) string {
	for _, fault := range f {
		if u < fault.P {
			return fault.Name
		}
		u -= fault.P
	}
	return ""
}

// FaultNames returns the known fault names, sorted.
func FaultNames() []string {
	names := make([]string, 0, len(faultTable))
	for name := range faultTable {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// scriptNoFault is the Config.Script entry that injects nothing.
const scriptNoFault = "ok"

// A faultFunc answers a request in place of the normal answer. It reports
// answered false when the normal answer should follow (the slow fault, once
// its stall is over).
type faultFunc func(s *Server, ex *exchange) (out outcome, answered bool)

// faultTable maps each fault name to what it does. It is read-only.
var faultTable = newFaultTable()

// statusFaults gives the error each plain status fault answers with. The
// types of 408, 502 and 503 are assumed: the public table lists none.
var statusFaults = map[int]apiError{
	400: {typ: typeInvalidRequest, message: "Invalid request"},
	401: {typ: typeAuthentication, message: "Invalid API key"},
	402: {typ: typeBilling, message: "Your credit balance is too low"},
	403: {typ: typePermission, message: "Your API key does not have permission to use this resource"},
	404: {typ: typeNotFound, message: "Not found"},
	408: {typ: typeTimeout, message: "Request timed out"},
	409: {typ: typeConflict, message: "The user profile changed while the link was created"},
	413: {typ: typeTooLarge, message: "Request exceeds the maximum allowed size"},
	429: {typ: typeRateLimit, message: "Rate limit exceeded"},
	500: {typ: typeAPI, message: "Internal server error"},
	502: {typ: typeAPI, message: "Bad gateway"},
	503: {typ: typeAPI, message: "Service unavailable"},
	504: {typ: typeTimeout, message: "Request timed out"},
	529: {typ: typeOverloaded, message: "Overloaded"},
}

func newFaultTable() map[string]faultFunc {
	t := map[string]faultFunc{
		"429-nohint":    replyFault(429, "", "", ""),
		"429-ms":        replyFault(429, "", hdrRetryAfterMS, "250"),
		"429-date":      faultRetryDate,
		"spend":         replyFault(429, codeSpendLimit, "", ""),
		"html502":       htmlFault(http.StatusBadGateway),
		"html503":       htmlFault(http.StatusServiceUnavailable),
		"retry-true":    replyFault(500, "", hdrShouldRetry, "true"),
		"retry-false":   replyFault(503, "", hdrShouldRetry, "false"),
		"no-request-id": faultNoRequestID,
		"slow":          faultSlow,
		"reset":         faultReset,
		"drop":          faultDrop,
		"malformed":     faultMalformed,
		"expired":       faultExpired,
	}
	for _, m := range malformations {
		t[m.name] = func(s *Server, ex *exchange) (outcome, bool) {
			return s.writeMalformed(ex, m), true
		}
	}
	for status := range statusFaults {
		header, value := "", ""
		if status == http.StatusTooManyRequests {
			header, value = hdrRetryAfter, "1"
		}
		t[strconv.Itoa(status)] = replyFault(status, "", header, value)
	}
	return t
}

// replyFault answers with the error statusFaults gives for status, with
// details.error_code code and one extra header when they are not empty.
func replyFault(status int, code, header, value string) faultFunc {
	return func(s *Server, ex *exchange) (outcome, bool) {
		e := statusFaults[status]
		e.status = status
		e.code = code
		e.message = fmt.Sprintf("%s (sandbox fault)", e.message)
		if code == codeSpendLimit {
			e.message = "This organization has reached its enforced spend limit (sandbox fault)"
		}
		if header != "" {
			ex.w.Header().Set(header, value)
		}
		return s.fail(ex, e), true
	}
}

// faultRetryDate answers 429 with retry-after as an HTTP date. The date has
// whole seconds only, so it is rounded up to lie 1 to 2 seconds ahead.
func faultRetryDate(s *Server, ex *exchange) (outcome, bool) {
	at := ceilSecond(s.cfg.Now().Add(time.Second))
	ex.w.Header().Set(hdrRetryAfter, at.UTC().Format(http.TimeFormat))
	return replyFault(429, "", "", "")(s, ex)
}

// htmlFault answers with the kind of page an edge proxy sends when the API
// behind it is down: HTML, and no JSON error body.
func htmlFault(status int) faultFunc {
	return func(s *Server, ex *exchange) (outcome, bool) {
		text := strconv.Itoa(status) + " " + http.StatusText(status)
		page := "<html>\r\n<head><title>" + text + "</title></head>\r\n<body>\r\n" +
			"<center><h1>" + text + "</h1></center>\r\n<hr><center>edge</center>\r\n" +
			"</body>\r\n</html>\r\n"
		return writeBody(ex.w, status, "text/html", []byte(page)), true
	}
}

// faultNoRequestID answers 500 without the request-id header; the body
// still names the request.
func faultNoRequestID(s *Server, ex *exchange) (outcome, bool) {
	ex.w.Header().Del(hdrRequestID)
	return replyFault(500, "", "", "")(s, ex)
}

// faultSlow stalls for Config.SlowDelay, then lets the normal answer
// follow. A client that gives up first ends the stall.
func faultSlow(s *Server, ex *exchange) (outcome, bool) {
	if !sleep(ex.r.Context(), s.cfg.SlowDelay) {
		return outcome{label: labelGone}, true
	}
	return outcome{}, false
}

// faultReset closes the connection without a response. On TCP it sets
// SO_LINGER to 0 first, so that the client sees a reset rather than an end
// of stream.
func faultReset(s *Server, ex *exchange) (outcome, bool) {
	return closeConn(ex.w, labelReset, true), true
}

// faultDrop sends a 200 with the full Content-Length, half the body, and
// then closes the connection.
func faultDrop(s *Server, ex *exchange) (outcome, bool) {
	body, err := jsonBody(s.mint(ex))
	if err != nil {
		return s.internalError(ex, err), true
	}
	h := ex.w.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	ex.w.WriteHeader(http.StatusOK)
	_, _ = ex.w.Write(body[:len(body)/2])

	if err := http.NewResponseController(ex.w).Flush(); err != nil {
		return outcome{label: labelDrop, abort: true}, true
	}
	return closeConn(ex.w, labelDrop, false), true
}

// closeConn hijacks and closes the connection under w. Where it cannot (an
// HTTP/2 stream, a ResponseRecorder), the outcome asks the handler to abort
// with http.ErrAbortHandler, which resets the stream instead.
func closeConn(w http.ResponseWriter, label string, reset bool) outcome {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return outcome{label: label, abort: true}
	}
	if reset {
		setLingerZero(conn)
	}
	_ = conn.Close()
	return outcome{label: label}
}

// setLingerZero makes closing conn send a TCP RST, looking through TLS.
// Connections of other kinds are left as they are.
func setLingerZero(conn net.Conn) {
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tc.NetConn()
	}
	if tcp, ok := conn.(interface{ SetLinger(sec int) error }); ok {
		_ = tcp.SetLinger(0)
	}
}

// malformation is one way a 200 body can be wrong.
type malformation struct {
	name string
	edit func(body *urlBody, contentType *string)
}

var malformations = []malformation{
	{"malformed-url", func(b *urlBody, _ *string) { b.URL = "" }},
	{"malformed-expires", func(b *urlBody, _ *string) {
		b.ExpiresAt = strings.Replace(strings.TrimSuffix(b.ExpiresAt, "Z"), "T", " ", 1)
	}},
	{"malformed-type", func(b *urlBody, _ *string) { b.Type = "user_profile" }},
	{"malformed-content-type", func(_ *urlBody, ct *string) { *ct = "text/plain; charset=utf-8" }},
}

// faultMalformed answers with one of the malformations, picked at random.
func faultMalformed(s *Server, ex *exchange) (outcome, bool) {
	s.mu.Lock()
	m := malformations[s.rng.IntN(len(malformations))]
	s.mu.Unlock()
	return s.writeMalformed(ex, m), true
}

func (s *Server) writeMalformed(ex *exchange, m malformation) outcome {
	body := s.mint(ex)
	contentType := contentTypeJSON
	m.edit(&body, &contentType)
	b, err := jsonBody(body)
	if err != nil {
		return s.internalError(ex, err)
	}
	return writeBody(ex.w, http.StatusOK, contentType, b)
}

// faultExpired answers 200 with an expires_at one minute in the past.
func faultExpired(s *Server, ex *exchange) (outcome, bool) {
	body := s.mint(ex)
	body.ExpiresAt = formatExpiry(s.cfg.Now().Add(-time.Minute))
	return s.writeJSON(ex, http.StatusOK, body), true
}
