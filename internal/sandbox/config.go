package sandbox

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultBurst is the bucket size when Config.Rate is set and
	// Config.Burst is not.
	DefaultBurst = 1

	// DefaultTTL is how long a minted URL stays valid. The public docs state
	// about one hour for the sibling action_urls endpoint; the same is
	// assumed here.
	DefaultTTL = time.Hour

	// DefaultSlowDelay is how long the slow fault stalls, longer than any
	// sensible client timeout.
	DefaultSlowDelay = 30 * time.Second
)

// Config configures a Server. The zero value serves every well-formed
// profile id to any non-empty key, with no rate limit, latency or fault.
type Config struct {
	// Keys lists the accepted API keys. Empty accepts any non-empty key.
	Keys []string

	// Rate is the number of requests per second each key's token bucket
	// refills. Zero means unlimited.
	Rate float64

	// Burst is the bucket size. Zero or less means DefaultBurst when Rate is
	// set; it is ignored when Rate is zero.
	Burst int

	// Latency is added to every request that passes auth and the rate
	// limit, before any fault. Zero adds none.
	Latency time.Duration

	// Jitter adds a uniform extra latency in [0, Jitter). Zero adds none.
	Jitter time.Duration

	// TTL is how long a minted URL stays valid. Zero means DefaultTTL.
	TTL time.Duration

	// Faults are drawn per request, after the rate limit and the latency.
	// Nil injects none.
	Faults Faults

	// Script lists fault names served, in order, to the first requests that
	// reach the fault step, before Faults is drawn at all. The name "ok"
	// stands for no fault. Server.Reset rewinds it. Nil scripts nothing.
	Script []string

	// NotFound lists profile ids that always answer 404 not_found_error.
	NotFound []string

	// BadRequest lists profile ids that always answer 400
	// invalid_request_error with details.error_code user_profile_not_found.
	BadRequest []string

	// Forbidden lists profile ids that always answer 403 permission_error.
	Forbidden []string

	// Disabled answers 404 not_found_error for every profile, as the API
	// does when link creation is not enabled for the organization
	// (assumed). It takes precedence over the three lists above.
	Disabled bool

	// WorkspaceID, if set, makes the keys workspace-scoped: a request whose
	// anthropic-workspace-id header is present and differs gets 403
	// permission_error (assumed). Empty accepts any workspace id.
	WorkspaceID string

	// SlowDelay is how long the slow fault stalls unless the client goes
	// away first. Zero means DefaultSlowDelay.
	SlowDelay time.Duration

	// Seed seeds the random source for faults, jitter and the malformed
	// variant. Zero seeds from the clock. URL tokens, request ids and the
	// organization id always come from crypto/rand.
	Seed int64

	// Now tells the time for expires_at, the token buckets and Stats. Nil
	// means time.Now. Latency and stalls always use real timers.
	Now func() time.Time

	// Logger receives one debug line per request: method, path, headers
	// with secrets replaced by fingerprints, status and duration. Nil logs
	// nothing.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field that has a default filled in.
func (c Config) withDefaults() Config {
	if c.Rate > 0 && c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.SlowDelay == 0 {
		c.SlowDelay = DefaultSlowDelay
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports the first field of c that the sandbox cannot serve.
func (c Config) validate() error {
	for i, k := range c.Keys {
		if k == "" || strings.TrimSpace(k) != k {
			return fieldError("Keys[%d] is empty or has surrounding space", i)
		}
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fieldError("Rate is %v; want a finite number >= 0 (0 means unlimited)", c.Rate)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"Latency", c.Latency},
		{"Jitter", c.Jitter},
		{"TTL", c.TTL},
		{"SlowDelay", c.SlowDelay},
	}
	for _, f := range durations {
		if f.d < 0 {
			return fieldError("%s is %v; want >= 0", f.name, f.d)
		}
	}
	if err := c.Faults.validate(); err != nil {
		return fieldError("Faults: %v", err)
	}
	for i, name := range c.Script {
		if _, ok := faultTable[name]; !ok && name != scriptNoFault {
			return fieldError("Script[%d] is %q; want %q or a fault name", i, name, scriptNoFault)
		}
	}
	return c.validateLists()
}

// validateLists checks that the profile lists hold well-formed ids and that
// no id is in two lists, where its answer would be ambiguous.
func (c Config) validateLists() error {
	seen := make(map[string]string)
	lists := []struct {
		name string
		ids  []string
	}{
		{"NotFound", c.NotFound},
		{"BadRequest", c.BadRequest},
		{"Forbidden", c.Forbidden},
	}
	for _, l := range lists {
		for i, id := range l.ids {
			if !validProfileID(id) {
				return fieldError("%s[%d] is %q; want uprof_ followed by letters and digits", l.name, i, id)
			}
			if other, dup := seen[id]; dup && other != l.name {
				return fieldError("%s[%d] %s is also in %s", l.name, i, id, other)
			}
			seen[id] = l.name
		}
	}
	return nil
}

func fieldError(format string, args ...any) error {
	return fmt.Errorf("sandbox config: "+format, args...)
}

// maxProfileIDLen bounds a profile id; real ids are about 30 characters.
const maxProfileIDLen = 128

// validProfileID reports whether id is "uprof_" followed by one or more
// ASCII letters and digits.
func validProfileID(id string) bool {
	rest, ok := strings.CutPrefix(id, "uprof_")
	if !ok || rest == "" || len(id) > maxProfileIDLen {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
