package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) newKillCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "kill ID [ID...]",
		Aliases: []string{"rm", "destroy"},
		Short:   "Destroy sandboxes",
		Long: "Destroy each sandbox and print its ID. Destroying a sandbox that is\n" +
			"already destroyed succeeds. The command goes on after a failure and\n" +
			"exits non-zero when any sandbox could not be destroyed.",
		Args: usageArgs(minArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}

			failed := 0
			for _, id := range args {
				if err := c.Destroy(cmd.Context(), id); err != nil {
					fmt.Fprintf(a.stderr, "Error: %s: %s\n", id, describe(err))
					failed++
					continue
				}
				fmt.Fprintln(a.stdout, id)
			}
			if failed > 0 {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
}

// minArgs is cobra.MinimumNArgs with a message that shows the command's
// usage line.
func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return errors.New("missing arguments: usage is " + cmd.UseLine())
		}
		return nil
	}
}
