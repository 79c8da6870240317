package orchestrator

import (
	"context"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// Files returns the file API of a running sandbox, with paths resolved
// against /workspace. The state is checked once, here; calls made after the
// sandbox stopped running get the provider's error.
func (m *Manager) Files(ctx context.Context, id string) (*SandboxFiles, error) {
	sb, err := m.running(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := m.providerFor(sb)
	if err != nil {
		return nil, err
	}
	return &SandboxFiles{m: m, p: m.timeFiles(p), sb: sb}, nil
}

// SandboxFiles is the file API of one sandbox, with the semantics of
// provider.Files. Paths may be absolute or relative to /workspace; they are
// cleaned before they reach the provider. An empty path, or one with a NUL
// byte, gives a *FieldError. Provider errors are returned wrapped, so
// *provider.PathError and the file sentinels still match with errors.As and
// errors.Is.
type SandboxFiles struct {
	m  *Manager
	p  provider.Provider
	sb store.Sandbox
}

// ID returns the sandbox ID.
func (f *SandboxFiles) ID() string { return f.sb.ID }

// ReadFile opens a regular file for streaming. The caller closes it.
func (f *SandboxFiles) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	abs, err := resolvePath("path", path)
	if err != nil {
		return nil, err
	}
	rc, err := f.p.ReadFile(ctx, f.sb.ID, abs)
	if err != nil {
		return nil, f.fail(ctx, "read a file in", err)
	}
	return rc, nil
}

// WriteFile streams r into path, creating parent directories, and replaces
// an existing file atomically.
func (f *SandboxFiles) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	abs, err := resolvePath("path", path)
	if err != nil {
		return err
	}
	return f.fail(ctx, "write a file in", f.p.WriteFile(ctx, f.sb.ID, abs, r, mode))
}

// Stat describes path without following a final symlink.
func (f *SandboxFiles) Stat(ctx context.Context, path string) (provider.FileInfo, error) {
	abs, err := resolvePath("path", path)
	if err != nil {
		return provider.FileInfo{}, err
	}
	info, err := f.p.Stat(ctx, f.sb.ID, abs)
	if err != nil {
		return provider.FileInfo{}, f.fail(ctx, "stat a file in", err)
	}
	return info, nil
}

// ListDir lists the entries of a directory sorted by name.
func (f *SandboxFiles) ListDir(ctx context.Context, path string) ([]provider.FileInfo, error) {
	abs, err := resolvePath("path", path)
	if err != nil {
		return nil, err
	}
	list, err := f.p.ListDir(ctx, f.sb.ID, abs)
	if err != nil {
		return nil, f.fail(ctx, "list a directory in", err)
	}
	return list, nil
}

// Mkdir creates a directory and its missing parents.
func (f *SandboxFiles) Mkdir(ctx context.Context, path string, mode fs.FileMode) error {
	abs, err := resolvePath("path", path)
	if err != nil {
		return err
	}
	return f.fail(ctx, "create a directory in", f.p.Mkdir(ctx, f.sb.ID, abs, mode))
}

// Remove deletes a file, a symlink or an empty directory; with recursive it
// deletes a directory tree.
func (f *SandboxFiles) Remove(ctx context.Context, path string, recursive bool) error {
	abs, err := resolvePath("path", path)
	if err != nil {
		return err
	}
	return f.fail(ctx, "remove a file in", f.p.Remove(ctx, f.sb.ID, abs, recursive))
}

// Move renames oldPath to newPath, creating newPath's parents.
func (f *SandboxFiles) Move(ctx context.Context, oldPath, newPath string) error {
	absOld, err := resolvePath("old_path", oldPath)
	if err != nil {
		return err
	}
	absNew, err := resolvePath("new_path", newPath)
	if err != nil {
		return err
	}
	return f.fail(ctx, "move a file in", f.p.Move(ctx, f.sb.ID, absOld, absNew))
}

// Chmod sets the permission bits of path.
func (f *SandboxFiles) Chmod(ctx context.Context, path string, mode fs.FileMode) error {
	abs, err := resolvePath("path", path)
	if err != nil {
		return err
	}
	return f.fail(ctx, "change the mode of a file in", f.p.Chmod(ctx, f.sb.ID, abs, mode))
}

// Glob returns the entries matching pattern, sorted by path. A relative
// pattern is taken from /workspace, and a "**" element matches zero or more
// directories. A malformed pattern gives a *FieldError naming "pattern".
func (f *SandboxFiles) Glob(ctx context.Context, pattern string) ([]provider.FileInfo, error) {
	abs, err := resolvePattern(pattern)
	if err != nil {
		return nil, err
	}
	list, err := f.p.Glob(ctx, f.sb.ID, abs)
	if err != nil {
		return nil, f.fail(ctx, "match files in", err)
	}
	return list, nil
}

// ReadArchive streams the directory at path as a tar archive. The caller
// closes it.
func (f *SandboxFiles) ReadArchive(ctx context.Context, path string) (io.ReadCloser, error) {
	abs, err := resolvePath("path", path)
	if err != nil {
		return nil, err
	}
	rc, err := f.p.ReadArchive(ctx, f.sb.ID, abs)
	if err != nil {
		return nil, f.fail(ctx, "read an archive from", err)
	}
	return rc, nil
}

// WriteArchive extracts the tar stream r into the directory at path.
func (f *SandboxFiles) WriteArchive(ctx context.Context, path string, r io.Reader) error {
	abs, err := resolvePath("path", path)
	if err != nil {
		return err
	}
	return f.fail(ctx, "extract an archive into", f.p.WriteArchive(ctx, f.sb.ID, abs, r))
}

// fail wraps a provider error, and returns nil for nil.
func (f *SandboxFiles) fail(ctx context.Context, verb string, err error) error {
	if err == nil {
		return nil
	}
	return f.m.providerError(ctx, f.sb, verb, err)
}
