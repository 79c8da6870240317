package fileops

import (
	"errors"
	"io/fs"
	"path"
	"strings"
	"syscall"
)

// maxSymlinks is the number of symlinks resolve follows in one path before
// it gives up with ELOOP, the same limit as Linux path lookup.
const maxSymlinks = 40

// System errors that classify maps to provider sentinels. They exist on
// Linux and macOS alike.
var (
	errNotEmpty    error = syscall.ENOTEMPTY
	errIsDir       error = syscall.EISDIR
	errNotDir      error = syscall.ENOTDIR
	errLoop        error = syscall.ELOOP
	errNameTooLong error = syscall.ENAMETOOLONG
	errInvalid     error = syscall.EINVAL
	errNoEntry     error = syscall.ENOENT
)

// resolve maps the clean absolute sandbox path p to a path relative to the
// root in which no directory component is a symlink. Symlinks are followed
// inside the root: an absolute target restarts at the root and ".." at the
// root stays there. With followFinal set, a symlink in the last component is
// followed as well, and otherwise the result names the link itself.
//
// Components that do not exist are kept as they are, so the result can name
// a file about to be created. A ".." after a missing component gives ENOENT
// and a non-directory in the middle of the path gives ENOTDIR, as the
// kernel would. The result is "." for the root.
func (f *FS) resolve(p string, followFinal bool) (string, error) {
	// resolved holds the components walked so far, each a real directory
	// except possibly the last.
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
				return "", errNoEntry
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

		rel := path.Join(resolved...)
		info, err := f.root.Lstat(rel)
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
				return "", errLoop
			}
			target, err := f.root.Readlink(rel)
			if err != nil {
				return "", err
			}
			resolved = resolved[:len(resolved)-1]
			if path.IsAbs(target) {
				resolved = resolved[:0]
			}
			pending = append(strings.Split(target, "/"), pending...)
		case !info.IsDir() && !last:
			return "", errNotDir
		}
	}

	if len(resolved) == 0 {
		return ".", nil
	}
	return path.Join(resolved...), nil
}
