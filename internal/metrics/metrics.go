// Package metrics exports the worker's Prometheus metrics: API calls by
// outcome and status, API latency, limiter waits and rate, campaign
// progress, and asynq's queue collector. Labels hold outcomes, statuses,
// queue and campaign names only: never a URL, key or email.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
)

// Metrics is the worker's set of metrics. Its methods are safe for
// concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  prometheus.Histogram
	wait     prometheus.Histogram
	rate     prometheus.Gauge
	results  *prometheus.CounterVec
}

// New registers the metrics. rdb feeds the queue and campaign collectors.
func New(rdb redis.UniversalClient, inspector *asynq.Inspector) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enrollq_api_requests_total",
			Help: "API calls by outcome (the queue's action) and HTTP status or fault kind.",
		}, []string{"outcome", "status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "enrollq_api_request_duration_seconds",
			Help:    "Time of one API call, connection to last byte.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "enrollq_limiter_wait_seconds",
			Help:    "Time a task waited for the rate limiter.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		rate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "enrollq_rate_limit_requests_per_second",
			Help: "The allowed API call rate (fleet-wide with the fleet limiter; +Inf when off).",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enrollq_results_total",
			Help: "Results this process stored, by status.",
		}, []string{"status"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.wait, m.rate, m.results,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		asynqmetrics.NewQueueMetricsCollector(inspector),
		&campaignCollector{store: campaign.NewStore(rdb, 0)},
	)
	return m
}

// Handler serves the metrics page.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// SetRate records the allowed rate.
func (m *Metrics) SetRate(perSecond float64) {
	if m != nil {
		m.rate.Set(perSecond)
	}
}

// ObserveCall records one API call: its outcome, status and duration.
func (m *Metrics) ObserveCall(outcome string, err error, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(outcome, statusLabel(err)).Inc()
	m.latency.Observe(d.Seconds())
}

// ObserveWait records a limiter wait.
func (m *Metrics) ObserveWait(d time.Duration) {
	if m != nil {
		m.wait.Observe(d.Seconds())
	}
}

// ObserveResult counts a stored result.
func (m *Metrics) ObserveResult(status string) {
	if m != nil {
		m.results.WithLabelValues(status).Inc()
	}
}

func statusLabel(err error) string {
	if err == nil {
		return "200"
	}
	var e *client.Error
	if !errors.As(err, &e) {
		return "error"
	}
	if e.StatusCode != 0 {
		return strconv.Itoa(e.StatusCode)
	}
	return string(e.Kind)
}

// campaignCollector reports the progress of recent campaigns at scrape
// time.
type campaignCollector struct {
	store *campaign.Store
}

var campaignDesc = prometheus.NewDesc("enrollq_campaign_profiles",
	"Profiles of a campaign by state (total, created, failed, pending).",
	[]string{"campaign", "state"}, nil)

func (c *campaignCollector) Describe(ch chan<- *prometheus.Desc) { ch <- campaignDesc }

func (c *campaignCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	names, err := c.store.Campaigns(ctx, 20)
	if err != nil {
		return
	}
	for _, name := range names {
		p, err := c.store.Progress(ctx, name)
		if err != nil {
			continue
		}
		for state, v := range map[string]int64{"total": p.Total, "created": p.Created, "failed": p.Failed, "pending": p.Pending()} {
			ch <- prometheus.MustNewConstMetric(campaignDesc, prometheus.GaugeValue, float64(v), name, state)
		}
	}
}
