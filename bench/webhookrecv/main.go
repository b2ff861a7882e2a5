// Command webhookrecv is a webhook receiver for trying the webhook sink:
// it checks every delivery's signature, refuses every --fail-every'th
// delivery with a 503, keeps the newest result per profile, and serves its
// counts as JSON at /stats. The secret comes from ENROLLQ_WEBHOOK_SECRET.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sink"
)

type stats struct {
	Requests   int `json:"requests"`
	Refused    int `json:"refused"`
	BadSig     int `json:"bad_signatures"`
	Profiles   int `json:"profiles"`
	Deliveries int `json:"deliveries_accepted"`
}

type receiver struct {
	secret    []byte
	failEvery int

	mu     sync.Mutex
	st     stats
	newest map[string]time.Time
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		rc.mu.Lock()
		st := rc.st
		st.Profiles = len(rc.newest)
		rc.mu.Unlock()
		json.NewEncoder(w).Encode(st)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.st.Requests++
	if !sink.Verify(rc.secret, r.Header.Get(sink.HeaderTimestamp), body, r.Header.Get(sink.HeaderSignature)) {
		rc.st.BadSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.failEvery > 0 && rc.st.Requests%rc.failEvery == 0 {
		rc.st.Refused++
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var res campaign.Result
	if err := json.Unmarshal(body, &res); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	rc.st.Deliveries++
	key := res.Campaign + "/" + res.ProfileID
	if old, ok := rc.newest[key]; !ok || !res.FinishedAt.Before(old) {
		rc.newest[key] = res.FinishedAt
	}
	w.WriteHeader(http.StatusNoContent)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8989", "listen address")
	failEvery := flag.Int("fail-every", 5, "refuse every Nth delivery with a 503 (0: none)")
	flag.Parse()
	secret := os.Getenv(sink.WebhookSecretEnv)
	if secret == "" {
		fmt.Fprintln(os.Stderr, "webhookrecv: set", sink.WebhookSecretEnv)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 5 * time.Second,
		Handler: &receiver{secret: []byte(secret), failEvery: *failEvery, newest: map[string]time.Time{}}}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "webhookrecv:", err)
		os.Exit(1)
	}
}
