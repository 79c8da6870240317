package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// copyChunk is the buffer size for streamed downloads.
const copyChunk = 64 << 10

// handleContent serves GET (download) and PUT (upload) of one file.
func (s *Server) handleContent(w http.ResponseWriter, r *http.Request) error {
	path := r.URL.Query().Get("path")
	switch r.Method {
	case http.MethodGet:
		return s.download(w, r, contentBytes, func(ctx context.Context) (io.ReadCloser, error) {
			return s.files.ReadFile(ctx, path)
		})
	case http.MethodPut:
		mode, err := parseMode(r.URL.Query().Get("mode"))
		if err != nil {
			return &provider.PathError{Op: "write", Path: path, Err: err}
		}
		if err := s.files.WriteFile(r.Context(), path, r.Body, mode); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodError(r, http.MethodGet, http.MethodPut)
}

// handleArchive serves GET (tar download) and PUT (tar upload) of a
// directory.
func (s *Server) handleArchive(w http.ResponseWriter, r *http.Request) error {
	path := r.URL.Query().Get("path")
	switch r.Method {
	case http.MethodGet:
		return s.download(w, r, contentTar, func(ctx context.Context) (io.ReadCloser, error) {
			return s.files.ReadArchive(ctx, path)
		})
	case http.MethodPut:
		if err := s.files.WriteArchive(r.Context(), path, r.Body); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodError(r, http.MethodGet, http.MethodPut)
}

// download opens a stream and copies it into the response. An error before
// the first byte becomes an error status. A read error after it goes into
// the error trailer, so the client never takes a cut stream for a whole one.
func (s *Server) download(w http.ResponseWriter, r *http.Request, contentType string, open func(context.Context) (io.ReadCloser, error)) error {
	src, err := open(r.Context())
	if err != nil {
		return err
	}
	defer src.Close()

	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Trailer", trailerError)
	w.WriteHeader(http.StatusOK)

	buf := make([]byte, copyChunk)
	for {
		n, readErr := src.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return nil // the client has gone, so no response can reach it
			}
		}
		if errors.Is(readErr, io.EOF) {
			return nil
		}
		if readErr != nil {
			body, _ := toErrorBody(s.callError(r, readErr))
			w.Header().Set(trailerError, string(mustJSON(body)))
			s.log.Warn("download failed after it started", "op", r.URL.Path, "path", r.URL.Query().Get("path"), "error", readErr)
			return nil
		}
	}
}

func (s *Server) handleStat(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	info, err := s.files.Stat(r.Context(), req.Path)
	if err != nil {
		return err
	}
	writeJSON(w, toWireInfo(info))
	return nil
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	infos, err := s.files.ListDir(r.Context(), req.Path)
	if err != nil {
		return err
	}
	writeJSON(w, toWireInfos(infos))
	return nil
}

func (s *Server) handleMkdir(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	return noContent(w, s.files.Mkdir(r.Context(), req.Path, fs.FileMode(req.Mode)))
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	return noContent(w, s.files.Remove(r.Context(), req.Path, req.Recursive))
}

func (s *Server) handleMove(w http.ResponseWriter, r *http.Request) error {
	var req moveRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	return noContent(w, s.files.Move(r.Context(), req.OldPath, req.NewPath))
}

func (s *Server) handleChmod(w http.ResponseWriter, r *http.Request) error {
	var req pathRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	return noContent(w, s.files.Chmod(r.Context(), req.Path, fs.FileMode(req.Mode)))
}

func (s *Server) handleGlob(w http.ResponseWriter, r *http.Request) error {
	var req globRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	infos, err := s.files.Glob(r.Context(), req.Pattern)
	if err != nil {
		return err
	}
	writeJSON(w, toWireInfos(infos))
	return nil
}

// noContent writes 204 No Content unless err is set, which it returns.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parseMode parses the decimal fs.FileMode of an upload. Empty means 0644.
func parseMode(s string) (fs.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: mode %q is not a decimal number", provider.ErrInvalidArgument, s)
	}
	return fs.FileMode(n), nil
}

func methodError(r *http.Request, methods ...string) error {
	return fmt.Errorf("%w: %s needs method %v, got %s", provider.ErrInvalidArgument, r.URL.Path, methods, r.Method)
}
