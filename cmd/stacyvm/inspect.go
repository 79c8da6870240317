package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) newInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID",
		Short: "Print a sandbox as JSON",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			sb, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(a.stdout, sb)
		},
	}
}

func (a *app) newLogsCommand() *cobra.Command {
	var tail int
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a sandbox's console log",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return usageError(fmt.Errorf("invalid --tail %d: use 0 for the whole log or a positive line count", tail))
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			lines, err := c.Logs(cmd.Context(), args[0], tail)
			if err != nil {
				return err
			}
			for _, line := range lines {
				fmt.Fprintln(a.stdout, line)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&tail, "tail", "n", 0, "print only the last N lines (default: the whole log)")
	return cmd
}

func (a *app) newExtendCommand() *cobra.Command {
	var (
		ttl    time.Duration
		output string
	)
	cmd := &cobra.Command{
		Use:   "extend ID --ttl DURATION",
		Short: "Move a sandbox's expiry to now plus a duration",
		Long: "Move a sandbox's expiry to now plus --ttl, bounded by the server's\n" +
			"maximum TTL, and print the new expiry.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON); err != nil {
				return err
			}
			if ttl <= 0 {
				return usageError(fmt.Errorf("--ttl is required: give a positive duration such as 30m"))
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			sb, err := c.Extend(cmd.Context(), args[0], ttl)
			if err != nil {
				return err
			}

			if output == outputJSON {
				return printJSON(a.stdout, sb)
			}
			_, err = fmt.Fprintf(a.stdout, "%s expires at %s (in %s)\n",
				sb.ID, sb.ExpiresAt.Local().Format(time.RFC3339), humanDuration(time.Until(sb.ExpiresAt)))
			return err
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "new lifetime counted from now, such as 30m or 2h")
	addOutputFlag(cmd, &output, outputJSON)
	return cmd
}
