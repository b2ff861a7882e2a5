// Command ui serves the asynq web UI (asynqmon) and enrollq's campaign
// progress page on its own, for deployments that keep it apart from the
// workers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/enrollq/enrollq/internal/redisconn"
	"github.com/enrollq/enrollq/internal/webui"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ui:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg webui.Config
	fs := flag.NewFlagSet("ui", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&cfg.RedisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis URL (env REDIS_URL); required")
	fs.BoolVar(&cfg.ReadOnly, "read-only", false, "hide the buttons that change tasks or queues")
	fs.StringVar(&cfg.AuthFile, "auth-file", "", "file holding user:password for basic auth (required off loopback)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if cfg.RedisURL == "" {
		return usageError{errors.New("--redis-url (or REDIS_URL) is required")}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	rdb, err := redisconn.Open(ctx, cfg.RedisURL, 5*time.Second)
	if errors.Is(err, redisconn.ErrBadURL) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	defer rdb.Close()
	cfg.Redis = rdb

	h, closeUI, err := webui.Handler(cfg)
	if err != nil {
		return err
	}
	defer closeUI()
	fmt.Fprintf(stderr, "web ui on http://%s/ (campaigns at /campaigns)\n", cfg.Addr)
	return webui.Serve(ctx, cfg.Addr, h)
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
