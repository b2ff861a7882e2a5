// Package client creates enrollment URLs through the official Anthropic Go
// SDK, one call at a time, and turns every answer into either a checked Link
// or an *Error that says what happened and whether trying again can help.
//
// The SDK's own retries are off: the job queue owns retries, so that every
// attempt is rate limited, counted and visible. Every call carries a
// deadline, because the SDK would otherwise wait out any retry hint.
//
// A Client is safe for concurrent use by many goroutines.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/enrollq/enrollq/internal/uprof"
)

// Defaults for Config.
const (
	DefaultBaseURL = "https://api.anthropic.com"
	DefaultVersion = "2023-06-01"
	DefaultBeta    = "user-profiles-2026-03-24"
	DefaultTimeout = 30 * time.Second
)

// Endpoint names the API route that mints the link.
type Endpoint string

const (
	// EnrollmentURL is POST /v1/user_profiles/{id}/enrollment_url.
	EnrollmentURL Endpoint = "enrollment_url"
	// ActionURL is POST /v1/user_profiles/{id}/action_urls with the action
	// enroll_end_user, the first-party API's route to the same link.
	ActionURL Endpoint = "action_url"
)

// Config configures a Client. The zero value of every field but APIKey has
// a working default.
type Config struct {
	// APIKey is sent as x-api-key. Required. Never logged.
	APIKey string

	// BaseURL is the API's address. Default DefaultBaseURL.
	BaseURL string

	// Version is the anthropic-version header. Default DefaultVersion.
	Version string

	// Betas are sent as anthropic-beta, comma separated. Default
	// [DefaultBeta].
	Betas []string

	// WorkspaceID, when set, is sent as anthropic-workspace-id.
	WorkspaceID string

	// Timeout bounds one call, connection to last byte. It must stay below
	// the task timeout so that a call never outlives its task. Default
	// DefaultTimeout.
	Timeout time.Duration

	// Endpoint selects the route. Default EnrollmentURL.
	Endpoint Endpoint

	// HTTPClient makes the requests. Default a client with no overall
	// timeout of its own (Timeout applies per call).
	HTTPClient *http.Client

	// Now reads the clock to check expires_at. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if len(c.Betas) == 0 {
		c.Betas = []string{DefaultBeta}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Endpoint == "" {
		c.Endpoint = EnrollmentURL
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: newTransport()}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.APIKey == "":
		return errors.New("api key: required (set ANTHROPIC_API_KEY)")
	case strings.ContainsAny(c.APIKey, "\r\n"):
		return errors.New("api key: holds a line break")
	case strings.ContainsFunc(c.APIKey, func(r rune) bool { return r < ' ' || r == 0x7f }):
		// net/http would refuse it in every request, each a retry spent.
		return errors.New("api key: holds a control character")
	case !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://"):
		return fmt.Errorf("base url %q: must start with http:// or https://", c.BaseURL)
	case c.Endpoint != EnrollmentURL && c.Endpoint != ActionURL:
		return fmt.Errorf("endpoint %q: must be %q or %q", c.Endpoint, EnrollmentURL, ActionURL)
	}
	return nil
}

// maxIdlePerHost keeps a connection for every task a worker runs at once.
// http.DefaultTransport keeps 2 per host, so a worker with more tasks in
// flight over HTTP/1.1 would close and reopen connections all the time.
const maxIdlePerHost = 256

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxIdlePerHost
	t.MaxIdleConnsPerHost = maxIdlePerHost
	// Answers are a few hundred bytes: asking for gzip saves nothing.
	t.DisableCompression = true
	return t
}

// Client mints enrollment URLs.
type Client struct {
	cfg  Config
	sdk  anthropic.Client
	beta option.RequestOption // the anthropic-beta header
}

// New returns a Client, or an error naming the bad Config field.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	opts := []option.RequestOption{
		// The environment must not add credentials or a base URL of its
		// own: both come from Config.
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(cfg.BaseURL),
		option.WithHTTPClient(cfg.HTTPClient),
		option.WithMaxRetries(0),
		// enrollq exports no traces: without a tracer provider the SDK
		// would build a span per call for nothing.
		option.WithoutOpenTelemetry(),
		option.WithHeader("x-api-key", cfg.APIKey),
		option.WithHeader("anthropic-version", cfg.Version),
	}
	if cfg.WorkspaceID != "" {
		opts = append(opts, option.WithHeader("anthropic-workspace-id", cfg.WorkspaceID))
	}
	return &Client{cfg: cfg, sdk: anthropic.NewClient(opts...),
		beta: option.WithHeader("anthropic-beta", strings.Join(cfg.Betas, ","))}, nil
}

