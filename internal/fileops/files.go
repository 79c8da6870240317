package fileops

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"syscall"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Default modes for a mode argument of 0.
const (
	defaultFileMode fs.FileMode = 0o644
	defaultDirMode  fs.FileMode = 0o755
)

// openNonBlock is added when opening a file to read, so that opening a FIFO
// returns at once instead of waiting for a writer. The file type is checked
// after the open. Reads of regular files ignore O_NONBLOCK.
const openNonBlock = syscall.O_NONBLOCK

// ReadFile opens the regular file at p for streaming. The caller closes it.
// A final symlink is followed. A directory gives ErrIsDirectory, and other
// non-regular files (devices, FIFOs, sockets) give ErrInvalidArgument.
func (f *FS) ReadFile(ctx context.Context, p string) (io.ReadCloser, error) {
	const op = "read"
	if err := checkPath(op, p); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &provider.PathError{Op: op, Path: p, Err: err}
	}
	rel, err := f.resolve(p, true)
	if err != nil {
		return nil, f.pathError(op, p, err)
	}

	file, err := f.root.OpenFile(rel, os.O_RDONLY|openNonBlock, 0)
	if err != nil {
		return nil, f.pathError(op, p, err)
	}
	info, err := file.Stat()
	if err == nil {
		err = checkRegular(op, p, info)
	}
	if err != nil {
		file.Close()
		return nil, f.pathError(op, p, err)
	}
	return file, nil
}

// checkRegular returns nil for a regular file, ErrIsDirectory for a
// directory and ErrInvalidArgument for anything else.
func checkRegular(op, p string, info fs.FileInfo) error {
	switch {
	case info.Mode().IsRegular():
		return nil
	case info.IsDir():
		return &provider.PathError{Op: op, Path: p, Err: provider.ErrIsDirectory}
	default:
		return invalid(op, p, "not a regular file")
	}
}

// WriteFile streams r into p, creating missing parent directories with mode
// 0755, and atomically replaces any existing file: readers see the old
// content or the new, never a mix. A final symlink is followed, so writing
// to a link replaces its target. The new file gets exactly the permission
// bits of mode (0644 when mode is 0), whatever the umask. A directory at p
// gives ErrIsDirectory. When ctx ends or r fails, p is left as it was.
func (f *FS) WriteFile(ctx context.Context, p string, r io.Reader, mode fs.FileMode) error {
	const op = "write"
	if err := checkPath(op, p); err != nil {
		return err
	}
	if mode == 0 {
		mode = defaultFileMode
	}
	rel, err := f.resolve(p, true)
	if err != nil {
		return f.pathError(op, p, err)
	}
	if rel == "." {
		return &provider.PathError{Op: op, Path: p, Err: provider.ErrIsDirectory}
	}

	if err := f.root.MkdirAll(path.Dir(rel), defaultDirMode); err != nil {
		return f.pathError(op, p, err)
	}
	if info, err := f.root.Lstat(rel); err == nil && info.IsDir() {
		return &provider.PathError{Op: op, Path: p, Err: provider.ErrIsDirectory}
	}
	if err := writeAtomic(ctx, f.root, rel, r, permBits(mode)); err != nil {
		return f.pathError(op, p, err)
	}
	return nil
}

// writeAtomic streams r into a new temporary file in the directory of rel,
// sets its mode to perm and renames it over rel. On failure it removes the
// temporary file and leaves rel untouched.
func writeAtomic(ctx context.Context, root *os.Root, rel string, r io.Reader, perm fs.FileMode) (err error) {
	tmpRel := path.Join(path.Dir(rel), ".stacyvm-"+rand.Text()+".tmp")
	tmp, err := root.OpenFile(tmpRel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			root.Remove(tmpRel)
		}
	}()

	if _, err := io.Copy(tmp, contextReader{ctx: ctx, r: r}); err != nil {
		return err
	}

	// The mode is set after writing because a write by an unprivileged
	// process clears the setuid and setgid bits. Chmod on the open file is
	// not subject to the umask.
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return root.Rename(tmpRel, rel)
}

