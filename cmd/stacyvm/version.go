package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/internal/version"
)

// versionTimeout bounds the server query of the version command, so that
// an unreachable server delays it only briefly.
const versionTimeout = 3 * time.Second

func (a *app) newVersionCommand() *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client and server versions",
		Long: "Print the version of this binary and, when the server at --server\n" +
			"responds, the server's version. An unreachable server is reported on\n" +
			"stderr and does not make the command fail.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(a.stdout, "Client: %s\n", version.String())
			if clientOnly {
				return nil
			}

			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), versionTimeout)
			defer cancel()
			health, err := c.Health(ctx)
			if err != nil {
				fmt.Fprintf(a.stderr, "Server: not available at %s: %s\n", c.BaseURL(), describe(err))
				return nil
			}
			fmt.Fprintf(a.stdout, "Server: %s\n", health.Version)
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print only the client version")
	return cmd
}
