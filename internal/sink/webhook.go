package sink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
)

// Webhook headers. The signature is
// "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)), timestamp
// being the Unix seconds in HeaderTimestamp; a receiver recomputes it and
// refuses a stale timestamp.
const (
	HeaderTimestamp = "Enrollq-Timestamp"
	HeaderSignature = "Enrollq-Signature"
	HeaderDelivery  = "Enrollq-Delivery"
)

// Defaults for WebhookConfig.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultWebhookBackoff = 250 * time.Millisecond
	DefaultWebhookMaxWait = 10 * time.Second
	DefaultWebhookBudget  = 90 * time.Second
)

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// URL receives the POSTs: https://, or http:// to a loopback address.
	// It is a secret (it may hold a token): messages show its host only.
	URL string

	// Secret signs each body. Required.
	Secret []byte

	// Timeout bounds one POST. Default DefaultWebhookTimeout.
	Timeout time.Duration

	// Backoff is the first retry's wait, doubled each retry up to MaxWait,
	// with full jitter. Default DefaultWebhookBackoff, DefaultWebhookMaxWait.
	Backoff, MaxWait time.Duration

	// Budget bounds the retries of one result; past it Put fails and the
	// task runs again later (it must stay under tasks.TaskTimeout). Default
	// DefaultWebhookBudget.
	Budget time.Duration

	// Client sends the POSTs. Default a client of its own.
	Client *http.Client

	Logger *slog.Logger // default slog.Default()
}

func (c WebhookConfig) withDefaults() WebhookConfig {
	if c.Timeout <= 0 {
		c.Timeout = DefaultWebhookTimeout
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultWebhookBackoff
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultWebhookMaxWait
	}
	if c.Budget <= 0 {
		c.Budget = DefaultWebhookBudget
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c WebhookConfig) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return errors.New("webhook url: does not parse as a URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("webhook url: http:// only to a loopback address (got host %s); use https://", u.Hostname())
		}
	default:
		return fmt.Errorf("webhook url: scheme %q: use https://", u.Scheme)
	}
	if len(c.Secret) == 0 {
		return errors.New("webhook: a signing secret is required (env ENROLLQ_WEBHOOK_SECRET or --sink-secret-file)")
	}
	return nil
}

// Webhook POSTs each result, as JSON (campaign.Result's encoding), to a
// URL, signed. Its Put retries with backoff within a budget; behind an
// Outbox, which the workers use, delivery is retried until the receiver
// answers 2xx.
// A receiver may see a result more than once (a retried task mints a new
// URL); HeaderDelivery and finished_at let it keep the newest per
// (campaign, user_profile_id). It is safe for concurrent use.
type Webhook struct {
	cfg  WebhookConfig
	host string
}

var _ Results = (*Webhook)(nil)

// NewWebhook checks cfg and returns a Webhook.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	return &Webhook{cfg: cfg, host: u.Host}, nil
}

// Sign returns the signature header's value for body sent at timestamp.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is body's at timestamp under secret.
func Verify(secret []byte, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// Put delivers r, retrying until the receiver takes it, ctx ends or the
// budget is spent.
func (w *Webhook) Put(ctx context.Context, r campaign.Result) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("webhook: encode %s: %w", r.ProfileID, err)
	}
	delivery := deliveryID(r)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Budget)
	defer cancel()

	wait := w.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := w.deliver(ctx, body, delivery)
		if err == nil {
			return nil
		}
		w.cfg.Logger.Warn("webhook delivery failed; retrying", "host", w.host,
			"campaign", r.Campaign, "user_profile_id", r.ProfileID, "attempt", attempt, "error", err)
		// Full jitter, so that a fleet's retries do not arrive together.
		d := rand.N(wait) + time.Millisecond
		select {
		case <-ctx.Done():
			return fmt.Errorf("webhook to %s: %s not delivered after %d attempts: %w", w.host, r.ProfileID, attempt, err)
		case <-time.After(d):
		}
		wait = min(wait*2, w.cfg.MaxWait)
	}
}

// deliveryID names one delivery of one result.
func deliveryID(r campaign.Result) string {
	return r.Campaign + "/" + r.ProfileID + "/" + strconv.FormatInt(r.FinishedAt.UnixNano(), 10)
}

// deliver makes one delivery attempt. Errors name the host only: the URL may
// carry a token.
func (w *Webhook) deliver(ctx context.Context, body []byte, delivery string) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("build request")
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, ts, body))
	req.Header.Set(HeaderDelivery, delivery)
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // drop the URL
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// String names the receiving host; the URL's path and query may hold a
// token.
func (w *Webhook) String() string { return "webhook to " + w.host }

// Close drops the client's idle connections.
func (w *Webhook) Close() error {
	w.cfg.Client.CloseIdleConnections()
	return nil
}
