// Command export writes a campaign's consolidated results from the Redis
// result store, at any time: while workers still run, after a refresh, or
// just before a mailing. URLs that expire within --min-validity are left
// out (their rows say why), failures can go to a file of their own, and a
// stated send time gets a warning for every URL that will not live that
// long.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "export:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
