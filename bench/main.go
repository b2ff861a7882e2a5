// Command bench measures enrollq against the stand-in API and prints one
// table per kind of scenario, then the targets of ../shared/DESIGN.md with
// PASS or FAIL beside each.
//
//	go run ./bench                                  # every scenario, about 8 minutes
//	go run ./bench --scenarios limit40-3w,enqueue1m  # a few
//
// It builds cmd/sandbox, cmd/worker and cmd/enqueue once into a temporary
// directory and runs them as separate processes, as an operator would: a
// sandbox per scenario on a free loopback port, N workers, and the
// producer. It talks to Redis at --redis-url and empties that database
// (FLUSHDB) between scenarios, so give it a database of its own.
//
// The hidden subcommands "noop-worker" and "sdk-worker" are the raw asynq
// servers that the overhead scenario compares the worker with: one whose
// handler does nothing, one whose handler makes the SDK call and stores
// nothing.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == noopCommand:
		err = runNoopWorker(ctx, os.Args[2:], os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == sdkCommand:
		err = runSDKWorker(ctx, os.Args[2:], os.Stderr)
	default:
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()

	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, errTargetsMissed):
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run parses the flags, runs the chosen scenarios one after another and
// prints the tables. Progress goes to stderr, tables to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}

	b, err := newBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer b.close()

	rep, err := b.runAll(ctx)
	rep.print(stdout, cfg)
	if err != nil {
		return err
	}
	if !rep.allPassed() {
		return errTargetsMissed
	}
	return nil
}

// errTargetsMissed makes the exit code 3 when everything ran but some
// target was missed, so that a script can tell it from a broken run.
var errTargetsMissed = errors.New("some targets were missed (see FAIL above)")