// Endpoint reports which route the client calls.
func (c *Client) Endpoint() Endpoint { return c.cfg.Endpoint }

// Link is a freshly minted enrollment URL.
type Link struct {
	URL       Secret
	ExpiresAt time.Time
	RequestID string
	// RateLimit holds the anthropic-ratelimit-requests-* headers, when sent.
	RateLimit RateLimitInfo
}

// RateLimitInfo is what the API said about the caller's request budget.
type RateLimitInfo struct {
	Limit, Remaining int // -1 when absent
	Reset            time.Time
}

// Create mints one link for the profile id. It validates the id first, so
// that a malformed id never reaches the network. Any failure is an *Error.
func (c *Client) Create(ctx context.Context, profileID string) (Link, error) {
	if err := uprof.Validate(profileID); err != nil {
		return Link{}, &Error{ProfileID: profileID, Kind: KindInvalidID, Message: err.Error()}
	}

	callCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	var (
		resp *http.Response
		body []byte
	)
	opts := []option.RequestOption{
		c.beta,
		option.WithResponseInto(&resp),
		option.WithResponseBodyInto(&body),
	}

	var err error
	switch c.cfg.Endpoint {
	case ActionURL:
		enroll := anthropic.NewBetaUserProfileEnrollEndUserActionParam()
		params := anthropic.BetaUserProfileActionURLNewParams{
			Action: anthropic.BetaUserProfileActionUnionParam{OfEnrollEndUser: &enroll},
		}
		_, err = c.sdk.Beta.UserProfiles.ActionURLs.New(callCtx, profileID, params, opts...)
	default:
		_, err = c.sdk.Beta.UserProfiles.NewEnrollmentURL(callCtx, profileID,
			anthropic.BetaUserProfileNewEnrollmentURLParams{}, opts...)
	}
	if err != nil {
		return Link{}, c.classify(ctx, profileID, resp, err)
	}
	return c.decode(profileID, resp, body)
}

// mediaType is a Content-Type's media type, lowercased, without its
// parameters ("application/json; charset=utf-8" is "application/json").
func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// successBody is the 200 answer of both routes.
type successBody struct {
	URL       *string `json:"url"`
	Type      *string `json:"type"`
	ExpiresAt *string `json:"expires_at"`
}

// decode checks a 200 answer field by field: the SDK would accept a missing
// url, another type or an unparsable expires_at without complaint.
func (c *Client) decode(profileID string, resp *http.Response, body []byte) (Link, error) {
	reqID := headerRequestID(resp)
	malformed := func(format string, args ...any) error {
		return &Error{
			ProfileID: profileID, Kind: KindMalformed, StatusCode: http.StatusOK,
			RequestID: reqID, Message: fmt.Sprintf(format, args...),
		}
	}

	if resp != nil {
		if mt := mediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
			return Link{}, malformed("200 with content-type %q, want application/json", mt)
		}
	}
	var b successBody
	if err := json.Unmarshal(body, &b); err != nil {
		return Link{}, malformed("200 with a body that is not JSON: %v", err)
	}

	wantType := "enrollment_url"
	if c.cfg.Endpoint == ActionURL {
		wantType = "user_profile_action_url"
	}
	switch {
	case b.URL == nil || *b.URL == "":
		return Link{}, malformed("200 without url")
	case !strings.HasPrefix(*b.URL, "https://") && !strings.HasPrefix(*b.URL, "http://"):
		return Link{}, malformed("200 with a url that is not http(s)")
	case b.Type == nil || *b.Type != wantType:
		got := "<missing>"
		if b.Type != nil {
			got = *b.Type
		}
		return Link{}, malformed("200 with type %q, want %q", got, wantType)
	case b.ExpiresAt == nil:
		return Link{}, malformed("200 without expires_at")
	}
	expires, err := time.Parse(time.RFC3339Nano, *b.ExpiresAt)
	if err != nil {
		return Link{}, malformed("200 with expires_at %q that is not RFC 3339", *b.ExpiresAt)
	}
	if !expires.After(c.cfg.Now()) {
		return Link{}, malformed("200 with expires_at %s already past", expires.UTC().Format(time.RFC3339))
	}

	return Link{
		URL:       Secret(*b.URL),
		ExpiresAt: expires.UTC(),
		RequestID: reqID,
		RateLimit: rateLimitInfo(resp),
	}, nil
}

// LogValue lets a Link be logged without its URL.
func (l Link) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("expires_at", l.ExpiresAt.Format(time.RFC3339)),
		slog.String("request_id", l.RequestID),
	)
}
