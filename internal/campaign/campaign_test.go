package campaign

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/redistest"
)

func setup(t *testing.T) (*Store, string) {
	t.Helper()
	return NewStore(redistest.New(t), time.Hour), redistest.Name(t)
}

var later = time.Now().Add(time.Hour)

func progress(t *testing.T, s *Store, c string) Progress {
	t.Helper()
	p, err := s.Progress(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPutKeepsOneRowPerProfile(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	if _, err := s.Admit(ctx, c, []string{"uprof_a", "uprof_b"}); err != nil {
		t.Fatal(err)
	}

	for i := range 3 { // a task that ran three times
		r := Result{Campaign: c, ProfileID: "uprof_a", Seq: 2, Status: StatusCreated, URL: "https://x/" + string(rune('a'+i)), ExpiresAt: later}
		if _, err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := progress(t, s, c), (Progress{Total: 2, Created: 1}); got != want {
		t.Errorf("progress = %+v, want %+v", got, want)
	}
	r, ok, _ := s.Get(ctx, c, "uprof_a")
	if !ok || r.URL != "https://x/c" {
		t.Errorf("stored URL = %q, want the newest, https://x/c", r.URL)
	}

	// A late failure does not replace the URL.
	kept, err := s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_a", Status: StatusFailed, ErrorType: "api_error"})
	if err != nil || kept {
		t.Errorf("Put(failed over created) = %v, %v; want false, nil", kept, err)
	}
	if r, _, _ := s.Get(ctx, c, "uprof_a"); r.Status != StatusCreated {
		t.Errorf("status = %q, want created", r.Status)
	}

	// A failure then a success moves the count.
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_b", Seq: 1, Status: StatusFailed})
	if got, want := progress(t, s, c), (Progress{Total: 2, Created: 1, Failed: 1}); got != want {
		t.Errorf("progress = %+v, want %+v", got, want)
	}
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_b", Seq: 1, Status: StatusCreated, ExpiresAt: later})
	if got, want := progress(t, s, c), (Progress{Total: 2, Created: 2}); got != want {
		t.Errorf("progress = %+v, want %+v", got, want)
	}

	results, err := s.Results(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range results {
		ids = append(ids, r.ProfileID)
	}
	if want := []string{"uprof_b", "uprof_a"}; !slices.Equal(ids, want) {
		t.Errorf("results order = %v, want %v (by input position)", ids, want)
	}
}

func TestAdmitReportsKnownProfiles(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_done", Status: StatusCreated, ExpiresAt: later})
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_stale", Status: StatusCreated, ExpiresAt: time.Now().Add(RemintBefore / 2)})
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_bad", Status: StatusFailed})
	adm, err := s.Admit(ctx, c, []string{"uprof_new", "uprof_done", "uprof_new", "uprof_stale", "uprof_bad"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Admission{Admitted, HasResult, Admitted, Remint, HasResult}; !slices.Equal(adm, want) {
		t.Errorf("admissions = %v, want %v", adm, want)
	}
	if got, want := progress(t, s, c), (Progress{Total: 4, Created: 1, Failed: 1}); got != want {
		t.Errorf("progress = %+v, want %+v: the stale URL is cleared to be minted again", got, want)
	}
	if _, ok, _ := s.Get(ctx, c, "uprof_stale"); ok {
		t.Error("the stale result is still stored")
	}

	// A failed re-mint may replace an expired URL, not a live one.
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_old", Status: StatusCreated, ExpiresAt: time.Now().Add(-time.Minute)})
	if kept, _ := s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_old", Status: StatusFailed}); !kept {
		t.Error("a failure did not replace an expired URL")
	}
}

// TestRemintThatFailsKeepsTheLiveURL re-runs profiles whose URLs expire
// within RemintBefore: while the new call is out they are pending; a new
// URL replaces the old one, a failure brings the old one back while it
// lives, and stays when it has expired.
func TestRemintThatFailsKeepsTheLiveURL(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	soon, gone := time.Now().Add(RemintBefore/2).UTC().Truncate(time.Second), time.Now().Add(-time.Second)
	for _, r := range []Result{
		{ProfileID: "uprof_keep", URL: "https://example.com/keep", ExpiresAt: soon, RequestID: "req_keep", Attempts: 1},
		{ProfileID: "uprof_new", URL: "https://example.com/old", ExpiresAt: soon, Attempts: 1},
		{ProfileID: "uprof_gone", URL: "https://example.com/gone", ExpiresAt: gone, Attempts: 1},
	} {
		r.Campaign, r.Status = c, StatusCreated
		if _, err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"uprof_keep", "uprof_new", "uprof_gone"}
	adm, err := s.Admit(ctx, c, ids)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Admission{Remint, Remint, Remint}; !slices.Equal(adm, want) {
		t.Fatalf("admissions = %v, want %v", adm, want)
	}
	if got, want := progress(t, s, c), (Progress{Total: 3}); got != want {
		t.Errorf("progress = %+v, want %+v: profiles being minted again are pending", got, want)
	}

	fail := func(id string) bool {
		t.Helper()
		kept, err := s.Put(ctx, Result{Campaign: c, ProfileID: id, Status: StatusFailed, ErrorType: "invalid_request_error", Attempts: 2})
		if err != nil {
			t.Fatal(err)
		}
		return kept
	}
	if fail("uprof_keep") {
		t.Error("Put(failure) = kept, want false: the stashed URL still lives")
	}
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_new", Status: StatusCreated, URL: "https://example.com/new", ExpiresAt: later, Attempts: 1})
	if !fail("uprof_gone") {
		t.Error("Put(failure) = not kept, want kept: the stashed URL has expired")
	}

	// The kept URL's row counts the failed call in its attempts.
	want := map[string]Result{
		"uprof_keep": {Status: StatusCreated, URL: "https://example.com/keep", ExpiresAt: soon, RequestID: "req_keep", Attempts: 3}, // 1 + the re-mint's 2
		"uprof_new":  {Status: StatusCreated, URL: "https://example.com/new", ExpiresAt: later, Attempts: 1},
		"uprof_gone": {Status: StatusFailed, ErrorType: "invalid_request_error", Attempts: 2},
	}
	for id, w := range want {
		got, ok, err := s.Get(ctx, c, id)
		if err != nil || !ok {
			t.Fatalf("Get(%s) = %v, %v", id, ok, err)
		}
		if got.Status != w.Status || got.URL != w.URL || !got.ExpiresAt.Equal(w.ExpiresAt) ||
			got.RequestID != w.RequestID || got.ErrorType != w.ErrorType || got.Attempts != w.Attempts {
			t.Errorf("%s = %+v, want status %s url %q expires %v request %q error %q attempts %d",
				id, got, w.Status, w.URL, w.ExpiresAt, w.RequestID, w.ErrorType, w.Attempts)
		}
	}
	if got, want := progress(t, s, c), (Progress{Total: 3, Created: 2, Failed: 1}); got != want {
		t.Errorf("progress = %+v, want %+v", got, want)
	}

	// The stash is spent: a later failure of the kept profile (its URL now
	// expired, say) is not undone by it again.
	if n, _ := s.rdb.HLen(ctx, key(c, "stash")).Result(); n != 2 {
		t.Errorf("stash holds %d entries, want 2 (uprof_new's and uprof_gone's, unused)", n)
	}
}

func TestColumnsMerge(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	s.SetColumns(ctx, c, []string{"email", "first_name"})
	got, err := s.SetColumns(ctx, c, []string{"locale", "email"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"email", "first_name", "locale"}
	if !slices.Equal(got, want) {
		t.Errorf("merged = %v, want %v", got, want)
	}
	if stored, _ := s.Columns(ctx, c); !slices.Equal(stored, want) {
		t.Errorf("stored = %v, want %v", stored, want)
	}
}

func TestForgetAndBeginCall(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	s.Admit(ctx, c, []string{"uprof_f"})
	for want := int64(1); want <= 3; want++ {
		if st, n, err := s.BeginCall(ctx, c, "uprof_f", time.Time{}); err != nil || st != "" || n != want {
			t.Fatalf("BeginCall = %q, %d, %v; want no status, %d", st, n, err, want)
		}
	}
	s.NoteRequest(ctx, c, "uprof_f", "req_3")
	if id, err := s.LastRequest(ctx, c, "uprof_f"); err != nil || id != "req_3" {
		t.Errorf("LastRequest = %q, %v; want req_3", id, err)
	}
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_f", Status: StatusFailed})
	// With a result stored, a rerun learns it and counts no call.
	if st, n, err := s.BeginCall(ctx, c, "uprof_f", time.Time{}); err != nil || st != StatusFailed || n != 3 {
		t.Fatalf("BeginCall after a result = %q, %d, %v; want failed, 3", st, n, err)
	}
	if err := s.Forget(ctx, c, "uprof_f"); err != nil {
		t.Fatal(err)
	}
	if got, want := progress(t, s, c), (Progress{Total: 1}); got != want {
		t.Errorf("progress after Forget = %+v, want %+v", got, want)
	}
	if n, _ := s.Calls(ctx, c, "uprof_f"); n != 0 {
		t.Errorf("calls after Forget = %d, want 0", n)
	}
	if st, _ := s.Status(ctx, c, "uprof_f"); st != "" {
		t.Errorf("status after Forget = %q, want none", st)
	}
	if id, _ := s.LastRequest(ctx, c, "uprof_f"); id != "" {
		t.Errorf("last request after Forget = %q, want none", id)
	}
}

// TestPutCallCountsTheCall: a first run's result counts its call in the
// same round trip; after calls counted before (a 429 waited out), the
// stored attempts include them; a failure still never replaces a live URL.
func TestPutCallCountsTheCall(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	s.Admit(ctx, c, []string{"uprof_new", "uprof_waited", "uprof_live"})
	get := func(id string) Result {
		t.Helper()
		r, ok, err := s.Get(ctx, c, id)
		if err != nil || !ok {
			t.Fatalf("Get(%s) = %v, %v", id, ok, err)
		}
		return r
	}

	kept, n, err := s.PutCall(ctx, Result{Campaign: c, ProfileID: "uprof_new", Status: StatusCreated,
		URL: "https://x/1", ExpiresAt: later, Attempts: 3}) // 2 prior attempts + this call
	if err != nil || !kept || n != 1 {
		t.Fatalf("PutCall(first call) = %v, %d, %v; want true, 1, nil", kept, n, err)
	}
	if r := get("uprof_new"); r.Attempts != 3 || r.URL != "https://x/1" {
		t.Errorf("stored = %+v, want attempts 3", r)
	}
	if calls, _ := s.Calls(ctx, c, "uprof_new"); calls != 1 {
		t.Errorf("calls = %d, want 1", calls)
	}

	for range 2 {
		if _, err := s.CountCall(ctx, c, "uprof_waited"); err != nil {
			t.Fatal(err)
		}
	}
	kept, n, err = s.PutCall(ctx, Result{Campaign: c, ProfileID: "uprof_waited", Status: StatusCreated,
		URL: "https://x/2", ExpiresAt: later, Attempts: 1})
	if err != nil || !kept || n != 3 {
		t.Fatalf("PutCall(after 2 calls) = %v, %d, %v; want true, 3, nil", kept, n, err)
	}
	if r := get("uprof_waited"); r.Attempts != 3 || r.URL != "https://x/2" {
		t.Errorf("stored = %+v, want attempts 3", r)
	}

	s.PutCall(ctx, Result{Campaign: c, ProfileID: "uprof_live", Status: StatusCreated, URL: "https://x/3", ExpiresAt: later, Attempts: 1})
	kept, n, err = s.PutCall(ctx, Result{Campaign: c, ProfileID: "uprof_live", Status: StatusFailed, ErrorType: "api_error", Attempts: 1})
	if err != nil || kept || n != 2 {
		t.Errorf("PutCall(failure over a live URL) = %v, %d, %v; want false, 2, nil", kept, n, err)
	}
	if r := get("uprof_live"); r.Status != StatusCreated || r.URL != "https://x/3" {
		t.Errorf("stored = %+v, want the live URL kept", r)
	}
	if got, want := progress(t, s, c), (Progress{Total: 3, Created: 3}); got != want {
		t.Errorf("progress = %+v, want %+v", got, want)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "7", "onboarding-2026-12-03", "Wave_1.b", "a-", strings.Repeat("x", 128)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "_a", "a b", "a/b", "a{b}", "a:b", "a\n", "\na", "café", "a\x00",
		strings.Repeat("x", 129), string(make([]byte, 129))} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", bad)
		}
	}
}

func TestUnfinished(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	ids := make([]string, 2500) // more than one scan batch
	for i := range ids {
		ids[i] = "uprof_" + strconv.Itoa(100000+i)
	}
	if _, err := s.Admit(ctx, c, ids); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:2000] {
		if _, err := s.Put(ctx, Result{Campaign: c, ProfileID: id, Status: StatusFailed}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Unfinished(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, ids[2000:]) {
		t.Errorf("Unfinished = %d ids (%v...), want the last 500", len(got), got[:min(3, len(got))])
	}
	if got, _ := s.Unfinished(ctx, c+"-none"); len(got) != 0 {
		t.Errorf("Unfinished of an unknown campaign = %v, want none", got)
	}
}

// TestSetColumnsConcurrent is two enqueue processes of one new campaign at
// once, and a few more: every merge succeeds and none is lost.
func TestSetColumnsConcurrent(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.SetColumns(ctx, c, []string{"email", "col_" + strconv.Itoa(i)})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("SetColumns: %v, want no error", err)
		}
	}
	cols, err := s.Columns(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != n+1 || cols[0] != "email" {
		t.Fatalf("columns %v, want email then the %d others", cols, n)
	}
	for i := range n {
		if !slices.Contains(cols, "col_"+strconv.Itoa(i)) {
			t.Errorf("columns %v lack col_%d", cols, i)
		}
	}
}

// TestClaimQueue: a campaign remembers the queue it was first enqueued
// on, with the store's retention, and refuses a second one once it has a
// profile.
func TestClaimQueue(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()

	if q, err := s.Queue(ctx, c); err != nil || q != "" {
		t.Fatalf("Queue of a new campaign = %q, %v; want \"\", nil", q, err)
	}
	// No profile yet (a run whose rows were all invalid): it may move.
	if err := s.ClaimQueue(ctx, c, "q1"); err != nil {
		t.Fatalf("ClaimQueue(q1): %v", err)
	}
	if err := s.ClaimQueue(ctx, c, "q2"); err != nil {
		t.Fatalf("ClaimQueue(q2) without profiles: %v", err)
	}
	if _, err := s.Admit(ctx, c, []string{"uprof_a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimQueue(ctx, c, "q2"); err != nil {
		t.Fatalf("ClaimQueue(q2) again: %v", err)
	}

	err := s.ClaimQueue(ctx, c, "q3")
	var conflict *QueueConflictError
	if !errors.As(err, &conflict) || *conflict != (QueueConflictError{Campaign: c, Queue: "q2", Other: "q3"}) {
		t.Fatalf("ClaimQueue(q3) = %v, want a QueueConflictError naming q2 and q3", err)
	}
	if q, err := s.Queue(ctx, c); err != nil || q != "q2" {
		t.Errorf("Queue = %q, %v; want q2", q, err)
	}
	ttl := s.rdb.TTL(ctx, key(c, "queue")).Val()
	if ttl <= 0 || ttl > time.Hour {
		t.Errorf("TTL of the queue record = %s, want the retention, 1h", ttl)
	}
}

// TestEachResultStreamsInInputOrder: results come by Seq, then profile id,
// each once, across batches of eachBatch, and fn's error stops the walk.
func TestEachResultStreamsInInputOrder(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	const n = 2*eachBatch + 17
	// Stored in an order unlike the input's: seq n-1 first, and two
	// profiles share each even seq (a carry-over can give that).
	var want []string
	for i := range n {
		want = append(want, "uprof_"+strconv.Itoa(1000000+i))
	}
	for i := n - 1; i >= 0; i-- {
		r := Result{Campaign: c, ProfileID: want[i], Seq: int64(i / 2 * 2), Status: StatusCreated, URL: "https://x/" + want[i], ExpiresAt: later}
		if _, err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A profile stored twice is one row, its newer result.
	if _, err := s.Put(ctx, Result{Campaign: c, ProfileID: want[5], Seq: 4, Status: StatusCreated, URL: "https://x/again", ExpiresAt: later}); err != nil {
		t.Fatal(err)
	}

	var got []string
	urls := map[string]string{}
	if err := s.EachResult(ctx, c, func(r Result) error {
		got = append(got, r.ProfileID)
		urls[r.ProfileID] = r.URL
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("EachResult gave %d ids, first %v; want %d in input order, first %v", len(got), got[:min(4, len(got))], len(want), want[:4])
	}
	if urls[want[5]] != "https://x/again" {
		t.Errorf("%s: URL %q, want the newer result's", want[5], urls[want[5]])
	}

	stop := errors.New("stop")
	calls := 0
	err := s.EachResult(ctx, c, func(Result) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("EachResult with fn failing at the 3rd: %v after %d calls; want stop after 3", err, calls)
	}
}

// TestUnadmit takes back what Admit did for profiles that got no task: a
// new profile leaves the campaign, a profile cleared to be minted again
// gets its URL back; a profile admitted by an earlier run is Rejoined.
func TestUnadmit(t *testing.T) {
	t.Parallel()
	s, c := setup(t)
	ctx := context.Background()
	soon := time.Now().Add(RemintBefore / 2).UTC().Truncate(time.Second)
	// uprof_r was admitted by an earlier run, and its URL is due now.
	s.Admit(ctx, c, []string{"uprof_r"})
	s.Put(ctx, Result{Campaign: c, ProfileID: "uprof_r", Status: StatusCreated, URL: "https://example.com/r", ExpiresAt: soon})

	adm, err := s.Admit(ctx, c, []string{"uprof_n", "uprof_r", "uprof_w"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Admission{Admitted, Remint, Admitted}; !slices.Equal(adm, want) {
		t.Fatalf("admissions = %v, want %v", adm, want)
	}
	if adm, _ := s.Admit(ctx, c, []string{"uprof_w"}); !slices.Equal(adm, []Admission{Rejoined}) {
		t.Errorf("admitting a profile without a result again = %v, want [Rejoined]", adm)
	}

	// uprof_n and uprof_r got no task; uprof_w did.
	if err := s.Unadmit(ctx, c, []string{"uprof_n"}, []string{"uprof_r"}); err != nil {
		t.Fatal(err)
	}
	if got, want := progress(t, s, c), (Progress{Total: 2, Created: 1}); got != want {
		t.Errorf("progress = %+v, want %+v", got, want)
	}
	r, ok, err := s.Get(ctx, c, "uprof_r")
	if err != nil || !ok || r.Status != StatusCreated || r.URL != "https://example.com/r" || !r.ExpiresAt.Equal(soon) {
		t.Errorf("uprof_r = %+v, %v, %v; want its URL back", r, ok, err)
	}
	if adm, _ := s.Admit(ctx, c, []string{"uprof_r"}); !slices.Equal(adm, []Admission{Remint}) {
		t.Errorf("admitting uprof_r again = %v, want [Remint]: its URL is still due", adm)
	}
}
