// Package webui serves the asynq web UI (asynqmon) and a plain-text
// campaign progress page, for the worker's --ui-addr and for cmd/ui.
//
// The UI shows task payloads (ids and passthrough columns such as email),
// so it listens on loopback by default and demands basic auth on any other
// address.
package webui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
)

// Config configures the UI.
type Config struct {
	// Addr is where to listen, e.g. 127.0.0.1:8080.
	Addr string
	// RedisURL is the queue's Redis (asynqmon opens its own connection).
	RedisURL string
	// Redis serves the campaign page.
	Redis redis.UniversalClient
	// ReadOnly hides asynqmon's buttons that change tasks and queues.
	ReadOnly bool
	// AuthFile holds "user:password" for basic auth. Required unless Addr
	// is a loopback address.
	AuthFile string
	// FlagPrefix is put before "addr" and "auth-file" in error messages so
	// that they name the command's flags: "ui-" for the worker's --ui-addr,
	// "" for cmd/ui's --addr.
	FlagPrefix string
}

// Validate checks that the UI is not served off loopback without basic
// auth, and that the auth file is readable. Its errors name the flag.
func (cfg Config) Validate() error {
	if cfg.AuthFile != "" {
		_, _, err := cfg.readAuth()
		return err
	}
	if !loopback(cfg.Addr) {
		return fmt.Errorf("--%saddr %s is not a loopback address: set --%sauth-file (a file holding user:password)",
			cfg.FlagPrefix, cfg.Addr, cfg.FlagPrefix)
	}
	return nil
}

// Handler returns the UI's handler: asynqmon at /, campaign progress at
// /campaigns.
func Handler(cfg Config) (http.Handler, func(), error) {
	opt, err := asynq.ParseRedisURI(cfg.RedisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("web ui: redis url: %w", err)
	}
	mon := asynqmon.New(asynqmon.Options{RootPath: "/", RedisConnOpt: opt, ReadOnly: cfg.ReadOnly})

	mux := http.NewServeMux()
	mux.Handle("/campaigns", campaignPage(cfg.Redis))
	mux.Handle("/", mon)

	var h http.Handler = mux
	if err := cfg.Validate(); err != nil {
		mon.Close()
		return nil, nil, err
	}
	if cfg.AuthFile != "" {
		user, pass, err := cfg.readAuth()
		if err != nil {
			mon.Close()
			return nil, nil, err
		}
		h = basicAuth(h, user, pass)
	}
	return h, func() { mon.Close() }, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (cfg Config) readAuth() (string, string, error) {
	b, err := os.ReadFile(cfg.AuthFile)
	if err != nil {
		return "", "", fmt.Errorf("--%sauth-file: %w", cfg.FlagPrefix, err)
	}
	user, pass, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok || user == "" || pass == "" {
		return "", "", fmt.Errorf("--%sauth-file: want one line user:password", cfg.FlagPrefix)
	}
	return user, pass, nil
}

func basicAuth(next http.Handler, user, pass string) http.Handler {
	wantUser := sha256.Sum256([]byte(user))
	wantPass := sha256.Sum256([]byte(pass))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(u))
		gotPass := sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="enrollq"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// campaignPage lists the known campaigns with their counts.
func campaignPage(rdb redis.UniversalClient) http.Handler {
	store := campaign.NewStore(rdb, 0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		names, err := store.Campaigns(r.Context(), 100)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%-40s %10s %10s %10s %10s\n", "campaign", "total", "created", "failed", "pending")
		for _, name := range names {
			p, err := store.Progress(r.Context(), name)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "%-40s %10d %10d %10d %10d\n", name, p.Total, p.Created, p.Failed, p.Pending())
		}
	})
}

// Serve listens on addr until ctx ends.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
