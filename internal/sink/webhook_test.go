package sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sink"
)

// receiver is a webhook endpoint that refuses every fifth delivery and
// checks every signature.
type receiver struct {
	secret []byte

	mu       sync.Mutex
	requests int
	refused  int
	badSig   int
	got      map[string]int // user_profile_id -> deliveries accepted
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	ts := r.Header.Get(sink.HeaderTimestamp)
	if !sink.Verify(rc.secret, ts, body, r.Header.Get(sink.HeaderSignature)) {
		rc.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.requests%5 == 0 {
		rc.refused++
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var res campaign.Result
	if err := json.Unmarshal(body, &res); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.got[res.ProfileID]++
	w.WriteHeader(http.StatusNoContent)
}

func newReceiver(t *testing.T, secret string) (*receiver, string) {
	t.Helper()
	rc := &receiver{secret: []byte(secret), got: map[string]int{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv.URL + "/hook?token=tok-secret"
}

func TestWebhookDeliversEveryResultDespiteFailures(t *testing.T) {
	t.Parallel()
	rc, url := newReceiver(t, "whsec-test")
	wh, err := sink.NewWebhook(sink.WebhookConfig{URL: url, Secret: []byte("whsec-test"),
		Backoff: time.Millisecond, MaxWait: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- wh.Put(context.Background(), campaign.Result{Campaign: "c", ProfileID: fmt.Sprintf("uprof_%d", i),
				Status: campaign.StatusCreated, URL: "https://x/" + fmt.Sprint(i), FinishedAt: time.Now()})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("put: %v", err)
		}
	}
	if len(rc.got) != n {
		t.Errorf("receiver got %d results, want %d", len(rc.got), n)
	}
	if rc.refused < n/5-1 || rc.badSig != 0 {
		t.Errorf("refused %d (want about %d), bad signatures %d (want 0)", rc.refused, n/5, rc.badSig)
	}
}

func TestWebhookSignatureAndSecrets(t *testing.T) {
	t.Parallel()
	body := []byte(`{"a":1}`)
	sig := sink.Sign([]byte("k"), "1700000000", body)
	if !sink.Verify([]byte("k"), "1700000000", body, sig) {
		t.Error("Verify refuses Sign's signature")
	}
	if sink.Verify([]byte("k"), "1700000001", body, sig) || sink.Verify([]byte("other"), "1700000000", body, sig) {
		t.Error("Verify accepts a signature for another timestamp or secret")
	}

	// A receiver that never answers 2xx: Put gives up within its budget,
	// and its error shows the host only, not the token in the URL.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	wh, err := sink.NewWebhook(sink.WebhookConfig{URL: srv.URL + "/hook?token=tok-secret", Secret: []byte("k"),
		Backoff: time.Millisecond, Budget: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = wh.Put(context.Background(), campaign.Result{Campaign: "c", ProfileID: "uprof_a", Status: campaign.StatusCreated})
	if err == nil || strings.Contains(err.Error(), "tok-secret") {
		t.Errorf("Put to a failing receiver: %v; want an error without the token", err)
	}

	for _, bad := range []sink.WebhookConfig{
		{URL: "http://example.com/hook", Secret: []byte("k")},
		{URL: "https://example.com/hook"},
	} {
		if _, err := sink.NewWebhook(bad); err == nil {
			t.Errorf("NewWebhook(%s, secret %d bytes) = nil error", bad.URL, len(bad.Secret))
		}
	}
}
