package proot

import (
	"context"
	"fmt"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// withFiles runs op on the file view of sandbox id. An op that fails
// because Destroy removed the sandbox under it gives an error wrapping
// ErrSandboxDestroyed.
func withFiles[T any](ctx context.Context, p *Provider, id string, op func(*view) (T, error)) (T, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		var zero T
		return zero, err
	}
	result, err := op(sb.files)
	if err != nil && sb.isDestroyed() {
		return result, fmt.Errorf("proot: sandbox %s: %w: %w", id, provider.ErrSandboxDestroyed, err)
	}
	return result, err
}

// withFilesErr is withFiles for operations that return only an error.
func withFilesErr(ctx context.Context, p *Provider, id string, op func(*view) error) error {
	_, err := withFiles(ctx, p, id, func(v *view) (struct{}, error) { return struct{}{}, op(v) })
	return err
}

func (p *Provider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return withFiles(ctx, p, id, func(v *view) (io.ReadCloser, error) { return v.ReadFile(ctx, path) })
}

func (p *Provider) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	return withFilesErr(ctx, p, id, func(v *view) error { return v.WriteFile(ctx, path, r, mode) })
}

func (p *Provider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	return withFiles(ctx, p, id, func(v *view) (provider.FileInfo, error) { return v.Stat(ctx, path) })
}

func (p *Provider) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	return withFiles(ctx, p, id, func(v *view) ([]provider.FileInfo, error) { return v.ListDir(ctx, path) })
}

func (p *Provider) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	return withFilesErr(ctx, p, id, func(v *view) error { return v.Mkdir(ctx, path, mode) })
}

func (p *Provider) Remove(ctx context.Context, id, path string, recursive bool) error {
	return withFilesErr(ctx, p, id, func(v *view) error { return v.Remove(ctx, path, recursive) })
}

func (p *Provider) Move(ctx context.Context, id, oldPath, newPath string) error {
	return withFilesErr(ctx, p, id, func(v *view) error { return v.Move(ctx, oldPath, newPath) })
}

func (p *Provider) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	return withFilesErr(ctx, p, id, func(v *view) error { return v.Chmod(ctx, path, mode) })
}

func (p *Provider) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	return withFiles(ctx, p, id, func(v *view) ([]provider.FileInfo, error) { return v.Glob(ctx, pattern) })
}

func (p *Provider) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return withFiles(ctx, p, id, func(v *view) (io.ReadCloser, error) { return v.ReadArchive(ctx, path) })
}

func (p *Provider) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	return withFilesErr(ctx, p, id, func(v *view) error { return v.WriteArchive(ctx, path, r) })
}
