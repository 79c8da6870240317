package proot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/stacyvm/stacyvm/internal/fileops"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// mounts are the sandbox directories that PRoot binds to per-sandbox host
// directories. Everything else comes from the image's shared tree and is
// read-only.
var mounts = []string{"/workspace", "/tmp", "/home"}

// maxSymlinks is the number of symlinks resolve follows in one path, the
// same limit as Linux path lookup.
const maxSymlinks = 40

// view is the file system a sandbox's commands see: the image's tree, with
// the directories of mounts replaced by the sandbox's own. It resolves
// every path the way PRoot does for a command, following symlinks across
// both trees, and then hands the symlink-free path to the fileops.FS of the
// tree that holds it. A link to "/" or to "/etc/passwd" therefore names the
// sandbox's root or the image's /etc/passwd, never the host's.
//
// Writes are allowed only below mounts. Files and directories that a write
// creates are given to the sandbox's user, so that its commands can change
// them.
type view struct {
	shared     *fileops.FS // the image's tree, never written
	sharedRoot *os.Root
	upper      *fileops.FS // the directory that holds workspace/, tmp/ and home/
	upperRoot  *os.Root

	owner *owner // nil when files keep the server's user

	// escapeErr is the error os.Root returns for a path that leaves the
	// root. A directory swapped for an absolute symlink between resolve
	// and its use gives it.
	escapeErr error
}

// openView opens the view over the image tree sharedDir and the directory
// upperDir, which contains one directory per mount.
func openView(sharedDir, upperDir string, o *owner) (v *view, err error) {
	v = &view{owner: o}
	defer func() {
		if err != nil {
			v.close()
		}
	}()
	if v.sharedRoot, err = os.OpenRoot(sharedDir); err != nil {
		return nil, err
	}
	if v.shared, err = fileops.Open(sharedDir); err != nil {
		return nil, err
	}
	if v.upperRoot, err = os.OpenRoot(upperDir); err != nil {
		return nil, err
	}
	if v.upper, err = fileops.Open(upperDir); err != nil {
		return nil, err
	}
	_, probe := v.upperRoot.Lstat("..")
	v.escapeErr = underlying(probe)
	return v, nil
}

func (v *view) close() {
	if v.shared != nil {
		_ = v.shared.Close()
	}
	if v.sharedRoot != nil {
		_ = v.sharedRoot.Close()
	}
	if v.upper != nil {
		_ = v.upper.Close()
	}
	if v.upperRoot != nil {
		_ = v.upperRoot.Close()
	}
}

// mountOf returns the mount that contains the clean absolute path p.
func mountOf(p string) (string, bool) {
	for _, m := range mounts {
		if p == m || strings.HasPrefix(p, m+"/") {
			return m, true
		}
	}
	return "", false
}

// writable reports whether the resolved path p lies below a mount.
func writable(p string) bool {
	_, ok := mountOf(p)
	return ok
}

// isMount reports whether p is one of the mount directories itself.
func isMount(p string) bool {
	m, ok := mountOf(p)
	return ok && m == p
}

// tree returns the file API and root of the tree that holds the resolved
// path p.
func (v *view) tree(p string) (*fileops.FS, *os.Root) {
	if writable(p) {
		return v.upper, v.upperRoot
	}
	return v.shared, v.sharedRoot
}

// lstat describes the resolved path p in the tree that holds it.
func (v *view) lstat(p string) (fs.FileInfo, error) {
	_, root := v.tree(p)
	return root.Lstat(relative(p))
}

// relative turns the absolute sandbox path p into a path relative to a
// tree's root, "." for "/".
func relative(p string) string {
	if p == "/" {
		return "."
	}
	return strings.TrimPrefix(p, "/")
}

