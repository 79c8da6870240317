// Command stacyvm is the StacyVM server and its command-line client. One
// binary runs the server (stacyvm serve) and talks to it (stacyvm spawn,
// ls, exec, files, kill and the rest).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The first SIGINT or SIGTERM cancels ctx: client commands stop their
	// request and serve shuts down gracefully. Restoring the default
	// handling then lets a second signal end the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()

	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
