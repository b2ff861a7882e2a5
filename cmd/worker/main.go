// Command worker drains enrollq's queue: it mints an enrollment URL for
// each task through the Anthropic API, within the fleet's shared rate
// limit, and stores each result in Redis. Run any number of them against
// one Redis.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// workerGCPercent is the worker's GOGC. Its live heap is a few MiB and
// every task allocates afresh (most of it in the SDK's request), so the
// default of 100 collects several times a second for little garbage; 200
// spends half the collector's CPU for ~10 MiB more heap.
const workerGCPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(workerGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