// resolve maps the clean absolute sandbox path p to the absolute path, in
// the same view, in which no directory component is a symlink. Symlinks are
// followed as the kernel follows them for a process whose root is the
// view: an absolute target restarts at "/" and ".." at "/" stays there.
// With followFinal set a symlink in the last component is followed too,
// and otherwise the result names the link itself.
//
// Components that do not exist are kept, so the result can name a file
// about to be created. A ".." after a missing component gives ENOENT and
// a non-directory in the middle of the path gives ENOTDIR, as the kernel
// would.
func (v *view) resolve(p string, followFinal bool) (string, error) {
	var resolved []string
	pending := strings.Split(p, "/")
	links := 0
	missing := false

	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]

		switch name {
		case "", ".":
			continue
		case "..":
			if missing {
				return "", syscall.ENOENT
			}
			if len(resolved) > 0 {
				resolved = resolved[:len(resolved)-1]
			}
			continue
		}

		resolved = append(resolved, name)
		last := len(pending) == 0
		if missing || (last && !followFinal) {
			continue
		}

		current := "/" + path.Join(resolved...)
		info, err := v.lstat(current)
		if errors.Is(err, fs.ErrNotExist) {
			missing = true
			continue
		}
		if err != nil {
			return "", err
		}

		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			links++
			if links > maxSymlinks {
				return "", syscall.ELOOP
			}
			_, root := v.tree(current)
			target, err := root.Readlink(relative(current))
			if err != nil {
				return "", err
			}
			resolved = resolved[:len(resolved)-1]
			if path.IsAbs(target) {
				resolved = resolved[:0]
			}
			pending = append(strings.Split(target, "/"), pending...)
		case !info.IsDir() && !last:
			return "", syscall.ENOTDIR
		}
	}
	return "/" + path.Join(resolved...), nil
}

// checkPath validates a sandbox path argument: it must be absolute, clean
// and free of NUL bytes.
func checkPath(op, p string) error {
	var reason string
	switch {
	case !strings.HasPrefix(p, "/"):
		reason = "path must be absolute"
	case strings.IndexByte(p, 0) >= 0:
		reason = "path must not contain a NUL byte"
	case path.Clean(p) != p:
		reason = `path must be clean, without empty, "." or ".." elements or a trailing slash`
	default:
		return nil
	}
	return &provider.PathError{Op: op, Path: p, Err: fmt.Errorf("%w: %s", provider.ErrInvalidArgument, reason)}
}

// lookup validates p and resolves it, returning a PathError for op when
// either fails.
func (v *view) lookup(op, p string, followFinal bool) (string, error) {
	if err := checkPath(op, p); err != nil {
		return "", err
	}
	resolved, err := v.resolve(p, followFinal)
	if err != nil {
		return "", &provider.PathError{Op: op, Path: p, Err: v.classify(err)}
	}
	return resolved, nil
}

// classify maps an error of resolve to the provider file sentinel it
// stands for, keeping the cause reachable.
func (v *view) classify(err error) error {
	cause := underlying(err)
	switch {
	case v.escapeErr != nil && errors.Is(cause, v.escapeErr):
		return errors.Join(provider.ErrPathEscapes, cause)
	case errors.Is(cause, syscall.ENOTDIR):
		return errors.Join(provider.ErrNotDirectory, cause)
	case errors.Is(cause, fs.ErrNotExist):
		return errors.Join(provider.ErrPathNotFound, cause)
	case errors.Is(cause, syscall.ELOOP):
		return errors.Join(provider.ErrInvalidArgument, cause)
	}
	return cause
}

// underlying strips the os wrappers, whose paths are relative to a tree's
// root, down to the system error.
func underlying(err error) error {
	for {
		switch e := err.(type) {
		case *os.PathError:
			err = e.Err
		case *os.LinkError:
			err = e.Err
		case *os.SyscallError:
			err = e.Err
		default:
			return err
		}
	}
}

// errReadOnly is the cause of writes outside the mounts.
var errReadOnly = fmt.Errorf("%w: %w: the root filesystem is read-only; only /workspace, /tmp and /home are writable",
	provider.ErrInvalidArgument, fs.ErrPermission)

// rejectWrite returns the error of a write by op to p, which resolved to
// the read-only path resolved: ErrPathNotFound when mustExist is set and
// nothing is there, else errReadOnly.
func (v *view) rejectWrite(op, p, resolved string, mustExist bool) error {
	if mustExist {
		if _, err := v.lstat(resolved); errors.Is(err, fs.ErrNotExist) {
			return &provider.PathError{Op: op, Path: p, Err: errors.Join(provider.ErrPathNotFound, err)}
		}
	}
	return &provider.PathError{Op: op, Path: p, Err: errReadOnly}
}

// renamePathError replaces the resolved path in a *provider.PathError that
// fileops returned with the path the caller gave. Other errors pass
// unchanged.
func renamePathError(err error, resolved, requested string) error {
	var pe *provider.PathError
	if errors.As(err, &pe) && pe.Path == resolved {
		pe.Path = requested
	}
	return err
}

// rebase replaces the leading directory from of the sandbox path p with to.
func rebase(p, from, to string) string {
	if from == to {
		return p
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(p, from), "/")
	return path.Join(to, rest)
}
