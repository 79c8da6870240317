package api

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// Default permission bits of files and directories that a request creates
// without a mode.
const (
	defaultFileMode fs.FileMode = 0o644
	defaultDirMode  fs.FileMode = 0o755
)

// copyBufferSize is the chunk size of file and archive downloads.
const copyBufferSize = 32 << 10

// writtenJSON is the body of a successful file upload.
type writtenJSON struct {
	Path string `json:"path"`
	Size int64  `json:"size"` // bytes written
}

// sandboxFiles returns the file API of the request's sandbox.
func (s *server) sandboxFiles(r *http.Request) (*orchestrator.SandboxFiles, error) {
	return s.manager.Files(r.Context(), r.PathValue("id"))
}

// requiredQuery returns the query parameter name, or a 400 error when it is
// missing or empty.
func requiredQuery(r *http.Request, name string) (string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return "", invalidf("%s query parameter is required, such as ?%s=/workspace/file.txt", name, name)
	}
	return v, nil
}

// writeFileRequest is the body of POST /files.
type writeFileRequest struct {
	Path     string `json:"path"`
	Content  string `json:"content"`
	Mode     string `json:"mode"`     // octal permission string, "0644" when empty
	Encoding string `json:"encoding"` // "" or "utf-8" for text, "base64" for bytes
}

// writeFileJSON writes a file whose content is in the JSON body. The write
// is atomic: readers see the old content or the new, never a mix.
func (s *server) writeFileJSON(w http.ResponseWriter, r *http.Request) error {
	var req writeFileRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Path == "" {
		return invalidf("path is required")
	}
	mode, err := parseMode("mode", req.Mode, defaultFileMode)
	if err != nil {
		return err
	}
	content, err := decodeContent(req.Content, req.Encoding)
	if err != nil {
		return err
	}

	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	if err := files.WriteFile(r.Context(), req.Path, bytes.NewReader(content), mode); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, writtenJSON{Path: req.Path, Size: int64(len(content))})
	return nil
}

func decodeContent(content, encoding string) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "", "utf-8", "utf8":
		return []byte(content), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			return nil, invalidf("content is not valid base64 (%v); encode it with standard base64 and padding", err)
		}
		return b, nil
	}
	return nil, invalidf("encoding must be \"utf-8\" or \"base64\", got %q", encoding)
}

// uploadFile streams the raw request body into a file, atomically, without
// buffering it. The body is limited to the upload limit.
func (s *server) uploadFile(w http.ResponseWriter, r *http.Request) error {
	path, err := requiredQuery(r, "path")
	if err != nil {
		return err
	}
	mode, err := parseMode("mode", r.URL.Query().Get("mode"), defaultFileMode)
	if err != nil {
		return err
	}
	if err := s.checkUploadSize(r); err != nil {
		return err
	}

	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	body := &countingReader{r: r.Body}
	if err := files.WriteFile(r.Context(), path, body, mode); err != nil {
		return body.cause(err)
	}
	writeJSON(w, http.StatusOK, writtenJSON{Path: path, Size: body.n})
	return nil
}

// checkUploadSize rejects a body whose declared length is over the upload
// limit before any of it is read. Bodies without a length are cut at the
// limit while they stream.
func (s *server) checkUploadSize(r *http.Request) error {
	limit := s.limits.MaxUploadBytes
	if limit > 0 && r.ContentLength > limit {
		return &http.MaxBytesError{Limit: limit}
	}
	return nil
}

// countingReader counts the bytes read and keeps the first read error, so
// that an oversized or broken upload is reported as such even when the
// provider does not wrap the reader's error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// cause returns the body's read error when the body failed, else err.
func (c *countingReader) cause(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(c.err, &tooLarge) && !errors.As(err, &tooLarge) {
		return c.err
	}
	return err
}

// readFile streams a file's bytes. Content-Length is the size of the file
// when it was opened, so bytes appended later are not sent.
func (s *server) readFile(w http.ResponseWriter, r *http.Request) error {
	path, err := requiredQuery(r, "path")
	if err != nil {
		return err
	}
	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}

	rc, err := files.ReadFile(r.Context(), path)
	if err != nil {
		return err
	}
	defer rc.Close()

	return s.sendStream(w, r, rc, "application/octet-stream", s.openedSize(r, files, path, rc))
}

// openedSize returns the size of the file behind rc: from the open handle
// when it can report it, else from a Stat of the path. It returns -1 when
// neither gives the size of a regular file.
func (s *server) openedSize(r *http.Request, files *orchestrator.SandboxFiles, path string, rc io.Reader) int64 {
	if f, ok := rc.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size()
		}
	}
	fi, err := files.Stat(r.Context(), path)
	if err != nil || fi.Type != provider.TypeFile {
		return -1
	}
	return fi.Size
}

