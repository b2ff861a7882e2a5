package sink

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
)

func TestRowStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	live := func(d time.Duration) campaign.Result {
		return campaign.Result{Status: campaign.StatusCreated, ExpiresAt: now.Add(d)}
	}
	tests := []struct {
		name string
		r    campaign.Result
		min  time.Duration
		want string
	}{
		{"no result", campaign.Result{}, 0, StatusPending},
		{"failed", campaign.Result{Status: campaign.StatusFailed}, time.Hour, "failed"},
		{"live", live(time.Hour), 10 * time.Minute, "created"},
		{"dead", live(-time.Second), 0, StatusExpired},
		{"expires now", live(0), 0, StatusExpired},
		{"alive, but under the margin", live(2 * time.Minute), 5 * time.Minute, StatusExpired},
		{"alive, just over the margin", live(5*time.Minute + time.Second), 5 * time.Minute, "created"},
	}
	for _, tt := range tests {
		if got := RowStatus(tt.r, now, tt.min); got != tt.want {
			t.Errorf("%s: RowStatus = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCreateRefusesBadHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cols []string
		want string
	}{
		{[]string{"First Name"}, `column 1 "First Name": a header name must be made of a-z, 0-9 and _`},
		{[]string{"email", "email"}, `column 2 "email": the header already holds that name`},
		{[]string{"status"}, `column 1 "status": the header already holds that name`},
	}
	for _, tt := range tests {
		_, err := Create(filepath.Join(t.TempDir(), "r.csv"), tt.cols)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Create(%q): err %v, want %q", tt.cols, err, tt.want)
		}
	}
}

// TestIsTempOf: only os.CreateTemp's names for the output itself are its
// temporary files; another output's, whose name starts with this one's,
// is not (a live run's file was removed so).
func TestIsTempOf(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		".r.csv.123.tmp":          true,
		".r.csv.4294967295.tmp":   true,
		".r.csv.old.csv.123.tmp":  false,
		".r.csv..tmp":             false,
		".r.csv.12a.tmp":          false,
		"r.csv.123.tmp":           false,
		".r.csv.123.tmp.keep":     false,
		".r.csv.lock":             false,
		".r.csvx.123.tmp":         false,
		".e.csv.ok.csv.98765.tmp": false,
		".r.jsonl.123.tmp":        false,
	} {
		if got := isTempOf(name, "/some/dir/r.csv"); got != want {
			t.Errorf("isTempOf(%q, r.csv) = %v, want %v", name, got, want)
		}
	}
	// A '*' in the output's name: the random part is at the last one.
	if !isTempOf(".a*b.csv.3401111337.tmp", "a*b.csv") || isTempOf(".a*b.csv.x.tmp", "a*b.csv") {
		t.Error("isTempOf does not tell a*b.csv's temporary files")
	}
}
