// Command sandbox serves the stand-in for the Anthropic user-profile URL
// endpoints (see internal/sandbox) on a loopback address, for the local
// demo, tests and benchmarks.
//
//	sandbox --addr 127.0.0.1:0 --keys sk-test --rate 5 --burst 10 --fail 500=0.05,reset=0.01
//
// It prints "listening on http://ADDR" on stdout once it accepts requests,
// logs to stderr (JSON unless stderr is a terminal) and shuts down
// gracefully on SIGINT or SIGTERM. Counters are at GET /_sandbox/stats;
// POST /_sandbox/reset zeroes them. Run it with -h for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/enrollq/enrollq/internal/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for a mistake in the command line, 1 for anything else.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run serves until ctx is done. Flags come from args; stdout gets the
// listening line only, stderr the log.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, opts.logLevel)
	opts.config.Logger = logger

	srv, err := sandbox.New(opts.config)
	if err != nil {
		return usageError{err} // the config is the flags'
	}
	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}

	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	logger.Info("sandbox listening", append(opts.logAttrs(), "addr", ln.Addr().String())...)
	return serve(ctx, ln, srv, logger)
}
