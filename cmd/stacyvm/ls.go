package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func (a *app) newListCommand() *cobra.Command {
	var (
		opts   client.ListOptions
		all    bool
		quiet  bool
		output string
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"ps", "list"},
		Short:   "List sandboxes",
		Long: "List sandboxes, newest first. Destroyed sandboxes are hidden unless\n" +
			"--all is set or --state selects them.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON, outputWide); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.List(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if !all && opts.State == "" {
				list = liveOnly(list)
			}

			switch {
			case quiet:
				for _, sb := range list {
					fmt.Fprintln(a.stdout, sb.ID)
				}
				return nil
			case output == outputJSON:
				if list == nil {
					list = []client.Sandbox{}
				}
				return printJSON(a.stdout, list)
			}
			return printSandboxTable(a.stdout, list, output == outputWide, time.Now())
		},
	}

	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "include destroyed sandboxes")
	f.StringVar(&opts.State, "state", "", "only sandboxes in this state: creating, running, error, destroying or destroyed")
	f.StringVar(&opts.OwnerID, "owner", "", "only sandboxes of this owner ID")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only sandbox IDs")
	addOutputFlag(cmd, &output, outputJSON, outputWide)
	return cmd
}

func liveOnly(list []client.Sandbox) []client.Sandbox {
	live := list[:0]
	for _, sb := range list {
		if sb.State != client.StateDestroyed {
			live = append(live, sb)
		}
	}
	return live
}

// printSandboxTable prints one row per sandbox. The wide form adds the
// resources, runtime and error columns.
func printSandboxTable(w io.Writer, list []client.Sandbox, wide bool, now time.Time) error {
	t := newTable(w)
	header := "ID\tSTATE\tPROVIDER\tIMAGE\tAGE\tEXPIRES IN\tOWNER"
	if wide {
		header += "\tMEMORY\tCPUS\tRUNTIME\tERROR"
	}
	fmt.Fprintln(t, header)

	for _, sb := range list {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s",
			sb.ID, sb.State, sb.Provider, orDash(sb.Image),
			humanDuration(now.Sub(sb.CreatedAt)), expiresIn(sb, now), orDash(sb.OwnerID))
		if wide {
			fmt.Fprintf(t, "\t%dMiB\t%d\t%s\t%s", sb.MemoryMB, sb.VCPUs, orDash(sb.Runtime), orDash(sb.Error))
		}
		fmt.Fprintln(t)
	}
	return t.Flush()
}

// expiresIn returns the time left before the sandbox expires, "expired" when
// the reaper has yet to destroy it, and "-" when it is gone or has no
// expiry.
func expiresIn(sb client.Sandbox, now time.Time) string {
	switch {
	case sb.State == client.StateDestroyed || sb.ExpiresAt.IsZero():
		return "-"
	case !sb.ExpiresAt.After(now):
		return "expired"
	}
	return humanDuration(sb.ExpiresAt.Sub(now))
}
