package custom

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/url"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// The file methods have the semantics of provider.Files. Errors for
// conditions a caller can fix are *provider.PathError wrapping the
// sentinel the backend reported, so errors.Is and errors.As work as they
// do on the backend.

// ReadFile opens the file for streaming from the backend. ctx bounds the
// whole read, not only the open. A download cut short, or one that stalls
// for Config.IdleTimeout, fails with an error matching
// provider.ErrUnavailable instead of io.EOF, so it never looks complete.
// The caller closes the reader.
func (p *Provider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return p.download(ctx, "read", id, opFileContent, path)
}

// WriteFile streams r to the backend, which replaces the file atomically.
// When r fails, the backend discards what it received. WriteFile does not
// close r, and never reads it after returning.
func (p *Provider) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	query := url.Values{"path": {path}, "mode": {formatMode(mode)}}
	return p.upload(ctx, "write", id, opFileContent, query, contentBytes, r)
}

// Stat describes path without following a final symlink.
func (p *Provider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	rq, err := sandboxRequest("stat", http.MethodGet, id, opFileStat)
	if err != nil {
		return provider.FileInfo{}, err
	}
	rq.query = url.Values{"path": {path}}
	var info fileInfo
	if err := p.call(ctx, rq, nil, &info); err != nil {
		return provider.FileInfo{}, err
	}
	fi, err := info.toProvider()
	if err != nil {
		return provider.FileInfo{}, p.unavailable("stat", err)
	}
	return fi, nil
}

// ListDir lists the entries of a directory sorted by name.
func (p *Provider) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	return p.listInfos(ctx, "list", id, opFileList, url.Values{"path": {path}})
}

// Glob returns the entries matching an absolute pattern, sorted by path.
func (p *Provider) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	return p.listInfos(ctx, "glob", id, opFileGlob, url.Values{"pattern": {pattern}})
}

// Mkdir creates a directory and its missing parents.
func (p *Provider) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	return p.sandboxCall(ctx, "mkdir", id, opFileMkdir, pathRequest{Path: path, Mode: formatMode(mode)})
}

// Remove deletes a file, a symlink or an empty directory; with recursive a
// directory tree.
func (p *Provider) Remove(ctx context.Context, id, path string, recursive bool) error {
	return p.sandboxCall(ctx, "remove", id, opFileRemove, pathRequest{Path: path, Recursive: recursive})
}

// Move renames oldPath to newPath.
func (p *Provider) Move(ctx context.Context, id, oldPath, newPath string) error {
	return p.sandboxCall(ctx, "move", id, opFileMove, moveRequest{OldPath: oldPath, NewPath: newPath})
}

// Chmod sets the permission bits of path.
func (p *Provider) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	return p.sandboxCall(ctx, "chmod", id, opFileChmod, pathRequest{Path: path, Mode: formatMode(mode)})
}

// ReadArchive streams the directory at path from the backend as a tar
// archive, with the failure rules of ReadFile. The caller closes it.
func (p *Provider) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return p.download(ctx, "read archive", id, opFileArchive, path)
}

// WriteArchive streams the tar archive r to the backend, which extracts it
// into the directory at path. Like WriteFile, it never reads r after
// returning.
func (p *Provider) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	return p.upload(ctx, "write archive", id, opFileArchive, url.Values{"path": {path}}, contentTar, r)
}

// sandboxCall sends a JSON POST for the file operation at suffix.
func (p *Provider) sandboxCall(ctx context.Context, op, id, suffix string, in any) error {
	rq, err := sandboxRequest(op, http.MethodPost, id, suffix)
	if err != nil {
		return err
	}
	return p.call(ctx, rq, in, nil)
}

// listInfos requests a list of entries.
func (p *Provider) listInfos(ctx context.Context, op, id, suffix string, query url.Values) ([]provider.FileInfo, error) {
	rq, err := sandboxRequest(op, http.MethodGet, id, suffix)
	if err != nil {
		return nil, err
	}
	rq.query = query
	var wire []fileInfo
	if err := p.call(ctx, rq, nil, &wire); err != nil {
		return nil, err
	}
	infos := make([]provider.FileInfo, len(wire))
	for i, w := range wire {
		if infos[i], err = w.toProvider(); err != nil {
			return nil, p.unavailable(op, err)
		}
	}
	return infos, nil
}

// download opens a raw response body.
func (p *Provider) download(ctx context.Context, op, id, suffix, path string) (io.ReadCloser, error) {
	rq, err := sandboxRequest(op, http.MethodGet, id, suffix)
	if err != nil {
		return nil, err
	}
	rq.query = url.Values{"path": {path}}
	return p.send(ctx, rq)
}

// upload sends r as a raw request body.
func (p *Provider) upload(ctx context.Context, op, id, suffix string, query url.Values, contentType string, r io.Reader) error {
	rq, err := sandboxRequest(op, http.MethodPut, id, suffix)
	if err != nil {
		return err
	}
	rq.query, rq.body, rq.contentType, rq.upload = query, r, contentType, true
	body, err := p.send(ctx, rq)
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(io.Discard, body)
	return err
}