// contextReader fails reads once ctx is done, so that a long copy stops
// between chunks.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Stat describes p without following a final symlink. Stat of "/" describes
// the root directory.
func (f *FS) Stat(ctx context.Context, p string) (provider.FileInfo, error) {
	const op = "stat"
	if err := checkPath(op, p); err != nil {
		return provider.FileInfo{}, err
	}
	rel, err := f.resolve(p, false)
	if err != nil {
		return provider.FileInfo{}, f.pathError(op, p, err)
	}
	info, err := describe(f.root, rel, p)
	if err != nil {
		return provider.FileInfo{}, f.pathError(op, p, err)
	}
	return info, nil
}

// describe returns the FileInfo of the entry rel of root, which has the
// sandbox path p. It does not follow a final symlink.
func describe(root *os.Root, rel, p string) (provider.FileInfo, error) {
	info, err := root.Lstat(rel)
	if err != nil {
		return provider.FileInfo{}, err
	}
	target := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		if target, err = root.Readlink(rel); err != nil {
			return provider.FileInfo{}, err
		}
	}
	return fileInfo(p, info, target), nil
}

func fileInfo(p string, info fs.FileInfo, linkTarget string) provider.FileInfo {
	return provider.FileInfo{
		Name:       path.Base(p),
		Path:       p,
		Size:       info.Size(),
		Mode:       info.Mode(),
		Type:       fileType(info.Mode()),
		ModTime:    info.ModTime(),
		LinkTarget: linkTarget,
	}
}

func fileType(mode fs.FileMode) provider.FileType {
	switch {
	case mode.IsRegular():
		return provider.TypeFile
	case mode.IsDir():
		return provider.TypeDir
	case mode&fs.ModeSymlink != 0:
		return provider.TypeSymlink
	default:
		return provider.TypeOther
	}
}

// ListDir lists the directory at p sorted by name, following a final
// symlink. Each entry is described as by Stat, with the path p joined with
// its name. A non-directory gives ErrNotDirectory.
func (f *FS) ListDir(ctx context.Context, p string) ([]provider.FileInfo, error) {
	const op = "list"
	if err := checkPath(op, p); err != nil {
		return nil, err
	}
	rel, err := f.resolve(p, true)
	if err != nil {
		return nil, f.pathError(op, p, err)
	}
	dir, err := f.openDir(rel)
	if err != nil {
		return nil, f.pathError(op, p, err)
	}
	defer dir.Close()

	names, err := readNames(dir, ".")
	if err != nil {
		return nil, f.pathError(op, p, err)
	}
	entries := make([]provider.FileInfo, 0, len(names))
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, &provider.PathError{Op: op, Path: p, Err: err}
		}
		entry, err := describe(dir, name, path.Join(p, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the directory was read
		}
		if err != nil {
			return nil, f.pathError(op, p, err)
		}
		entries = append(entries, entry)
	}
	return entries, nil
}

// openDir opens the directory rel as a root of its own, so that its entries
// are reached by name without walking the path again. A non-directory gives
// ENOTDIR.
func (f *FS) openDir(rel string) (*os.Root, error) {
	info, err := f.root.Lstat(rel)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, errNotDir
	}
	return f.root.OpenRoot(rel)
}

