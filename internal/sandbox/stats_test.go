package sandbox

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Keys: []string{testKey}})

	// Arrivals at these offsets: the second ending at 1.05 s holds 0.1, 0.2,
	// 0.9, 1.0 and 1.05 (0 is exactly one second before 1.0 and drops out).
	offsets := []time.Duration{0, 100, 200, 900, 1000, 1050, 2500}
	requests := []*http.Request{
		newRequest("POST", enrollPath, ""),
		newRequest("POST", "/v1/user_profiles/uprof_other/enrollment_url", ""),
		newRequest("POST", actionPath, actionBody),
		newRequest("POST", "/v1/user_profiles/uprof_a-b/enrollment_url", ""),
		newRequest("POST", "/v1/nowhere", ""),
		newRequest("POST", enrollPath, ""),
		newRequest("POST", enrollPath, ""),
	}
	requests[5].Header.Set("X-Api-Key", "wrong")
	for i, r := range requests {
		b.clock.Set(epoch.Add(offsets[i] * time.Millisecond))
		b.do(t, r)
	}

	got := b.srv.Stats()
	want := Stats{
		Requests:  7,
		ByStatus:  map[string]int64{"200": 4, "400": 1, "401": 1, "404": 1},
		ByProfile: map[string]int64{testProfile: 4, "uprof_other": 1, "uprof_a-b": 1},
		FirstAt:   epoch,
		LastAt:    epoch.Add(2500 * time.Millisecond),
		PeakRPS:   5,
	}
	wantStats(t, got, want)

	b.srv.Reset()
	wantStats(t, b.srv.Stats(), Stats{ByStatus: map[string]int64{}, ByProfile: map[string]int64{}})
}

func wantStats(t *testing.T, got, want Stats) {
	t.Helper()
	if got.Requests != want.Requests {
		t.Errorf("requests = %d, want %d", got.Requests, want.Requests)
	}
	if !maps.Equal(got.ByStatus, want.ByStatus) {
		t.Errorf("by_status = %v, want %v", got.ByStatus, want.ByStatus)
	}
	if !maps.Equal(got.ByProfile, want.ByProfile) {
		t.Errorf("by_profile = %v, want %v", got.ByProfile, want.ByProfile)
	}
	if !got.FirstAt.Equal(want.FirstAt) {
		t.Errorf("first_at = %v, want %v", got.FirstAt, want.FirstAt)
	}
	if !got.LastAt.Equal(want.LastAt) {
		t.Errorf("last_at = %v, want %v", got.LastAt, want.LastAt)
	}
	if got.PeakRPS != want.PeakRPS {
		t.Errorf("peak_rps = %d, want %d", got.PeakRPS, want.PeakRPS)
	}
	if got.Rejected429 != want.Rejected429 {
		t.Errorf("rate_limited = %d, want %d", got.Rejected429, want.Rejected429)
	}
}

func TestStatsEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Rate: 1})
	b.do(t, newRequest("POST", enrollPath, ""))
	b.do(t, newRequest("POST", enrollPath, ""))

	a := b.doRaw(t, httptest.NewRequest("GET", StatsPath, nil))
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", StatsPath, a.status)
	}
	want := `{"requests":2,"by_status":{"200":1,"429":1},"by_profile":{"uprof_abc123":2},` +
		`"first_at":"2026-12-03T19:15:00Z","last_at":"2026-12-03T19:15:00Z","peak_rps":2,"rate_limited":1}`
	if got := string(a.body); got != want {
		t.Errorf("GET %s = %s, want %s", StatsPath, got, want)
	}

	a = b.doRaw(t, httptest.NewRequest("POST", ResetPath, nil))
	if a.status != http.StatusNoContent {
		t.Errorf("POST %s: status %d, want 204", ResetPath, a.status)
	}
	a = b.doRaw(t, httptest.NewRequest("GET", StatsPath, nil))
	want = `{"requests":0,"by_status":{},"by_profile":{},` +
		`"first_at":"0001-01-01T00:00:00Z","last_at":"0001-01-01T00:00:00Z","peak_rps":0,"rate_limited":0}`
	if got := string(a.body); got != want {
		t.Errorf("GET %s after reset = %s, want %s", StatsPath, got, want)
	}

	for _, tc := range []struct{ method, path string }{
		{"POST", StatsPath},
		{"GET", ResetPath},
	} {
		if got := b.doRaw(t, httptest.NewRequest(tc.method, tc.path, nil)).status; got != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d, want 405", tc.method, tc.path, got)
		}
	}
	if got := b.srv.Stats().Requests; got != 0 {
		t.Errorf("requests = %d after control calls only, want 0", got)
	}
}

func TestStatsOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ts := b.serve(t)
	res, err := post(t.Context(), ts)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()

	res, err = ts.Client().Get(ts.URL + StatsPath)
	if err != nil {
		t.Fatalf("get stats: %v", err)
	}
	defer res.Body.Close()
	var st Stats
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatalf("decode stats: %v", err)
	}
	wantStats(t, st, Stats{
		Requests:  1,
		ByStatus:  map[string]int64{"200": 1},
		ByProfile: map[string]int64{testProfile: 1},
		FirstAt:   epoch,
		LastAt:    epoch,
		PeakRPS:   1,
	})
}

func TestPeakRPSClockSteppingBack(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.clock.Advance(2 * time.Second)
	b.do(t, newRequest("POST", enrollPath, ""))
	b.clock.Advance(-2 * time.Second)
	b.do(t, newRequest("POST", enrollPath, ""))

	st := b.srv.Stats()
	if st.PeakRPS != 2 {
		t.Errorf("peak_rps = %d, want 2 (an earlier time counts as the latest)", st.PeakRPS)
	}
	if want := epoch.Add(2 * time.Second); !st.LastAt.Equal(want) {
		t.Errorf("last_at = %v, want %v", st.LastAt, want)
	}
}

func TestWindowMillionRequests(t *testing.T) {
	t.Parallel()
	var w window
	peak := 0
	start := time.Now()
	// A million arrivals 250 µs apart: 4,000 per second at most.
	for i := range 1_000_000 {
		peak = max(peak, w.add(int64(i)*int64(250*time.Microsecond)))
	}
	if peak != 4000 {
		t.Errorf("peak = %d, want 4000", peak)
	}
	if len(w.ring) > 8192 {
		t.Errorf("ring holds %d slots, want at most 8192 for a 4000-entry window", len(w.ring))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a million arrivals took %v, want well under 5s", d)
	}

	var burst window
	for i := range 1_000_000 {
		peak = burst.add(int64(i))
	}
	if peak != 1_000_000 {
		t.Errorf("peak of a million arrivals within 1 ms = %d, want 1000000", peak)
	}
}

func TestStatsJSONNames(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Stats{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"requests":0,"by_status":null,"by_profile":null,"first_at":"0001-01-01T00:00:00Z",` +
		`"last_at":"0001-01-01T00:00:00Z","peak_rps":0,"rate_limited":0}`
	if got := strings.TrimSpace(string(b)); got != want {
		t.Errorf("json = %s, want %s", got, want)
	}
}

func BenchmarkServeHTTP(b *testing.B) {
	srv, err := New(Config{Rate: 1e9, Burst: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, newRequest("POST", enrollPath, ""))
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}
