package custom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// copyChunk is the buffer size for streamed downloads.
const copyChunk = 64 << 10

// Modes of new entries when a request sets none.
const (
	defaultFileMode fs.FileMode = 0o644
	defaultDirMode  fs.FileMode = 0o755
)

func (s *Server) handleReadFile(w http.ResponseWriter, r *http.Request) error {
	return s.download(w, r, contentBytes, s.p.ReadFile)
}

func (s *Server) handleReadArchive(w http.ResponseWriter, r *http.Request) error {
	return s.download(w, r, contentTar, s.p.ReadArchive)
}

// download opens a stream and copies it into the response. An error before
// the first byte becomes an error status. A read error after it cuts the
// connection without ending the chunked body, so the client never takes a
// cut stream for a whole one.
func (s *Server) download(w http.ResponseWriter, r *http.Request, contentType string,
	open func(ctx context.Context, id, path string) (io.ReadCloser, error)) error {
	id, path := r.PathValue("id"), r.URL.Query().Get("path")
	src, err := open(r.Context(), id, path)
	if err != nil {
		return err
	}
	defer src.Close()

	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, copyChunk)
	for {
		n, readErr := src.Read(buf)
		if n > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := w.Write(buf[:n]); err != nil {
				return nil // the client has gone, so no response can reach it
			}
		}
		if errors.Is(readErr, io.EOF) {
			_ = rc.SetWriteDeadline(time.Time{})
			return nil
		}
		if readErr != nil {
			s.log.Warn("download failed after it started; cutting the connection", "path", r.URL.Path,
				"sandbox_id", id, "file", path, "error", readErr)
			panic(http.ErrAbortHandler)
		}
	}
}

func (s *Server) handleWriteFile(w http.ResponseWriter, r *http.Request) error {
	path := r.URL.Query().Get("path")
	mode := defaultFileMode
	if raw := r.URL.Query().Get("mode"); raw != "" {
		var err error
		if mode, err = parseMode(raw, 0o777); err != nil {
			return &provider.PathError{Op: "write", Path: path, Err: err}
		}
	}
	if err := s.p.WriteFile(r.Context(), r.PathValue("id"), path, r.Body, mode); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleWriteArchive(w http.ResponseWriter, r *http.Request) error {
	if err := s.p.WriteArchive(r.Context(), r.PathValue("id"), r.URL.Query().Get("path"), r.Body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleStat(w http.ResponseWriter, r *http.Request) error {
	info, err := s.p.Stat(r.Context(), r.PathValue("id"), r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	return writeJSON(w, toWireInfo(info))
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) error {
	infos, err := s.p.ListDir(r.Context(), r.PathValue("id"), r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	return writeJSON(w, toWireInfos(infos))
}

func (s *Server) handleGlob(w http.ResponseWriter, r *http.Request) error {
	infos, err := s.p.Glob(r.Context(), r.PathValue("id"), r.URL.Query().Get("pattern"))
	if err != nil {
		return err
	}
	return writeJSON(w, toWireInfos(infos))
}

func (s *Server) handleMkdir(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	mode, err := modeOrDefault(req, "mkdir", defaultDirMode)
	if err != nil {
		return err
	}
	return noContent(w, s.p.Mkdir(r.Context(), r.PathValue("id"), req.Path, mode))
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	return noContent(w, s.p.Remove(r.Context(), r.PathValue("id"), req.Path, req.Recursive))
}

func (s *Server) handleMove(w http.ResponseWriter, r *http.Request) error {
	var req moveRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	return noContent(w, s.p.Move(r.Context(), r.PathValue("id"), req.OldPath, req.NewPath))
}

func (s *Server) handleChmod(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Mode == "" {
		return &provider.PathError{Op: "chmod", Path: req.Path, Err: fmt.Errorf("mode is required: %w", provider.ErrInvalidArgument)}
	}
	mode, err := modeOrDefault(req, "chmod", 0)
	if err != nil {
		return err
	}
	return noContent(w, s.p.Chmod(r.Context(), r.PathValue("id"), req.Path, mode))
}

// modeOrDefault parses req.Mode, permission bits only, or returns def when
// it is empty.
func modeOrDefault(req pathRequest, op string, def fs.FileMode) (fs.FileMode, error) {
	if req.Mode == "" {
		return def, nil
	}
	mode, err := parseMode(req.Mode, 0o777)
	if err != nil {
		return 0, &provider.PathError{Op: op, Path: req.Path, Err: err}
	}
	return mode, nil
}

// noContent writes 204 when err is nil and returns err otherwise.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
