package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// Error codes sent in the "code" field of error bodies.
const (
	codeBadRequest       = "BAD_REQUEST"
	codeUnauthorized     = "UNAUTHORIZED"
	codeNotFound         = "NOT_FOUND"
	codeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	codeTimeout          = "TIMEOUT"
	codeConflict         = "CONFLICT"
	codePayloadTooLarge  = "PAYLOAD_TOO_LARGE"
	codeResourceLimit    = "RESOURCE_LIMIT"
	codeInternal         = "INTERNAL_ERROR"
	codeNotImplemented   = "NOT_IMPLEMENTED"
	codeUnavailable      = "UNAVAILABLE"
)

// Errors raised by the HTTP layer itself.
var (
	errUnauthorized     = errors.New("missing or invalid API key; send it in the X-API-Key header or as Authorization: Bearer KEY")
	errRouteNotFound    = errors.New("route not found")
	errMethodNotAllowed = errors.New("method not allowed")
	errPanic            = errors.New("handler panic")
)

// errorBody is the JSON body of every error response.
type errorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// requestError is an error found by the HTTP layer, such as a malformed body
// or query parameter. msg is written for the client and kind, one of the
// sentinels that errorStatus maps, decides the status.
type requestError struct {
	kind error
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func (e *requestError) Unwrap() error { return e.kind }

// invalidf returns a 400 error whose message is the formatted text. The text
// must name the field and describe the fix.
func invalidf(format string, args ...any) error {
	return &requestError{kind: provider.ErrInvalidArgument, msg: fmt.Sprintf(format, args...)}
}

// errorStatus maps err to the HTTP status, the error code and the message
// sent to the client. It is the only place that decides the status of an
// error.
//
// Typed errors from the provider, store and orchestrator packages are
// written for users and name the values involved, so their text is sent as
// it is. Any other error is INTERNAL_ERROR with a generic message, and its
// text stays in the log.
func errorStatus(err error) (status int, code, message string) {
	var (
		tooLarge *http.MaxBytesError
		limit    *provider.LimitError
	)
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, codePayloadTooLarge,
			fmt.Sprintf("request body is larger than the limit of %d bytes", tooLarge.Limit)
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, codeUnauthorized, err.Error()
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, codeMethodNotAllowed, err.Error()
	case isNotFound(err):
		return http.StatusNotFound, codeNotFound, err.Error()

	case errors.Is(err, provider.ErrExecTimeout):
		return http.StatusRequestTimeout, codeTimeout, err.Error()
	case isConflict(err):
		return http.StatusConflict, codeConflict, err.Error()
	case errors.As(err, &limit):
		return http.StatusTooManyRequests, codeResourceLimit, limit.Error()
	case errors.Is(err, provider.ErrResourceLimit):
		return http.StatusTooManyRequests, codeResourceLimit, err.Error()
	case errors.Is(err, provider.ErrUnavailable):
		return http.StatusServiceUnavailable, codeUnavailable, err.Error()
	case errors.Is(err, provider.ErrNotImplemented):
		return http.StatusNotImplemented, codeNotImplemented, err.Error()
	case isInvalid(err):
		return http.StatusBadRequest, codeBadRequest, err.Error()
	}
	return http.StatusInternalServerError, codeInternal,
		"internal error; the server log has the details under this request_id"
}

func isNotFound(err error) bool {
	return errors.Is(err, errRouteNotFound) ||
		errors.Is(err, provider.ErrSandboxDestroyed) ||
		errors.Is(err, provider.ErrSandboxNotFound) ||
		errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, provider.ErrProviderNotFound) ||
		errors.Is(err, provider.ErrPathNotFound) ||
		errors.Is(err, image.ErrNotFound)
}

func isConflict(err error) bool {
	return errors.Is(err, store.ErrConflict) ||
		errors.Is(err, orchestrator.ErrNotRunning) ||
		errors.Is(err, provider.ErrDirectoryNotEmpty) ||
		errors.Is(err, provider.ErrPathExists)
}

func isInvalid(err error) bool {
	return errors.Is(err, provider.ErrInvalidArgument) ||
		errors.Is(err, provider.ErrIsDirectory) ||
		errors.Is(err, provider.ErrNotDirectory) ||
		errors.Is(err, provider.ErrPathEscapes)
}

// writeError writes err as the JSON error response and logs its cause with
// the request and sandbox IDs. A request whose client has gone away gets no
// body. When the response has already started, writeError only logs.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	info := requestInfoFrom(r.Context())

	if clientGone(r) {
		s.log.Info("client closed the request",
			"request_id", info.id, "sandbox_id", info.sandboxID, "op", info.op, "error", err)
		if !info.rec.started() {
			w.WriteHeader(statusClientClosed)
		}
		return
	}

	status, body := s.logError(r, err)
	if info.rec.started() {
		return
	}
	writeJSON(w, status, body)
}

// logError maps err with errorStatus, logs it with the request and sandbox
// IDs, and returns the status and the error body to send.
func (s *server) logError(r *http.Request, err error) (int, errorBody) {
	info := requestInfoFrom(r.Context())
	status, code, message := errorStatus(err)

	level := slog.LevelWarn
	if status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request failed",
		"request_id", info.id,
		"sandbox_id", info.sandboxID,
		"op", info.op,
		"status", status,
		"code", code,
		"error", err)

	return status, errorBody{Code: code, Message: message, RequestID: info.id}
}

// clientGone reports whether the client closed the connection or cancelled
// the request. Then no response can reach the client, whatever the error.
func clientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}
