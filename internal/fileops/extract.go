package fileops

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// WriteArchive extracts the tar stream r into the directory at p, creating
// it and its missing parents with mode 0755 and following a final symlink.
// An existing non-directory at p gives ErrNotDirectory.
//
// Entry names are cleaned after a leading "/" or "./" is removed, so
// "/abs/x" lands at p/abs/x. An entry whose name or hard link target still
// leads outside p, such as "../x", is rejected with ErrPathEscapes.
// Entries are created inside an os.Root opened at p, which follows a
// symlink extracted earlier only while it stays inside p: writing through a
// link to "..", or to any absolute target, fails with ErrPathEscapes.
//
// Regular files are streamed and replace existing files atomically.
// Directories, symlinks and hard links are created, replacing an existing
// non-directory. Modes are applied exactly, and so are the modification
// times of files and directories. Directory modes are applied last, so that
// a read-only directory can still be filled. Device nodes and FIFOs are
// skipped without an error, because creating a device node needs privileges
// that the sandbox must not lend and a FIFO blocks its readers. An entry
// for p itself is skipped too.
//
// Extraction stops at the first failing entry, and the entries before it
// stay in place.
func (f *FS) WriteArchive(ctx context.Context, p string, r io.Reader) error {
	const op = "extract"
	if err := checkPath(op, p); err != nil {
		return err
	}
	rel, err := f.resolve(p, true)
	if err != nil {
		return f.pathError(op, p, err)
	}
	if _, err := f.mkdir(rel, defaultDirMode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			err = errNotDir
		}
		return f.pathError(op, p, err)
	}
	dest, err := f.root.OpenRoot(rel)
	if err != nil {
		return f.pathError(op, p, err)
	}
	defer dest.Close()

	x := extractor{ctx: ctx, dest: dest}
	tr := tar.NewReader(contextReader{ctx: ctx, r: r})
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		// With GODEBUG tarinsecurepath=0, Next also returns ErrInsecurePath
		// for names such as "../x". entryPath checks every name instead.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return &provider.PathError{Op: op, Path: p, Err: readError(err)}
		}
		if err := x.extract(hdr, tr); err != nil {
			return &provider.PathError{Op: op, Path: p, Err: fmt.Errorf("entry %q: %w", hdr.Name, f.classify(err))}
		}
	}

	if err := x.finishDirs(); err != nil {
		return f.pathError(op, p, err)
	}
	return nil
}

// readError marks a malformed archive as an invalid argument.
func readError(err error) error {
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: malformed tar archive: %w", provider.ErrInvalidArgument, err)
	}
	return err
}

// extractor creates the entries of one archive in dest.
type extractor struct {
	ctx  context.Context
	dest *os.Root
	dirs []dirEntry // directories whose mode and time are set at the end
}

type dirEntry struct {
	name    string
	mode    fs.FileMode
	modTime time.Time
}

// extract creates the entry hdr, whose content tr streams.
func (x *extractor) extract(hdr *tar.Header, tr io.Reader) error {
	name, err := entryPath(hdr.Name)
	if err != nil || name == "." {
		return err
	}
	mode := permBits(hdr.FileInfo().Mode())

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.dest.MkdirAll(name, defaultDirMode); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirEntry{name: name, mode: mode, modTime: hdr.ModTime})
		return nil
	case tar.TypeReg, tar.TypeGNUSparse:
		if err := x.dest.MkdirAll(path.Dir(name), defaultDirMode); err != nil {
			return err
		}
		if err := writeAtomic(x.ctx, x.dest, name, tr, mode); err != nil {
			return err
		}
		return x.dest.Chtimes(name, time.Time{}, hdr.ModTime)
	case tar.TypeSymlink:
		if err := x.prepareLink(name); err != nil {
			return err
		}
		return x.dest.Symlink(hdr.Linkname, name)
	case tar.TypeLink:
		target, err := entryPath(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := x.prepareLink(name); err != nil {
			return err
		}
		return x.dest.Link(target, name)
	default:
		return nil // device nodes, FIFOs and unknown kinds are skipped
	}
}

// prepareLink creates the parents of name and removes a non-directory
// already there, so that a link can take its place.
func (x *extractor) prepareLink(name string) error {
	if err := x.dest.MkdirAll(path.Dir(name), defaultDirMode); err != nil {
		return err
	}
	info, err := x.dest.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case info.IsDir():
		return fs.ErrExist
	default:
		return x.dest.Remove(name)
	}
}

// finishDirs applies the modes and times of the directory entries once
// everything inside them exists. It goes in reverse archive order, so that a
// child, which follows its parent in an archive, is done before the
// parent's mode could make it unreachable.
func (x *extractor) finishDirs() error {
	for _, dir := range slices.Backward(x.dirs) {
		if err := x.dest.Chmod(dir.name, dir.mode); err != nil {
			return err
		}
		if err := x.dest.Chtimes(dir.name, time.Time{}, dir.modTime); err != nil {
			return err
		}
	}
	return nil
}

// entryPath turns a tar entry name into a clean path relative to the
// extraction directory, "." for the directory itself. Leading "/" and "./"
// are removed first. A name that still leads outside gives ErrPathEscapes.
func entryPath(name string) (string, error) {
	for {
		trimmed := strings.TrimPrefix(strings.TrimLeft(name, "/"), "./")
		if trimmed == name {
			break
		}
		name = trimmed
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", provider.ErrPathEscapes
	}
	return clean, nil
}
