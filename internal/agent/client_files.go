package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// The file methods have the semantics of provider.Files without the sandbox
// ID. Paths are absolute sandbox paths. Errors for conditions a caller can
// fix are *provider.PathError wrapping the same sentinel the agent's file
// API returned, so errors.Is works as it does on the agent.

// ReadFile opens the regular file at path for streaming. ctx bounds the
// whole read, not only the open. A read error on the agent after the first
// byte is returned by Read instead of io.EOF, so a cut download never looks
// complete. The caller closes the reader.
func (c *Client) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	return c.download(ctx, "read", pathFileContent, path)
}

// WriteFile streams r into path, creating parent directories, and replaces
// an existing file atomically. mode is the permission bits of the new file.
// When r fails, the agent discards what it received and WriteFile returns
// r's error. WriteFile does not close r.
func (c *Client) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	query := url.Values{"path": {path}, "mode": {formatMode(mode)}}
	return c.upload(ctx, "write", pathFileContent, query, contentBytes, r)
}

// Stat describes path without following a final symlink.
func (c *Client) Stat(ctx context.Context, path string) (provider.FileInfo, error) {
	var info fileInfo
	if err := c.call(ctx, "stat", http.MethodPost, pathFileStat, pathRequest{Path: path}, &info); err != nil {
		return provider.FileInfo{}, err
	}
	return info.toProvider(), nil
}

// ListDir lists the entries of a directory sorted by name.
func (c *Client) ListDir(ctx context.Context, path string) ([]provider.FileInfo, error) {
	return c.callInfos(ctx, "list", pathFileList, pathRequest{Path: path})
}

// Mkdir creates a directory and its missing parents. An existing directory
// is not an error.
func (c *Client) Mkdir(ctx context.Context, path string, mode fs.FileMode) error {
	return c.call(ctx, "mkdir", http.MethodPost, pathFileMkdir, pathRequest{Path: path, Mode: uint32(mode)}, nil)
}

// Remove deletes a file, a symlink or an empty directory; with recursive it
// deletes a directory tree.
func (c *Client) Remove(ctx context.Context, path string, recursive bool) error {
	return c.call(ctx, "remove", http.MethodPost, pathFileRemove, pathRequest{Path: path, Recursive: recursive}, nil)
}

// Move renames oldPath to newPath, creating newPath's parents and replacing
// an existing file at newPath.
func (c *Client) Move(ctx context.Context, oldPath, newPath string) error {
	return c.call(ctx, "move", http.MethodPost, pathFileMove, moveRequest{OldPath: oldPath, NewPath: newPath}, nil)
}

// Chmod sets the permission bits of path.
func (c *Client) Chmod(ctx context.Context, path string, mode fs.FileMode) error {
	return c.call(ctx, "chmod", http.MethodPost, pathFileChmod, pathRequest{Path: path, Mode: uint32(mode)}, nil)
}

// Glob returns the entries matching an absolute pattern, sorted by path.
func (c *Client) Glob(ctx context.Context, pattern string) ([]provider.FileInfo, error) {
	return c.callInfos(ctx, "glob", pathFileGlob, globRequest{Pattern: pattern})
}

// ReadArchive streams the directory at path as a tar archive whose entry
// names are relative to path. ctx bounds the whole read, and an error on
// the agent after the first byte is returned by Read, as in ReadFile. The
// caller closes the reader.
func (c *Client) ReadArchive(ctx context.Context, path string) (io.ReadCloser, error) {
	return c.download(ctx, "read archive", pathFileArchive, path)
}

// WriteArchive extracts the tar stream r into the directory at path,
// creating it when missing. WriteArchive does not close r.
func (c *Client) WriteArchive(ctx context.Context, path string, r io.Reader) error {
	return c.upload(ctx, "write archive", pathFileArchive, url.Values{"path": {path}}, contentTar, r)
}

func (c *Client) callInfos(ctx context.Context, op, path string, in any) ([]provider.FileInfo, error) {
	var infos []fileInfo
	if err := c.call(ctx, op, http.MethodPost, path, in, &infos); err != nil {
		return nil, err
	}
	result := make([]provider.FileInfo, len(infos))
	for i, fi := range infos {
		result[i] = fi.toProvider()
	}
	return result, nil
}

// download starts a GET of a byte stream and returns its body.
func (c *Client) download(ctx context.Context, op, endpoint, path string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, op, http.MethodGet, endpoint, url.Values{"path": {path}}, "", nil)
	if err != nil {
		return nil, err
	}
	return &downloadBody{ctx: ctx, client: c, op: op, resp: resp}, nil
}

// downloadBody reads a streamed response and turns the error trailer, or a
// stream cut short, into an error instead of io.EOF.
type downloadBody struct {
	ctx    context.Context
	client *Client
	op     string
	resp   *http.Response
	err    error // sticky error after the end of the stream
}

func (b *downloadBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.resp.Body.Read(p)
	switch {
	case err == io.EOF:
		if trailer := b.resp.Trailer.Get(trailerError); trailer != "" {
			b.err = decodeTrailer(b.op, trailer)
		} else {
			b.err = io.EOF
		}
	case err != nil:
		b.err = b.client.streamError(b.ctx, b.op, err)
	}
	return n, b.err
}

func (b *downloadBody) Close() error { return b.resp.Body.Close() }

func decodeTrailer(op, trailer string) error {
	var body errorBody
	if err := json.Unmarshal([]byte(trailer), &body); err != nil || body.Code == "" {
		return unavailable(op, fmt.Errorf("undecodable %s trailer %q", trailerError, trailer))
	}
	return body.toError()
}

// upload sends r as the body of a PUT and waits for the agent's response.
func (c *Client) upload(ctx context.Context, op, endpoint string, query url.Values, contentType string, r io.Reader) error {
	body := &uploadBody{r: r}
	resp, err := c.send(ctx, op, http.MethodPut, endpoint, query, contentType, body)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}

	readErr := body.finish()
	if readErr != nil && err != nil {
		// The transport reset the stream because r failed. The agent
		// discards the partial upload, so r's error is the one to return.
		return &provider.PathError{Op: op, Path: query.Get("path"), Err: readErr}
	}
	return err
}

// errUploadFinished is returned to the transport when it reads an upload
// body after upload has returned.
var errUploadFinished = errors.New("upload already finished")

// uploadBody passes r to the transport. It hides r's Close method from the
// transport, which closes request bodies, and records the error r returned.
// It stops reading r once finish was called, because the transport may read
// a request body after the response arrived, while the caller owns r again
// when upload returns.
type uploadBody struct {
	mu       sync.Mutex // held during r.Read, so finish waits for a read in progress
	r        io.Reader
	err      error
	finished bool
}

func (u *uploadBody) Read(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.finished {
		return 0, errUploadFinished
	}
	n, err := u.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		u.err = err
	}
	return n, err
}

// finish stops reads of r and returns the error r returned, if any.
func (u *uploadBody) finish() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.finished = true
	return u.err
}

// formatMode formats mode for a query parameter as a decimal number, the
// same fs.FileMode bits that JSON bodies carry.
func formatMode(mode fs.FileMode) string {
	return strconv.FormatUint(uint64(mode), 10)
}
