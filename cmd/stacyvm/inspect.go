package main

import (
	"errors"
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
		Use:   "extend ID [DURATION]",
		Short: "Move a sandbox's expiry to now plus a duration",
		Long: "Move a sandbox's expiry to now plus DURATION (or --ttl), bounded by the\n" +
			"server's maximum TTL, and print the new expiry.",
		Example: "  stacyvm extend sb-abc 1h\n  stacyvm extend sb-abc --ttl 30m",
		Args:    usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON); err != nil {
				return err
			}
			duration, err := extendDuration(cmd, args, ttl)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			sb, err := c.Extend(cmd.Context(), args[0], duration)
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

// extendDuration returns the duration of extend, given either as the
// argument after the ID or with --ttl (flagTTL), and rejects giving both or
// neither.
func extendDuration(cmd *cobra.Command, args []string, flagTTL time.Duration) (time.Duration, error) {
	flagSet := cmd.Flags().Changed("ttl")
	switch {
	case len(args) == 2 && flagSet:
		return 0, usageError(errors.New("duration given twice: pass it as the argument after the ID or with --ttl, not both"))
	case len(args) == 2:
		ttl, err := time.ParseDuration(args[1])
		if err != nil || ttl <= 0 {
			return 0, usageError(fmt.Errorf("invalid duration %q: use a positive duration with a unit, such as 30m or 2h", args[1]))
		}
		return ttl, nil
	case flagSet:
		if flagTTL <= 0 {
			return 0, usageError(fmt.Errorf("invalid --ttl %s: use a positive duration such as 30m", flagTTL))
		}
		return flagTTL, nil
	}
	return 0, usageError(fmt.Errorf("missing duration: give it after the ID or with --ttl, as in 'stacyvm extend %s 30m'", args[0]))
}
