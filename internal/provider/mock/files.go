package mock

import (
	"context"
	"fmt"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/fileops"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// withFiles runs op on the file API of sandbox id. An op that fails because
// Destroy removed the sandbox under it gives an error wrapping
// ErrSandboxDestroyed.
func withFiles[T any](p *Provider, id string, op func(*fileops.FS) (T, error)) (T, error) {
	sb, err := p.lookup(id)
	if err != nil {
		var zero T
		return zero, err
	}
	result, err := op(sb.files)
	if err != nil && sb.isDestroyed() {
		return result, fmt.Errorf("mock: sandbox %s: %w: %w", id, provider.ErrSandboxDestroyed, err)
	}
	return result, err
}

// withFilesErr is withFiles for operations that return only an error.
func withFilesErr(p *Provider, id string, op func(*fileops.FS) error) error {
	_, err := withFiles(p, id, func(f *fileops.FS) (struct{}, error) { return struct{}{}, op(f) })
	return err
}

func (p *Provider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return withFiles(p, id, func(f *fileops.FS) (io.ReadCloser, error) { return f.ReadFile(ctx, path) })
}

func (p *Provider) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	return withFilesErr(p, id, func(f *fileops.FS) error { return f.WriteFile(ctx, path, r, mode) })
}

func (p *Provider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	return withFiles(p, id, func(f *fileops.FS) (provider.FileInfo, error) { return f.Stat(ctx, path) })
}

func (p *Provider) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	return withFiles(p, id, func(f *fileops.FS) ([]provider.FileInfo, error) { return f.ListDir(ctx, path) })
}

func (p *Provider) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	return withFilesErr(p, id, func(f *fileops.FS) error { return f.Mkdir(ctx, path, mode) })
}

func (p *Provider) Remove(ctx context.Context, id, path string, recursive bool) error {
	return withFilesErr(p, id, func(f *fileops.FS) error { return f.Remove(ctx, path, recursive) })
}

func (p *Provider) Move(ctx context.Context, id, oldPath, newPath string) error {
	return withFilesErr(p, id, func(f *fileops.FS) error { return f.Move(ctx, oldPath, newPath) })
}

func (p *Provider) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	return withFilesErr(p, id, func(f *fileops.FS) error { return f.Chmod(ctx, path, mode) })
}

func (p *Provider) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	return withFiles(p, id, func(f *fileops.FS) ([]provider.FileInfo, error) { return f.Glob(ctx, pattern) })
}

func (p *Provider) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return withFiles(p, id, func(f *fileops.FS) (io.ReadCloser, error) { return f.ReadArchive(ctx, path) })
}

func (p *Provider) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	return withFilesErr(p, id, func(f *fileops.FS) error { return f.WriteArchive(ctx, path, r) })
}
