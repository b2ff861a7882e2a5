package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sink"
)

// DefaultMinValidity is how long a URL must still live for export to hand
// it on: the margin enqueue uses to mint a link again.
const DefaultMinValidity = campaign.RemintBefore

// config is everything the flags and environment say.
type config struct {
	redisURL string // fleet Redis; required
	campaign string // required
	out      string // results file, .csv or .jsonl; required
	failures string // optional: rows without a usable URL go here instead

	// minValidity leaves out URLs that expire sooner than this after the
	// export. Default DefaultMinValidity.
	minValidity time.Duration

	// sendAt, when set, is when the mail goes out: URLs that expire
	// before it are warned about.
	sendAt time.Time

	logLevel string
}

func parseFlags(args []string, stderr io.Writer, now time.Time) (config, error) {
	var c config
	var sendAt string
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: export --campaign NAME --out FILE [--failures FILE] [--min-validity D] [--send-at T]")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis of the fleet (env REDIS_URL); required")
	fs.StringVar(&c.campaign, "campaign", "", "campaign to export; required")
	fs.StringVar(&c.out, "out", "", "results file, .csv or .jsonl; required")
	fs.StringVar(&c.failures, "failures", "", "write rows without a usable URL (failed, expired, pending) to this file instead of --out")
	fs.DurationVar(&c.minValidity, "min-validity", DefaultMinValidity, "leave out URLs that expire sooner than this from now")
	fs.StringVar(&sendAt, "send-at", "", "when the mail goes out: an RFC 3339 time or a duration from now; warns about URLs that expire before it")
	fs.StringVar(&c.logLevel, "log-level", "warn", "debug, info, warn or error")

	if err := fs.Parse(args); err != nil {
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if sendAt != "" {
		t, err := parseSendAt(sendAt, now)
		if err != nil {
			return c, usageError{fmt.Errorf("--send-at: %w", err)}
		}
		c.sendAt = t
	}
	return c, c.validate(now)
}

// parseSendAt reads an RFC 3339 time, or a duration from now.
func parseSendAt(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-12-03T09:00:00Z) nor a duration (2h)", s)
	}
	return now.Add(d), nil
}

func (c *config) validate(now time.Time) error {
	switch {
	case c.redisURL == "":
		return usageError{errors.New("--redis-url (or REDIS_URL) is required: the results live in the fleet's Redis")}
	case c.campaign == "":
		return usageError{errors.New("--campaign is required")}
	case c.out == "":
		return usageError{errors.New("--out is required")}
	case c.minValidity < 0:
		return usageError{fmt.Errorf("--min-validity %s: must be 0 or more", c.minValidity)}
	case !c.sendAt.IsZero() && c.sendAt.Before(now):
		return usageError{fmt.Errorf("--send-at %s: is in the past", c.sendAt.Format(time.RFC3339))}
	}
	if err := campaign.ValidateName(c.campaign); err != nil {
		return usageError{fmt.Errorf("--campaign: %w", err)}
	}
	if _, err := sink.FormatOf(c.out); err != nil {
		return usageError{fmt.Errorf("--out: %w", err)}
	}
	if c.failures != "" {
		if _, err := sink.FormatOf(c.failures); err != nil {
			return usageError{fmt.Errorf("--failures: %w", err)}
		}
		if sink.SameOutput(c.failures, c.out) {
			return usageError{fmt.Errorf("--failures %s is --out: name another file", c.failures)}
		}
	}
	return nil
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
