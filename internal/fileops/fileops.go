// Package fileops implements the sandbox file API on a host directory that
// serves as the sandbox's root. It is shared by the in-sandbox agent (whose
// root is "/") and by host-side providers such as mock and proot.
//
// Every path is an absolute sandbox path, resolved inside the root through
// an os.Root, so no path and no symlink can reach a file outside it.
package fileops

import (
	"context"
	"errors"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/provider"
)

var errTODO = errors.New("fileops: not implemented yet")

// FS is the file API of one sandbox root. It is safe for concurrent use.
type FS struct {
	dir string
}

// Open returns the file API for the tree rooted at dir.
func Open(dir string) (*FS, error) { return &FS{dir: dir}, nil }

// Close releases the root.
func (f *FS) Close() error { return nil }

// The methods below have the semantics of provider.Files (without the
// sandbox ID argument).

func (f *FS) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	return nil, errTODO
}

func (f *FS) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	return errTODO
}

func (f *FS) Stat(ctx context.Context, path string) (provider.FileInfo, error) {
	return provider.FileInfo{}, errTODO
}

func (f *FS) ListDir(ctx context.Context, path string) ([]provider.FileInfo, error) {
	return nil, errTODO
}

func (f *FS) Mkdir(ctx context.Context, path string, mode fs.FileMode) error { return errTODO }

func (f *FS) Remove(ctx context.Context, path string, recursive bool) error { return errTODO }

func (f *FS) Move(ctx context.Context, oldPath, newPath string) error { return errTODO }

func (f *FS) Chmod(ctx context.Context, path string, mode fs.FileMode) error { return errTODO }

func (f *FS) Glob(ctx context.Context, pattern string) ([]provider.FileInfo, error) {
	return nil, errTODO
}

func (f *FS) ReadArchive(ctx context.Context, path string) (io.ReadCloser, error) {
	return nil, errTODO
}

func (f *FS) WriteArchive(ctx context.Context, path string, r io.Reader) error { return errTODO }