// sendStream copies src to the client as the response body. The status
// line waits for the first read, so that an error on it still gets a JSON
// error response. A size of 0 or more sets Content-Length and sends at most
// size bytes. A read error after the status line aborts the connection, so
// the client cannot take the partial body for a complete one.
func (s *server) sendStream(w http.ResponseWriter, r *http.Request, src io.Reader, contentType string, size int64) error {
	if size >= 0 {
		src = io.LimitReader(src, size)
	}
	buf := make([]byte, copyBufferSize)
	n, err := readSome(src, buf)
	if err != nil && err != io.EOF {
		return err
	}

	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	for {
		if n > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, werr := w.Write(buf[:n]); werr != nil {
				// The client went away, so no error can reach it.
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			info := requestInfoFrom(r.Context())
			s.log.Warn("download aborted by a read error",
				"request_id", info.id, "sandbox_id", info.sandboxID, "op", info.op, "error", err)
			panic(http.ErrAbortHandler)
		}
		n, err = src.Read(buf)
	}
}

// readSome reads into buf until it gets at least one byte or an error.
func readSome(r io.Reader, buf []byte) (int, error) {
	for {
		n, err := r.Read(buf)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// removeFile deletes a file, a symlink or an empty directory, or with
// ?recursive=true a directory tree.
func (s *server) removeFile(w http.ResponseWriter, r *http.Request) error {
	path, err := requiredQuery(r, "path")
	if err != nil {
		return err
	}
	recursive := false
	if v := r.URL.Query().Get("recursive"); v != "" {
		recursive, err = strconv.ParseBool(v)
		if err != nil {
			return invalidf("recursive must be true or false, got %q", v)
		}
	}

	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	if err := files.Remove(r.Context(), path, recursive); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "deleted", "path": path})
	return nil
}

// listDir lists a directory's entries sorted by name.
func (s *server) listDir(w http.ResponseWriter, r *http.Request) error {
	path, err := requiredQuery(r, "path")
	if err != nil {
		return err
	}
	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	infos, err := files.ListDir(r.Context(), path)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toFileListJSON(infos))
	return nil
}

// statFile describes one entry without following a final symlink.
func (s *server) statFile(w http.ResponseWriter, r *http.Request) error {
	path, err := requiredQuery(r, "path")
	if err != nil {
		return err
	}
	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	info, err := files.Stat(r.Context(), path)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toFileJSON(info))
	return nil
}

// globFiles returns the entries matching ?pattern=, sorted by path.
func (s *server) globFiles(w http.ResponseWriter, r *http.Request) error {
	pattern := r.URL.Query().Get("pattern")
	if pattern == "" {
		return invalidf("pattern query parameter is required, such as ?pattern=/workspace/**/*.go")
	}
	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	infos, err := files.Glob(r.Context(), pattern)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toFileListJSON(infos))
	return nil
}

// moveRequest is the body of POST /files/move.
type moveRequest struct {
	OldPath string `json:"old_path"`
	NewPath string `json:"new_path"`
}

// moveFile renames an entry, replacing a file at the new path.
func (s *server) moveFile(w http.ResponseWriter, r *http.Request) error {
	var req moveRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.OldPath == "" {
		return invalidf("old_path is required")
	}
	if req.NewPath == "" {
		return invalidf("new_path is required")
	}

	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	if err := files.Move(r.Context(), req.OldPath, req.NewPath); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "moved", "old_path": req.OldPath, "new_path": req.NewPath})
	return nil
}

// pathModeRequest is the body of POST /files/chmod and /files/mkdir.
type pathModeRequest struct {
	Path string `json:"path"`
	Mode string `json:"mode"` // octal permission string
}

// chmodFile sets the permission bits of an entry.
func (s *server) chmodFile(w http.ResponseWriter, r *http.Request) error {
	var req pathModeRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Path == "" {
		return invalidf("path is required")
	}
	if req.Mode == "" {
		return invalidf("mode is required, such as \"0644\"")
	}
	mode, err := parseMode("mode", req.Mode, 0)
	if err != nil {
		return err
	}

	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	if err := files.Chmod(r.Context(), req.Path, mode); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "changed", "path": req.Path, "mode": formatMode(mode)})
	return nil
}

// makeDir creates a directory and its missing parents. An existing
// directory is not an error. The mode defaults to 0755.
func (s *server) makeDir(w http.ResponseWriter, r *http.Request) error {
	var req pathModeRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Path == "" {
		return invalidf("path is required")
	}
	mode, err := parseMode("mode", req.Mode, defaultDirMode)
	if err != nil {
		return err
	}

	files, err := s.sandboxFiles(r)
	if err != nil {
		return err
	}
	if err := files.Mkdir(r.Context(), req.Path, mode); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "created", "path": req.Path})
	return nil
}
