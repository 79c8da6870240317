package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/pkg/client"
)

// location is one side of a copy: a sandbox path, a local path, or the
// process's standard input or output.
type location struct {
	id    string // sandbox ID; empty for a local location
	path  string // sandbox or local path
	stdio bool   // "-": standard input or output
}

func (l location) remote() bool { return l.id != "" }

// parseLocation parses "-", "ID:PATH" or a local path. An argument is
// local when it starts with "/" or ".", or when no ":" comes before its
// first "/", so local paths that contain ":" can be written as ./a:b.
func parseLocation(arg string) location {
	if arg == "-" {
		return location{stdio: true}
	}
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return location{path: arg}
	}
	id, p, ok := strings.Cut(arg, ":")
	if !ok || id == "" || strings.Contains(id, "/") {
		return location{path: arg}
	}
	if p == "" {
		p = "/workspace"
	}
	return location{id: id, path: p}
}

func (a *app) newCopyCommand() *cobra.Command {
	var modeFlag string
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directories between this host and a sandbox",
		Long: "Copy a file or directory between this host and a sandbox. One side is\n" +
			"ID:PATH in the sandbox, the other a local path, or - for standard input\n" +
			"or output.\n\n" +
			"When DST is an existing directory, or ends with /, SRC is copied into\n" +
			"it under its own name. Files are streamed without being held in\n" +
			"memory; directories travel as tar archives. From -, the input becomes\n" +
			"the content of one file. To -, a file is written as it is and a\n" +
			"directory as a tar archive.",
		Example: "  stacyvm files cp ./data.bin sb-abc:/workspace/data.bin\n" +
			"  stacyvm files cp ./src sb-abc:/workspace/\n" +
			"  stacyvm files cp sb-abc:/workspace/out ./out\n" +
			"  echo hello | stacyvm files cp - sb-abc:/workspace/hello.txt",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := parseLocation(args[0]), parseLocation(args[1])
			if src.remote() == dst.remote() {
				return usageError(errors.New("exactly one of SRC and DST must be a sandbox path written as ID:PATH"))
			}
			mode, err := parseMode(modeFlag)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}

			if dst.remote() {
				return a.copyIn(cmd.Context(), c, src, dst, mode)
			}
			return a.copyOut(cmd.Context(), c, src, dst)
		},
	}
	cmd.Flags().StringVar(&modeFlag, "mode", "", "permission bits of an uploaded file in octal, such as 0755 (default: the local file's, or 0644 from -)")
	return cmd
}

// parseMode parses an octal permission string; "" gives 0, which means the
// default.
func parseMode(s string) (fs.FileMode, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || n > 0o777 {
		return 0, usageError(fmt.Errorf("invalid --mode %q: use octal permission bits such as 0644", s))
	}
	return fs.FileMode(n), nil
}

// copyIn copies a local file, a local directory or standard input into a
// sandbox.
func (a *app) copyIn(ctx context.Context, c *client.Client, src, dst location, mode fs.FileMode) error {
	if src.stdio {
		return c.Upload(ctx, dst.id, dst.path, a.stdin, mode)
	}

	info, err := os.Stat(src.path)
	if err != nil {
		return err
	}
	target, err := remoteTarget(ctx, c, dst, filepath.Base(src.path))
	if err != nil {
		return err
	}

	if info.IsDir() {
		return uploadDir(ctx, c, dst.id, target, src.path)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file or directory", src.path)
	}
	if mode == 0 {
		mode = info.Mode().Perm()
	}
	f, err := os.Open(src.path)
	if err != nil {
		return err
	}
	defer f.Close()
	return c.Upload(ctx, dst.id, target, f, mode)
}

// remoteTarget returns the sandbox path to copy an entry named base to:
// inside dst when dst is an existing directory or ends with "/", else dst.
func remoteTarget(ctx context.Context, c *client.Client, dst location, base string) (string, error) {
	if strings.HasSuffix(dst.path, "/") {
		return path.Join(dst.path, base), nil
	}
	info, err := c.Stat(ctx, dst.id, dst.path)
	switch {
	case errors.Is(err, client.ErrNotFound):
		return dst.path, nil
	case err != nil:
		return "", err
	case info.IsDir:
		return path.Join(dst.path, base), nil
	}
	return dst.path, nil
}

// copyOut copies a sandbox file or directory to a local path or standard
// output.
func (a *app) copyOut(ctx context.Context, c *client.Client, src, dst location) error {
	info, err := c.Stat(ctx, src.id, src.path)
	if err != nil {
		return err
	}

	if dst.stdio {
		var body io.ReadCloser
		if info.IsDir {
			body, err = c.DownloadArchive(ctx, src.id, src.path)
		} else {
			body, err = c.Download(ctx, src.id, src.path)
		}
		if err != nil {
			return err
		}
		defer body.Close()
		_, err = io.Copy(a.stdout, body)
		return err
	}

	target := dst.path
	if local, err := os.Stat(dst.path); err == nil && local.IsDir() {
		target = filepath.Join(dst.path, path.Base(info.Path))
	} else if strings.HasSuffix(dst.path, string(filepath.Separator)) {
		target = filepath.Join(dst.path, path.Base(info.Path))
	}

	if info.IsDir {
		return downloadDir(ctx, c, src.id, src.path, target)
	}
	return downloadFile(ctx, c, src.id, src.path, target, info.Mode.Perm())
}

// downloadFile streams a sandbox file into a local file with mode perm,
// creating the parent directories.
func downloadFile(ctx context.Context, c *client.Client, id, remotePath, target string, perm fs.FileMode) (err error) {
	body, err := c.Download(ctx, id, remotePath)
	if err != nil {
		return err
	}
	defer body.Close()

	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()

	if _, err := io.Copy(f, body); err != nil {
		return fmt.Errorf("download %s: %w", remotePath, err)
	}
	return f.Chmod(perm)
}
