package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Stats counts what the sandbox received on its API routes, so that tests
// and benchmarks can check what the workers really sent. The control
// endpoints are not counted.
type Stats struct {
	// Requests counts every request, whatever its answer.
	Requests int64 `json:"requests"`

	// ByStatus counts answers by status code ("200"), or as "reset", "drop"
	// or "gone" (the client left first) when no status was sent in full.
	// A request still being answered is in Requests but not yet here.
	ByStatus map[string]int64 `json:"by_status"`

	// ByProfile counts requests to the two routes by the profile id in the
	// path, whatever the answer, malformed ids included.
	ByProfile map[string]int64 `json:"by_profile"`

	// FirstAt and LastAt are the arrival times of the first and the latest
	// request, by Config.Now. Both are zero before the first request.
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`

	// PeakRPS is the most requests that arrived within any one-second
	// window.
	PeakRPS int64 `json:"peak_rps"`

	// Rejected429 counts 429s served by the token bucket; injected 429s are
	// in ByStatus only.
	Rejected429 int64 `json:"rate_limited"`
}

// statsRecorder keeps the counters behind Stats.
type statsRecorder struct {
	mu        sync.Mutex
	requests  int64
	byStatus  map[string]int64
	byProfile map[string]int64
	first     time.Time
	last      time.Time
	window    window
	peak      int64
	limited   int64
}

// arrive counts a request as it arrives, before any wait.
func (r *statsRecorder) arrive(now time.Time, profile string) {
	r.mu.Lock()
	defer r.mu.Unlock()

	r.requests++
	if profile != "" {
		r.byProfile[profile]++
	}
	if r.first.IsZero() {
		r.first = now
	}
	if now.After(r.last) {
		r.last = now
	}
	r.peak = max(r.peak, int64(r.window.add(now.UnixNano())))
}

// finish counts the answer.
func (r *statsRecorder) finish(out outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byStatus[out.label]++
	if out.limited {
		r.limited++
	}
}

func (r *statsRecorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{
		Requests:    r.requests,
		ByStatus:    maps.Clone(r.byStatus),
		ByProfile:   maps.Clone(r.byProfile),
		FirstAt:     r.first,
		LastAt:      r.last,
		PeakRPS:     r.peak,
		Rejected429: r.limited,
	}
}

func (r *statsRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = 0
	r.byStatus = make(map[string]int64)
	r.byProfile = make(map[string]int64)
	r.first, r.last = time.Time{}, time.Time{}
	r.window = window{}
	r.peak = 0
	r.limited = 0
}

// window holds the arrival times (Unix nanoseconds) of the last second in a
// ring buffer that grows by doubling, so it holds as many entries as the
// peak rate and no more.
type window struct {
	ring []int64
	head int // index of the oldest entry
	n    int // number of entries
}

// add records an arrival at t and returns how many arrivals lie in the
// second that ends at t, t included. A t earlier than the newest entry (a
// clock stepping back, or two requests racing) counts as the newest.
func (w *window) add(t int64) int {
	if w.n > 0 {
		t = max(t, w.ring[(w.head+w.n-1)%len(w.ring)])
	}
	cut := t - int64(time.Second)
	for w.n > 0 && w.ring[w.head] <= cut {
		w.head = (w.head + 1) % len(w.ring)
		w.n--
	}
	if w.n == len(w.ring) {
		w.grow()
	}
	w.ring[(w.head+w.n)%len(w.ring)] = t
	w.n++
	return w.n
}

func (w *window) grow() {
	ring := make([]int64, max(64, 2*len(w.ring)))
	for i := range w.n {
		ring[i] = w.ring[(w.head+i)%len(w.ring)]
	}
	w.ring, w.head = ring, 0
}

// FetchStats asks a running sandbox at baseURL for its Stats, as the
// benchmarks and the chaos suite do from another process.
func FetchStats(ctx context.Context, baseURL string) (Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+StatsPath, nil)
	if err != nil {
		return Stats{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return Stats{}, fmt.Errorf("sandbox stats: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Stats{}, fmt.Errorf("sandbox stats: status %s", res.Status)
	}
	var st Stats
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return Stats{}, fmt.Errorf("decode sandbox stats: %w", err)
	}
	return st, nil
}
