package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/enrollq/enrollq/internal/sandbox"
)

// defaultAddr is where the sandbox listens unless --addr says otherwise.
const defaultAddr = "127.0.0.1:8787"

// options is what the flags ask for.
type options struct {
	addr     string
	logLevel slog.Level
	config   sandbox.Config
}

// parseFlags reads args into options. Usage and flag errors go to stderr.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var (
		opts        options
		c           = &opts.config
		allowRemote bool
		keys        string
		faults      string
		script      string
		notFound    string
		badRequest  string
		forbidden   string
	)
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.addr, "addr", defaultAddr, "listen `address`; loopback only unless --allow-remote")
	fs.BoolVar(&allowRemote, "allow-remote", false, "allow --addr to be a non-loopback address")
	fs.StringVar(&keys, "keys", "", "accepted API `keys`, comma-separated (default: any non-empty key)")
	fs.Float64Var(&c.Rate, "rate", 0, "requests per second per key (0: unlimited)")
	fs.IntVar(&c.Burst, "burst", 0, "token bucket size (default 1 when --rate is set)")
	fs.DurationVar(&c.Latency, "latency", 0, "latency added to every admitted request")
	fs.DurationVar(&c.Jitter, "jitter", 0, "uniform extra latency in [0, jitter)")
	fs.DurationVar(&c.TTL, "ttl", sandbox.DefaultTTL, "lifetime of a minted URL")
	fs.StringVar(&faults, "fail", "", "injected faults as name=probability,... (names: "+
		strings.Join(sandbox.FaultNames(), " ")+")")
	fs.StringVar(&script, "script", "", "fault `names` served in order first, comma-separated; ok for none")
	fs.StringVar(&notFound, "not-found", "", "profile `ids` that answer 404, comma-separated")
	fs.StringVar(&badRequest, "bad-request", "", "profile `ids` that answer 400 user_profile_not_found")
	fs.StringVar(&forbidden, "forbidden", "", "profile `ids` that answer 403")
	fs.BoolVar(&c.Disabled, "disabled", false, "answer 404 for every profile (enrollment disabled)")
	fs.StringVar(&c.WorkspaceID, "workspace-id", "", "answer 403 when anthropic-workspace-id differs from this `id`")
	fs.DurationVar(&c.SlowDelay, "slow", sandbox.DefaultSlowDelay, "how long the slow fault stalls")
	fs.Int64Var(&c.Seed, "seed", 0, "random seed for faults and jitter (0: from the clock)")
	fs.TextVar(&opts.logLevel, "log-level", slog.LevelInfo, "log `level`: debug (one line per request), info, warn, error")
	if err := fs.Parse(args); err != nil {
		return options{}, usageError{err}
	}
	if fs.NArg() > 0 {
		return options{}, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}

	if err := checkAddr(opts.addr, allowRemote); err != nil {
		return options{}, usageError{err}
	}
	var err error
	if c.Faults, err = sandbox.ParseFaults(faults); err != nil {
		return options{}, usageError{fmt.Errorf("--fail: %w", err)}
	}
	c.Keys = splitList(keys)
	c.Script = splitList(script)
	c.NotFound = splitList(notFound)
	c.BadRequest = splitList(badRequest)
	c.Forbidden = splitList(forbidden)
	return opts, nil
}

// checkAddr refuses a listen address that is not loopback, unless remote
// listening is allowed: the sandbox accepts any key by default.
func checkAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if allowRemote || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--addr %q is not a loopback address; pass --allow-remote to listen there", addr)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// logAttrs describes the configuration for the startup line. Keys appear
// as fingerprints only.
func (o options) logAttrs() []any {
	c := o.config
	fingerprints := make([]string, len(c.Keys))
	for i, k := range c.Keys {
		fingerprints[i] = sandbox.Fingerprint(k)
	}
	return []any{
		slog.Any("key_fingerprints", fingerprints),
		slog.Float64("rate", c.Rate),
		slog.Int("burst", c.Burst),
		slog.String("latency", c.Latency.String()),
		slog.String("jitter", c.Jitter.String()),
		slog.String("ttl", c.TTL.String()),
		slog.String("faults", c.Faults.String()),
		slog.Any("script", c.Script),
		slog.Bool("disabled", c.Disabled),
	}
}
