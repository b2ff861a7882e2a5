package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/metrics"
	"github.com/enrollq/enrollq/internal/producer"
	"github.com/enrollq/enrollq/internal/redistest"
	"github.com/enrollq/enrollq/internal/sandbox"
	"github.com/enrollq/enrollq/internal/source"
)

// TestMetricsAfterCampaign runs a campaign of 20 profiles against the
// sandbox, 2 of which answer 404, and scrapes the metrics page before and
// after: the asynq queue size, the request and result counters and the
// campaign gauges carry the right counts, and no label holds a URL, an
// email or a profile id.
func TestMetricsAfterCampaign(t *testing.T) {
	t.Parallel()
	const n, missing = 20, 2
	rdb := redistest.New(t)
	name := redistest.Name(t)
	ctx := context.Background()

	var csv strings.Builder
	csv.WriteString("user_profile_id,email\n")
	var notFound []string
	for i := range n {
		id := fmt.Sprintf("uprof_01M%023d", i)
		fmt.Fprintf(&csv, "%s,person.%d@example.com\n", id, i)
		if i < missing {
			notFound = append(notFound, id)
		}
	}
	sb, err := sandbox.New(sandbox.Config{NotFound: notFound})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)

	w, err := New(Config{
		Redis: rdb, Queue: name, Concurrency: 4, Rate: 0, Fleet: true, MetricsAddr: "127.0.0.1:0",
		Client: client.Config{APIKey: "metrics-key", BaseURL: api.URL, Timeout: 5 * time.Second},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	redistest.DeleteQueueAtEnd(t, rdb, name)
	page := httptest.NewServer(metricsMux(w.metrics, rdb))
	t.Cleanup(page.Close)

	recs, err := source.NewCSV(strings.NewReader(csv.String()), source.CSVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := producer.Enqueue(ctx, producer.Config{Redis: rdb, Queue: name, Campaign: name}, recs)
	if err != nil || sum.Enqueued != n {
		t.Fatalf("enqueue: %d enqueued, err %v; want %d", sum.Enqueued, err, n)
	}

	before := scrape(t, page.URL)
	checkValue(t, before, "asynq_queue_size", map[string]string{"queue": name}, n)
	checkValue(t, before, "asynq_tasks_enqueued_total", map[string]string{"queue": name, "state": "pending"}, n)
	checkValue(t, before, "enrollq_campaign_profiles", map[string]string{"campaign": name, "state": "pending"}, n)

	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	store := campaign.NewStore(rdb, 0)
	for deadline := time.Now().Add(30 * time.Second); ; {
		p, err := store.Progress(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Pending() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign not done after 30s: %+v", p)
		}
		time.Sleep(50 * time.Millisecond)
	}

	after := scrape(t, page.URL)
	checkValue(t, after, "enrollq_api_requests_total", map[string]string{"outcome": "succeed", "status": "200"}, n-missing)
	checkValue(t, after, "enrollq_api_requests_total", map[string]string{"outcome": "fail", "status": "404"}, missing)
	checkValue(t, after, "enrollq_results_total", map[string]string{"status": "created"}, n-missing)
	checkValue(t, after, "enrollq_results_total", map[string]string{"status": "failed"}, missing)
	checkValue(t, after, "enrollq_campaign_profiles", map[string]string{"campaign": name, "state": "created"}, n-missing)
	checkValue(t, after, "enrollq_campaign_profiles", map[string]string{"campaign": name, "state": "failed"}, missing)
	checkValue(t, after, "enrollq_campaign_profiles", map[string]string{"campaign": name, "state": "pending"}, 0)
	// Succeeded tasks leave the queue; the failed ones stay archived.
	checkValue(t, after, "asynq_queue_size", map[string]string{"queue": name}, missing)
	checkValue(t, after, "asynq_tasks_enqueued_total", map[string]string{"queue": name, "state": "archived"}, missing)
	if h := find(after, "enrollq_api_request_duration_seconds", nil); h == nil || h.GetHistogram().GetSampleCount() != n {
		t.Errorf("enrollq_api_request_duration_seconds: %v, want %d samples", h, n)
	}

	// No label anywhere on the page (other tests' campaigns included, on a
	// shared Redis) looks like a URL, an email or a profile id; and no
	// minted URL or email of this campaign is anywhere on the page.
	secret := regexp.MustCompile(`(?i)https?:|://|/enrollment|@|uprof_`)
	for fam, mf := range after {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if secret.MatchString(l.GetValue()) {
					t.Errorf("%s{%s=%q}: a label value holds a URL, email or profile id", fam, l.GetName(), l.GetValue())
				}
			}
		}
	}
	body := scrapeText(t, page.URL)
	results, err := store.Results(ctx, name)
	if err != nil || len(results) != n {
		t.Fatalf("results: %d, %v; want %d", len(results), err, n)
	}
	for _, r := range results {
		for _, s := range []string{r.URL, r.Columns["email"], r.ProfileID} {
			if s != "" && strings.Contains(body, s) {
				t.Errorf("/metrics holds %q of %s", s, r.ProfileID)
			}
		}
	}

	checkValue(t, after, "asynq_queue_paused_total", map[string]string{"queue": name}, 0)
	if err := w.inspector.PauseQueue(name); err != nil {
		t.Fatal(err)
	}
	checkValue(t, scrape(t, page.URL), "asynq_queue_paused_total", map[string]string{"queue": name}, 1)

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(page.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s, want 200", path, resp.Status)
		}
	}
}

func TestReadyzFailsWithoutRedis(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() { insp.Close() })
	page := httptest.NewServer(metricsMux(metrics.New(rdb, insp), rdb))
	t.Cleanup(page.Close)
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable} {
		resp, err := http.Get(page.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s without Redis: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func scrapeText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(scrapeText(t, base)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// find returns the series of family name whose labels include want.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	mf := fams[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func checkValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	m := find(fams, name, labels)
	if m == nil {
		t.Errorf("%s%v: no such series on /metrics", name, labels)
		return
	}
	var got float64
	switch {
	case m.Counter != nil:
		got = m.GetCounter().GetValue()
	case m.Gauge != nil:
		got = m.GetGauge().GetValue()
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}
