package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// File types reported in FileInfo.Type.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
	TypeOther   = "other"
)

// FileInfo describes one entry of a sandbox's file system.
type FileInfo struct {
	Name       string      // base name
	Path       string      // absolute path inside the sandbox
	Size       int64       // size in bytes
	Mode       fs.FileMode // permission bits
	IsDir      bool        // the entry is a directory
	Type       string      // one of the Type* constants
	ModTime    time.Time   // last modification; zero when the server did not report it
	LinkTarget string      // symlink target as stored, for symlinks
}

// fileJSON is the wire form of FileInfo: the mode is an octal string and
// the time is RFC 3339 or "".
type fileJSON struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	Mode       string `json:"mode"`
	IsDir      bool   `json:"is_dir"`
	Type       string `json:"type"`
	ModTime    string `json:"mod_time"`
	LinkTarget string `json:"link_target"`
}

// UnmarshalJSON decodes the wire form of a file entry.
func (fi *FileInfo) UnmarshalJSON(b []byte) error {
	var w fileJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*fi = FileInfo{
		Name:       w.Name,
		Path:       w.Path,
		Size:       w.Size,
		IsDir:      w.IsDir,
		Type:       w.Type,
		LinkTarget: w.LinkTarget,
	}
	if w.Mode != "" {
		mode, err := strconv.ParseUint(w.Mode, 8, 32)
		if err != nil {
			return fmt.Errorf("file %s: invalid mode %q: %w", w.Path, w.Mode, err)
		}
		fi.Mode = fs.FileMode(mode)
	}
	var err error
	fi.ModTime, err = parseTime(w.ModTime)
	return err
}

// MarshalJSON encodes the entry in its wire form, so that printed entries
// look like the API's.
func (fi FileInfo) MarshalJSON() ([]byte, error) {
	w := fileJSON{
		Name:       fi.Name,
		Path:       fi.Path,
		Size:       fi.Size,
		Mode:       formatMode(fi.Mode),
		IsDir:      fi.IsDir,
		Type:       fi.Type,
		ModTime:    formatTime(fi.ModTime),
		LinkTarget: fi.LinkTarget,
	}
	return json.Marshal(w)
}

// formatMode formats permission bits as four octal digits, such as "0644".
func formatMode(mode fs.FileMode) string {
	return fmt.Sprintf("%04o", mode.Perm())
}

// WriteFile writes data to path in the sandbox, creating parent
// directories and replacing an existing file. mode 0 takes the server's
// default (0644). The content travels base64-encoded inside a JSON body, so
// use Upload for large files.
func (c *Client) WriteFile(ctx context.Context, id, path string, data []byte, mode fs.FileMode) error {
	body := struct {
		Path     string `json:"path"`
		Content  string `json:"content"`
		Mode     string `json:"mode,omitempty"`
		Encoding string `json:"encoding"`
	}{
		Path:     path,
		Content:  base64.StdEncoding.EncodeToString(data),
		Encoding: "base64",
	}
	if mode != 0 {
		body.Mode = formatMode(mode)
	}
	return c.doJSON(ctx, http.MethodPost, sandboxPath(id, "/files"), nil, body, nil)
}

// Upload streams r into the file at path in the sandbox, creating parent
// directories and replacing an existing file. Nothing is buffered in
// memory. mode 0 takes the server's default (0644). Upload does not close
// r.
func (c *Client) Upload(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	query := url.Values{"path": {path}}
	if mode != 0 {
		query.Set("mode", formatMode(mode))
	}
	resp, err := c.send(ctx, http.MethodPut, sandboxPath(id, "/files"), query, uploadBody(r), "application/octet-stream")
	if err != nil {
		return err
	}
	return drain(resp)
}

// Download opens the file at path in the sandbox for streaming. The caller
// closes the returned reader. Cancelling ctx ends the transfer.
func (c *Client) Download(ctx context.Context, id, path string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, sandboxPath(id, "/files"), url.Values{"path": {path}}, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ListFiles lists the entries of the directory at path, sorted by name.
func (c *Client) ListFiles(ctx context.Context, id, path string) ([]FileInfo, error) {
	var list []FileInfo
	err := c.doJSON(ctx, http.MethodGet, sandboxPath(id, "/files/list"), url.Values{"path": {path}}, nil, &list)
	return list, err
}

// Stat describes the entry at path without following a final symlink.
func (c *Client) Stat(ctx context.Context, id, path string) (FileInfo, error) {
	var fi FileInfo
	err := c.doJSON(ctx, http.MethodGet, sandboxPath(id, "/files/stat"), url.Values{"path": {path}}, nil, &fi)
	return fi, err
}

// Mkdir creates a directory and its missing parents. An existing directory
// is not an error.
func (c *Client) Mkdir(ctx context.Context, id, path string) error {
	body := struct {
		Path string `json:"path"`
	}{path}
	return c.doJSON(ctx, http.MethodPost, sandboxPath(id, "/files/mkdir"), nil, body, nil)
}

// Move renames oldPath to newPath, replacing an existing file at newPath.
func (c *Client) Move(ctx context.Context, id, oldPath, newPath string) error {
	body := struct {
		OldPath string `json:"old_path"`
		NewPath string `json:"new_path"`
	}{oldPath, newPath}
	return c.doJSON(ctx, http.MethodPost, sandboxPath(id, "/files/move"), nil, body, nil)
}

// Chmod sets the permission bits of path.
func (c *Client) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	body := struct {
		Path string `json:"path"`
		Mode string `json:"mode"`
	}{path, formatMode(mode)}
	return c.doJSON(ctx, http.MethodPost, sandboxPath(id, "/files/chmod"), nil, body, nil)
}

// Remove deletes a file, a symlink or an empty directory. With recursive it
// deletes a directory tree; without it a non-empty directory gives an error
// matching ErrConflict.
func (c *Client) Remove(ctx context.Context, id, path string, recursive bool) error {
	query := url.Values{"path": {path}}
	if recursive {
		query.Set("recursive", "true")
	}
	return c.doJSON(ctx, http.MethodDelete, sandboxPath(id, "/files"), query, nil, nil)
}

// Glob returns the entries matching an absolute pattern in path.Match
// syntax, where a "**" element matches any number of directories. No match
// gives an empty list.
func (c *Client) Glob(ctx context.Context, id, pattern string) ([]FileInfo, error) {
	var list []FileInfo
	err := c.doJSON(ctx, http.MethodGet, sandboxPath(id, "/files/glob"), url.Values{"pattern": {pattern}}, nil, &list)
	return list, err
}

// DownloadArchive streams the directory at path as a tar archive whose
// entry names are relative to path. The caller closes the returned reader.
func (c *Client) DownloadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, sandboxPath(id, "/files/archive"), url.Values{"path": {path}}, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// UploadArchive streams the tar archive r into the directory at path,
// creating it when missing. Nothing is buffered in memory. UploadArchive
// does not close r.
func (c *Client) UploadArchive(ctx context.Context, id, path string, r io.Reader) error {
	resp, err := c.send(ctx, http.MethodPut, sandboxPath(id, "/files/archive"), url.Values{"path": {path}}, uploadBody(r), "application/x-tar")
	if err != nil {
		return err
	}
	return drain(resp)
}

// drain reads the rest of a small response body and closes it, so that the
// connection can be reused.
func drain(resp *http.Response) error {
	defer resp.Body.Close()
	_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return err
}

// formatTime formats t as RFC 3339 in UTC, and the zero time as "".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// parseTime parses an RFC 3339 time; "" is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q: %w", s, err)
	}
	return t, nil
}
