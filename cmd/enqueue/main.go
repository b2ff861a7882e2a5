// Command enqueue reads user profile ids from a CSV file and enqueues one
// task per profile. Without a Redis URL it runs the whole campaign itself
// (embedded Redis, in-process workers) and writes the results; with one it
// enqueues for a fleet of workers and, with --wait, follows the campaign to
// its end.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once, without --out
	}()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		os.Exit(exitCode(err))
	}
}
