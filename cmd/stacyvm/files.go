package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func (a *app) newFilesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files",
		Short: "Copy, list and change files in a sandbox",
		Long: "Copy, list and change files in a sandbox. Relative sandbox paths are\n" +
			"resolved against /workspace. cat, ls, rm and mkdir take a sandbox path\n" +
			"either as ID PATH or, like cp, as ID:PATH.",
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
		Use:     "cat ID PATH",
		Short:   "Print a file from a sandbox",
		Example: "  stacyvm files cat sb-abc /workspace/out.txt\n  stacyvm files cat sb-abc:/workspace/out.txt",
		Args:    usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := parseSandboxPaths(cmd, args)
			if err != nil {
				return err
			}
			if len(targets) != 1 {
				return usageError(errors.New("too many arguments: files cat prints one file, given as ID PATH or ID:PATH"))
			}
			file := targets[0]

			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			body, err := c.Download(cmd.Context(), file.id, file.path)
			if err != nil {
				return err
			}
			defer body.Close()
			if _, err := io.Copy(a.stdout, body); err != nil {
				return fmt.Errorf("read %s: %w", file.path, err)
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
		Long: "List a directory in a sandbox, /workspace by default. Directories end with /.\n" +
			"The directory can also be given as ID:PATH, and ID: alone lists /workspace.",
		Example: "  stacyvm files ls sb-abc /workspace/src\n  stacyvm files ls -l sb-abc:/workspace/src",
		Args:    usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON); err != nil {
				return err
			}
			id, dir, err := parseListArgs(args)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			entries, err := c.ListFiles(cmd.Context(), id, dir)
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
			"directory trees. Paths can also be given as ID:PATH [ID:PATH...].",
		Example: "  stacyvm files rm sb-abc /workspace/a.txt /workspace/b.txt\n  stacyvm files rm -r sb-abc:/workspace/build",
		Args:    usageArgs(minArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := parseSandboxPaths(cmd, args)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			for _, target := range targets {
				if err := c.Remove(cmd.Context(), target.id, target.path, recursive); err != nil {
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
		Use:     "mkdir ID PATH [PATH...]",
		Short:   "Create directories in a sandbox, with missing parents",
		Long:    "Create directories in a sandbox, with missing parents. Paths can also be\ngiven as ID:PATH [ID:PATH...].",
		Example: "  stacyvm files mkdir sb-abc /workspace/a /workspace/b\n  stacyvm files mkdir sb-abc:/workspace/a/b/c",
		Args:    usageArgs(minArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := parseSandboxPaths(cmd, args)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			for _, target := range targets {
				if err := c.Mkdir(cmd.Context(), target.id, target.path); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// sandboxPath is a path in one sandbox, named by a files subcommand.
type sandboxPath struct {
	id   string
	path string
}

// cutSandboxPath splits an ID:PATH argument by the rules of parseLocation.
// The path is empty for "ID:". ok is false when arg is not in ID:PATH form,
// such as a bare sandbox ID.
func cutSandboxPath(arg string) (id, path string, ok bool) {
	loc := parseLocation(arg)
	if !loc.remote() {
		return "", "", false
	}
	return loc.id, strings.TrimPrefix(arg, loc.id+":"), true
}

// parseSandboxPaths parses the arguments of files cat, rm and mkdir, which
// are either ID PATH [PATH...] or ID:PATH [ID:PATH...]. In the first form
// the paths are taken as written, even when they contain ":".
func parseSandboxPaths(cmd *cobra.Command, args []string) ([]sandboxPath, error) {
	if _, _, ok := cutSandboxPath(args[0]); !ok {
		if len(args) < 2 {
			return nil, usageError(fmt.Errorf("missing PATH after sandbox ID %q: usage is %s, or write ID:PATH", args[0], cmd.UseLine()))
		}
		targets := make([]sandboxPath, 0, len(args)-1)
		for _, p := range args[1:] {
			targets = append(targets, sandboxPath{id: args[0], path: p})
		}
		return targets, nil
	}

	targets := make([]sandboxPath, 0, len(args))
	for _, arg := range args {
		id, p, ok := cutSandboxPath(arg)
		if !ok {
			return nil, usageError(fmt.Errorf("invalid argument %q: once the first argument is ID:PATH, write every path as ID:PATH", arg))
		}
		if p == "" {
			return nil, usageError(fmt.Errorf("missing path in %q: write ID:PATH, such as %s/workspace/file.txt", arg, arg))
		}
		targets = append(targets, sandboxPath{id: id, path: p})
	}
	return targets, nil
}

// parseListArgs returns the sandbox ID and directory of files ls, given as
// ID [PATH] or ID:[PATH]. The directory defaults to /workspace.
func parseListArgs(args []string) (id, dir string, err error) {
	id, dir, ok := cutSandboxPath(args[0])
	if !ok {
		id, dir = args[0], ""
		if len(args) == 2 {
			dir = args[1]
		}
	} else if len(args) == 2 {
		return "", "", usageError(fmt.Errorf("too many arguments: give the directory once, as %s or as ID PATH", args[0]))
	}
	if dir == "" {
		dir = "/workspace"
	}
	return id, dir, nil
}
