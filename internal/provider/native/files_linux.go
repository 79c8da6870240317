package native

import (
	"context"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// The file methods go through the sandbox's agent, which resolves every
// path inside the sandbox's root, so no path or symlink reaches a host
// file.

// ReadFile streams a file of the sandbox. The caller closes the reader.
func (p *Provider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	rc, err := sb.client.ReadFile(ctx, path)
	return rc, sb.callError("read file", err)
}

// WriteFile streams r into path, replacing an existing file atomically.
func (p *Provider) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	return sb.callError("write file", sb.client.WriteFile(ctx, path, r, mode))
}

// Stat describes path without following a final symlink.
func (p *Provider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return provider.FileInfo{}, err
	}
	info, err := sb.client.Stat(ctx, path)
	return info, sb.callError("stat", err)
}

// ListDir lists a directory sorted by name.
func (p *Provider) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	infos, err := sb.client.ListDir(ctx, path)
	return infos, sb.callError("list directory", err)
}

// Mkdir creates a directory and its missing parents.
func (p *Provider) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	return sb.callError("mkdir", sb.client.Mkdir(ctx, path, mode))
}

// Remove deletes a file, a symlink or a directory, recursively when asked.
func (p *Provider) Remove(ctx context.Context, id, path string, recursive bool) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	return sb.callError("remove", sb.client.Remove(ctx, path, recursive))
}

// Move renames oldPath to newPath.
func (p *Provider) Move(ctx context.Context, id, oldPath, newPath string) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	return sb.callError("move", sb.client.Move(ctx, oldPath, newPath))
}

// Chmod sets the permission bits of path.
func (p *Provider) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	return sb.callError("chmod", sb.client.Chmod(ctx, path, mode))
}

// Glob returns the entries matching pattern, sorted by path.
func (p *Provider) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	infos, err := sb.client.Glob(ctx, pattern)
	return infos, sb.callError("glob", err)
}

// ReadArchive streams the directory at path as a tar archive.
func (p *Provider) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	rc, err := sb.client.ReadArchive(ctx, path)
	return rc, sb.callError("read archive", err)
}

// WriteArchive extracts the tar stream r into the directory at path.
func (p *Provider) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	return sb.callError("write archive", sb.client.WriteArchive(ctx, path, r))
}
