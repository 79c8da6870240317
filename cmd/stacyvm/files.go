package main

import (
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func (a *app) newFilesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files",
		Short: "Copy, list and change files in a sandbox",
		Long: "Copy, list and change files in a sandbox. Relative sandbox paths are\n" +
			"resolved against /workspace.",
		Args: unknownSubcommand,
		RunE: showHelp,
	}
	cmd.AddCommand(
		a.newCopyCommand(),
		a.newCatCommand(),
		a.newFilesListCommand(),
		a.newFilesRemoveCommand(),
		a.newMkdirCommand(),
	)
	return cmd
}

func (a *app) newCatCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cat ID PATH",
		Short: "Print a file from a sandbox",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			body, err := c.Download(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			defer body.Close()
			if _, err := io.Copy(a.stdout, body); err != nil {
				return fmt.Errorf("read %s: %w", args[1], err)
			}
			return nil
		},
	}
}

func (a *app) newFilesListCommand() *cobra.Command {
	var (
		long   bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "ls ID [PATH]",
		Short: "List a directory in a sandbox",
		Long:  "List a directory in a sandbox, /workspace by default. Directories end with /.",
		Args:  usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON); err != nil {
				return err
			}
			dir := "/workspace"
			if len(args) == 2 {
				dir = args[1]
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			entries, err := c.ListFiles(cmd.Context(), args[0], dir)
			if err != nil {
				return err
			}

			switch {
			case output == outputJSON:
				if entries == nil {
					entries = []client.FileInfo{}
				}
				return printJSON(a.stdout, entries)
			case long:
				return printFileTable(a.stdout, entries)
			}
			for _, e := range entries {
				fmt.Fprintln(a.stdout, displayName(e))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "print size, mode and modification time")
	addOutputFlag(cmd, &output, outputJSON)
	return cmd
}

// displayName returns the entry's name with "/" after directories and the
// target after symlinks.
func displayName(e client.FileInfo) string {
	switch {
	case e.IsDir:
		return e.Name + "/"
	case e.Type == client.TypeSymlink:
		return e.Name + " -> " + e.LinkTarget
	}
	return e.Name
}

func printFileTable(w io.Writer, entries []client.FileInfo) error {
	t := newTable(w)
	fmt.Fprintln(t, "NAME\tSIZE\tMODE\tMODIFIED")
	for _, e := range entries {
		modified := "-"
		if !e.ModTime.IsZero() {
			modified = e.ModTime.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(t, "%s\t%d\t%s\t%s\n", displayName(e), e.Size, fileMode(e), modified)
	}
	return t.Flush()
}

// fileMode returns the entry's mode in ls notation, such as drwxr-xr-x.
func fileMode(e client.FileInfo) string {
	mode := e.Mode.Perm()
	switch e.Type {
	case client.TypeDir:
		mode |= fs.ModeDir
	case client.TypeSymlink:
		mode |= fs.ModeSymlink
	case client.TypeOther:
		mode |= fs.ModeIrregular
	}
	return mode.String()
}

func (a *app) newFilesRemoveCommand() *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "rm ID PATH [PATH...]",
		Short: "Remove files or directories in a sandbox",
		Long: "Remove files, symlinks and empty directories in a sandbox; with -r also\n" +
			"directory trees.",
		Args: usageArgs(minArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			for _, path := range args[1:] {
				if err := c.Remove(cmd.Context(), args[0], path, recursive); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and their contents")
	return cmd
}

func (a *app) newMkdirCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "mkdir ID PATH [PATH...]",
		Short: "Create directories in a sandbox, with missing parents",
		Args:  usageArgs(minArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			for _, path := range args[1:] {
				if err := c.Mkdir(cmd.Context(), args[0], path); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