// readNames returns the sorted names in the directory rel of root.
func readNames(root *os.Root, rel string) ([]string, error) {
	dir, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// Mkdir creates the directory p and its missing parents, following a final
// symlink. Parents get mode 0755 and p gets exactly the permission bits of
// mode (0755 when mode is 0). An existing directory is left as it is. An
// existing non-directory at p gives ErrPathExists, and one in the middle of
// the path gives ErrNotDirectory.
func (f *FS) Mkdir(ctx context.Context, p string, mode fs.FileMode) error {
	const op = "mkdir"
	if err := checkPath(op, p); err != nil {
		return err
	}
	if mode == 0 {
		mode = defaultDirMode
	}
	rel, err := f.resolve(p, true)
	if err != nil {
		return f.pathError(op, p, err)
	}

	created, err := f.mkdir(rel, permBits(mode))
	if err != nil {
		return f.pathError(op, p, err)
	}
	if created {
		if err := f.root.Chmod(rel, permBits(mode)); err != nil {
			return f.pathError(op, p, err)
		}
	}
	return nil
}

// mkdir creates rel and its parents and reports whether rel was created.
func (f *FS) mkdir(rel string, perm fs.FileMode) (bool, error) {
	info, err := f.root.Lstat(rel)
	switch {
	case err == nil && info.IsDir():
		return false, nil
	case err == nil:
		return false, syscall.EEXIST
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}

	if err := f.root.MkdirAll(path.Dir(rel), defaultDirMode); err != nil {
		return false, err
	}
	err = f.root.Mkdir(rel, perm&fs.ModePerm)
	if errors.Is(err, fs.ErrExist) {
		// Created by someone else in the meantime: fine if it is a directory.
		if info, statErr := f.root.Lstat(rel); statErr == nil && info.IsDir() {
			return false, nil
		}
	}
	return err == nil, err
}

// Remove deletes the file, symlink or empty directory at p. A final symlink
// is removed, never followed. With recursive set it deletes a directory
// tree. A non-empty directory without recursive gives ErrDirectoryNotEmpty,
// a missing path gives ErrPathNotFound in both modes, and "/" gives
// ErrInvalidArgument.
func (f *FS) Remove(ctx context.Context, p string, recursive bool) error {
	const op = "remove"
	if err := checkPath(op, p); err != nil {
		return err
	}
	if p == "/" {
		return invalid(op, p, "cannot remove the sandbox root")
	}
	rel, err := f.resolve(p, false)
	if err != nil {
		return f.pathError(op, p, err)
	}
	if _, err := f.root.Lstat(rel); err != nil {
		return f.pathError(op, p, err)
	}

	if recursive {
		err = f.root.RemoveAll(rel)
	} else {
		err = f.root.Remove(rel)
	}
	if err != nil {
		return f.pathError(op, p, err)
	}
	return nil
}

// Move renames oldPath to newPath, creating newPath's missing parents with
// mode 0755 and replacing an existing file or symlink at newPath. Neither
// path's final symlink is followed. An existing directory at newPath, even
// an empty one, gives ErrPathExists, as os.Rename does. A missing oldPath
// gives ErrPathNotFound. Giving "/" as either path, or moving a directory
// into itself, gives ErrInvalidArgument.
func (f *FS) Move(ctx context.Context, oldPath, newPath string) error {
	const op = "move"
	if err := checkPath(op, oldPath); err != nil {
		return err
	}
	if err := checkPath(op, newPath); err != nil {
		return err
	}
	if oldPath == "/" || newPath == "/" {
		return invalid(op, oldPath, "cannot move the sandbox root or replace it")
	}

	oldRel, err := f.resolve(oldPath, false)
	if err != nil {
		return f.pathError(op, oldPath, err)
	}
	if _, err := f.root.Lstat(oldRel); err != nil {
		return f.pathError(op, oldPath, err)
	}
	newRel, err := f.resolve(newPath, false)
	if err != nil {
		return f.pathError(op, newPath, err)
	}
	if err := f.root.MkdirAll(path.Dir(newRel), defaultDirMode); err != nil {
		return f.pathError(op, newPath, err)
	}

	if err := f.root.Rename(oldRel, newRel); err != nil {
		return f.pathError(op, oldPath, err)
	}
	return nil
}

// Chmod sets the permission, setuid, setgid and sticky bits of p, following
// a final symlink. See permBits for how mode is read.
func (f *FS) Chmod(ctx context.Context, p string, mode fs.FileMode) error {
	const op = "chmod"
	if err := checkPath(op, p); err != nil {
		return err
	}
	rel, err := f.resolve(p, true)
	if err != nil {
		return f.pathError(op, p, err)
	}
	if err := f.root.Chmod(rel, permBits(mode)); err != nil {
		return f.pathError(op, p, err)
	}
	return nil
}

// permBits returns the permission, setuid, setgid and sticky bits of mode.
// The special bits are accepted both as fs.FileMode flags and at their Unix
// octal positions (04000, 02000, 01000), which fs.FileMode leaves unused,
// because callers often build mode from an octal string such as "4755".
func permBits(mode fs.FileMode) fs.FileMode {
	bits := mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if mode&0o4000 != 0 {
		bits |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		bits |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		bits |= fs.ModeSticky
	}
	return bits
}
