package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/sandbox"
)

// secretURL is a bearer URL as the API mints it; the token is what must
// never print.
const (
	secretToken = "tok3nMustNeverPrintQx81"
	secretURL   = "https://platform.claude.com/user-profiles/enrollment/" + secretToken
)

func testLink() client.Link {
	return client.Link{
		URL:       client.Secret(secretURL),
		ExpiresAt: time.Date(2026, 12, 3, 20, 15, 0, 0, time.UTC),
		RequestID: "req_0123456789abcdefghijABCD",
		RateLimit: client.RateLimitInfo{Limit: 5, Remaining: 4},
	}
}

// wantNoSecret fails when s holds the URL or its token.
func wantNoSecret(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, secretToken) || strings.Contains(s, "platform.claude.com") {
		t.Errorf("%s = %q, holds the secret URL", what, s)
	}
}

func TestSecretFormat(t *testing.T) {
	t.Parallel()
	link := testLink()
	values := map[string]any{
		"Link":            link,
		"*Link":           &link,
		"Link.URL":        link.URL,
		"*Link.URL":       &link.URL,
		"[]Link":          []client.Link{link},
		"map[string]Link": map[string]client.Link{"a": link},
		"struct{Link}":    struct{ L client.Link }{link},
	}
	verbs := []string{"%v", "%s", "%q", "%+v", "%#v", "%x", "%X", "%d", "%T %v"}
	for name, v := range values {
		for _, verb := range verbs {
			wantNoSecret(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), fmt.Sprintf(verb, v))
		}
		wantNoSecret(t, "Sprint("+name+")", fmt.Sprint(v))
		wantNoSecret(t, "Sprintln("+name+")", fmt.Sprintln(v))
	}
}

func TestSecretPrintsPlaceholder(t *testing.T) {
	t.Parallel()
	s := client.Secret(secretURL)
	for _, verb := range []string{"%v", "%s", "%q", "%+v", "%#v"} {
		if got := fmt.Sprintf(verb, s); got != "[redacted]" {
			t.Errorf("Sprintf(%q, secret) = %q, want [redacted]", verb, got)
		}
	}
	if got := s.String(); got != "[redacted]" {
		t.Errorf("String() = %q, want [redacted]", got)
	}
	if got := s.GoString(); got != "[redacted]" {
		t.Errorf("GoString() = %q, want [redacted]", got)
	}
	if got := s.Reveal(); got != secretURL {
		t.Errorf("Reveal() = %q, want %q", got, secretURL)
	}
}

func TestSecretSlog(t *testing.T) {
	t.Parallel()
	link := testLink()
	for _, tc := range []struct {
		name    string
		handler func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(tc.handler(&buf))
			log.Info("minted", "link", link)
			log.Info("minted", "link", &link)
			log.Info("minted", "url", link.URL)
			log.Info("minted", slog.Any("link", link), slog.Any("url", link.URL))
			log.With("link", link).Info("minted")
			log.Info("minted", slog.Group("g", "link", link))

			out := buf.String()
			wantNoSecret(t, tc.name+" log", out)
			if !strings.Contains(out, link.RequestID) {
				t.Errorf("log %q lacks the request id %q", out, link.RequestID)
			}
			if !strings.Contains(out, "2026-12-03T20:15:00Z") {
				t.Errorf("log %q lacks expires_at 2026-12-03T20:15:00Z", out)
			}
		})
	}
}

func TestLinkLogValueJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("minted", "link", testLink())

	var line struct {
		Link map[string]string `json:"link"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q is not JSON: %v", buf.String(), err)
	}
	want := map[string]string{"expires_at": "2026-12-03T20:15:00Z", "request_id": "req_0123456789abcdefghijABCD"}
	if len(line.Link) != len(want) || line.Link["expires_at"] != want["expires_at"] || line.Link["request_id"] != want["request_id"] {
		t.Errorf("logged link = %v, want %v", line.Link, want)
	}
}

// TestLinkFromAPINeverPrints runs the checks on a link the client really
// minted, so that no field the decoder fills holds the URL in the clear.
func TestLinkFromAPINeverPrints(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{}, client.Config{})
	link, err := b.client.Create(context.Background(), testProfile)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	url := link.URL.Reveal()

	var outs []string
	for _, verb := range []string{"%v", "%s", "%q", "%+v", "%#v"} {
		outs = append(outs, fmt.Sprintf(verb, link), fmt.Sprintf(verb, link.URL))
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("minted", "link", link, "url", link.URL)
	outs = append(outs, buf.String())

	for _, out := range outs {
		if strings.Contains(out, url) || strings.Contains(out, mintedURLPrefix) {
			t.Errorf("output %q holds the minted URL", out)
		}
	}
}
