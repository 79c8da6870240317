// Package fileops implements the sandbox file API on a host directory that
// serves as the sandbox's root. It is shared by the in-sandbox agent (whose
// root is "/") and by host-side providers such as mock and proot.
//
// Every path is an absolute, clean sandbox path such as "/workspace/a.txt",
// and "/" is the root itself. Paths are resolved inside the root through an
// os.Root, so no path and no symlink can reach a file outside it.
//
// # Symlinks
//
// Symlinks are resolved as the kernel resolves them for a process inside
// the sandbox, like openat2 with RESOLVE_IN_ROOT. An absolute target such as
// "/etc/passwd" names the sandbox's own /etc/passwd, and ".." at the root
// stays at the root. A link to "/" therefore leads to the sandbox root,
// never to the host's. ReadFile, WriteFile, ListDir, Mkdir, Chmod and the
// directory argument of the archive methods follow a final symlink. Stat,
// Remove and Move act on the link itself. At most 40 symlinks are followed
// per path, and more gives ErrInvalidArgument wrapping syscall.ELOOP.
//
// Resolution checks each component before the operation runs. If a process
// in the sandbox swaps a directory for a symlink in between, os.Root still
// keeps the operation inside the root. It fails with ErrPathEscapes when the
// new link is absolute or leads out of the root, because os.Root follows
// only relative links that stay inside.
//
// # Errors
//
// Every method returns *provider.PathError with the sandbox path. Its Err
// matches one of the provider file sentinels with errors.Is when the
// condition has one, and also matches the underlying cause, such as
// syscall.ENOTEMPTY.
package fileops

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// FS is the file API of one sandbox root. It is safe for concurrent use.
type FS struct {
	root *os.Root

	// escapeErr is the unexported error value that os.Root returns for a
	// path leaving the root, obtained once in Open so that it can be
	// matched with errors.Is rather than by its text.
	escapeErr error
}

// Open returns the file API for the tree rooted at the directory dir.
func Open(dir string) (*FS, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open sandbox root: %w", err)
	}
	_, probe := root.Lstat("..")
	return &FS{root: root, escapeErr: rootCause(probe)}, nil
}

// Close releases the root. Files already returned by ReadFile stay usable.
func (f *FS) Close() error {
	return f.root.Close()
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
		reason = "path must be clean, without empty, \".\" or \"..\" elements or a trailing slash"
	default:
		return nil
	}
	return invalid(op, p, reason)
}

// invalid returns a PathError wrapping ErrInvalidArgument with reason.
func invalid(op, p, reason string) error {
	return &provider.PathError{Op: op, Path: p, Err: fmt.Errorf("%w: %s", provider.ErrInvalidArgument, reason)}
}

// causeError pairs a provider sentinel with the lower-level error behind it,
// so that both match with errors.Is. Its message is the sentinel's.
type causeError struct {
	kind  error
	cause error
}

func (e *causeError) Error() string   { return e.kind.Error() }
func (e *causeError) Unwrap() []error { return []error{e.kind, e.cause} }

// pathError wraps err for the sandbox path p, classified by classify.
func (f *FS) pathError(op, p string, err error) error {
	return &provider.PathError{Op: op, Path: p, Err: f.classify(err)}
}

// classify maps an error from the os package or from resolve to the
// provider file sentinel it stands for, keeping the cause reachable. Errors
// that already carry a provider sentinel, and causes without one (such as
// permission denied or a full disk), are returned without a sentinel added.
func (f *FS) classify(err error) error {
	if hasSentinel(err) {
		return err
	}
	cause := rootCause(err)

	// ENOTEMPTY is checked before fs.ErrExist because syscall.Errno
	// reports ENOTEMPTY as matching fs.ErrExist.
	var kind error
	switch {
	case f.escapeErr != nil && errors.Is(cause, f.escapeErr):
		kind = provider.ErrPathEscapes
	case errors.Is(cause, errNotEmpty):
		kind = provider.ErrDirectoryNotEmpty
	case errors.Is(cause, errIsDir):
		kind = provider.ErrIsDirectory
	case errors.Is(cause, errNotDir):
		kind = provider.ErrNotDirectory
	case errors.Is(cause, os.ErrNotExist):
		kind = provider.ErrPathNotFound
	case errors.Is(cause, os.ErrExist):
		kind = provider.ErrPathExists
	case errors.Is(cause, errLoop), errors.Is(cause, errNameTooLong), errors.Is(cause, errInvalid):
		kind = provider.ErrInvalidArgument
	default:
		return cause
	}
	return &causeError{kind: kind, cause: cause}
}

// hasSentinel reports whether err already matches a provider sentinel.
func hasSentinel(err error) bool {
	for _, sentinel := range []error{
		provider.ErrPathNotFound,
		provider.ErrPathExists,
		provider.ErrIsDirectory,
		provider.ErrNotDirectory,
		provider.ErrDirectoryNotEmpty,
		provider.ErrPathEscapes,
		provider.ErrInvalidArgument,
	} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}

// rootCause strips the os wrappers, whose paths are relative to the host
// root, down to the system error.
func rootCause(err error) error {
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
