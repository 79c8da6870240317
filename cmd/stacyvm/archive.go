package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/stacyvm/stacyvm/pkg/client"
)

// uploadDir streams the local directory dir into the sandbox directory
// target as a tar archive, written while it is sent.
func uploadDir(ctx context.Context, c *client.Client, id, target, dir string) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeTar(pw, dir)
		pw.CloseWithError(err)
		done <- err
	}()

	uploadErr := c.UploadArchive(ctx, id, target, pr)
	// Unblock the writer when the upload stopped reading early.
	pr.CloseWithError(errors.New("upload ended"))
	tarErr := <-done

	if uploadErr != nil {
		return uploadErr
	}
	if tarErr != nil {
		return fmt.Errorf("archive %s: %w", dir, tarErr)
	}
	return nil
}

// writeTar writes the tree under dir to w as a tar archive whose entry
// names are relative to dir. Directories, regular files and symlinks are
// included; other file types are skipped.
func writeTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		return addTarEntry(tw, p, filepath.ToSlash(rel), d)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func addTarEntry(tw *tar.Writer, p, name string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	} else if !info.Mode().IsRegular() && !info.IsDir() {
		return nil
	}

	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	if info.IsDir() {
		hdr.Name += "/"
	}
	// Local user and group names mean nothing inside the sandbox.
	hdr.Uname, hdr.Gname = "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}

	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// downloadDir streams the sandbox directory remotePath into the local
// directory target, creating it when missing.
func downloadDir(ctx context.Context, c *client.Client, id, remotePath, target string) error {
	body, err := c.DownloadArchive(ctx, id, remotePath)
	if err != nil {
		return err
	}
	defer body.Close()

	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	return extractTar(body, target)
}

// extractTar extracts the archive r into dir. Entries are opened through an
// os.Root, so neither a ".." name nor a symlink in the archive can place a
// file outside dir. Directory modes are applied last, so a read-only
// directory can still receive its files.
func extractTar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	type dirMode struct {
		name string
		hdr  *tar.Header
	}
	var dirs []dirMode

	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == "." {
			continue
		}

		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{name, hdr})
		case tar.TypeReg:
			if err := extractFile(root, name, hdr, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := extractSymlink(root, name, hdr.Linkname); err != nil {
				return err
			}
		}
		// Hard links, devices and FIFOs are not created on the local host.
	}

	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := root.Chmod(d.name, d.hdr.FileInfo().Mode().Perm()); err != nil {
			return err
		}
		_ = root.Chtimes(d.name, d.hdr.ModTime, d.hdr.ModTime)
	}
	return nil
}

func extractFile(root *os.Root, name string, hdr *tar.Header, r io.Reader) (err error) {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	perm := hdr.FileInfo().Mode().Perm()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			_ = root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		}
	}()

	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("extract %s: %w", name, err)
	}
	return f.Chmod(perm)
}

func extractSymlink(root *os.Root, name, target string) error {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return root.Symlink(target, name)
}
