package sink

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
)

// TestReadCreatedRoundTrip writes a file of every kind of row in both
// formats and reads back exactly the created rows that live long enough.
func TestReadCreatedRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	keep := campaign.Result{
		Campaign: "c", ProfileID: "uprof_keep", Status: campaign.StatusCreated,
		URL: "https://example.com/e?t=a&b", ExpiresAt: now.Add(time.Hour), RequestID: "req_1", Attempts: 2,
	}
	results := []campaign.Result{
		keep,
		{ProfileID: "uprof_soon", Status: campaign.StatusCreated, URL: "https://x", ExpiresAt: now.Add(5 * time.Minute), Attempts: 1},
		{ProfileID: "uprof_failed", Status: campaign.StatusFailed, ErrorType: "not_found_error", Attempts: 1},
		{ProfileID: "uprof_pending"},
	}
	for _, name := range []string{"r.csv", "r.jsonl"} {
		path := filepath.Join(t.TempDir(), name)
		f, err := Create(path, []string{"email"})
		if err != nil {
			t.Fatal(err)
		}
		f.Now = func() time.Time { return now }
		for _, r := range results {
			if err := f.Write([]string{"a@example.com"}, r, r.ProfileID); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}

		got, err := ReadCreated(path, "c", now, 10*time.Minute)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := map[string]campaign.Result{"uprof_keep": keep}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
}

func TestReadCreatedRefusesOtherFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := ReadCreated(filepath.Join(dir, "none.csv"), "c", time.Now(), 0); !os.IsNotExist(err) {
		t.Errorf("missing file: err %v, want one that wraps os.ErrNotExist", err)
	}
	other := filepath.Join(dir, "other.csv")
	os.WriteFile(other, []byte("user_profile_id,email\nuprof_a,a@example.com\n"), 0o600)
	if _, err := ReadCreated(other, "c", time.Now(), 0); err == nil {
		t.Error("a file without the result columns was read as results")
	}
}
