package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// ErrProtocol is returned when the peer is not an agent, or speaks a major
// protocol version this package does not know. Such errors also match
// provider.ErrUnavailable, because the sandbox cannot be used until its
// agent is replaced.
var ErrProtocol = errors.New("agent protocol mismatch")

// Error codes of the protocol. Each code that has a sentinel is matched by
// errors.Is on the client as it was on the agent.
const (
	codePathNotFound      = "path_not_found"
	codePathExists        = "path_exists"
	codeIsDirectory       = "is_directory"
	codeNotDirectory      = "not_directory"
	codeDirectoryNotEmpty = "directory_not_empty"
	codePathEscapes       = "path_escapes"
	codePermissionDenied  = "permission_denied"
	codeInvalidArgument   = "invalid_argument"
	codeTimeout           = "timeout"
	codeResourceLimit     = "resource_limit"
	codeNotImplemented    = "not_implemented"
	codeNotFound          = "not_found"
	codeUnavailable       = "unavailable"
	codeCanceled          = "canceled"
	codeInternal          = "internal"
)

// errorCodes maps codes to the errors they stand for, in the order the
// agent tests them. The file sentinels come before ErrInvalidArgument and
// fs.ErrPermission because a file error can match a system cause as well.
var errorCodes = []struct {
	code   string
	err    error
	status int
}{
	{codePathNotFound, provider.ErrPathNotFound, http.StatusNotFound},
	{codePathExists, provider.ErrPathExists, http.StatusConflict},
	{codeIsDirectory, provider.ErrIsDirectory, http.StatusConflict},
	{codeNotDirectory, provider.ErrNotDirectory, http.StatusConflict},
	{codeDirectoryNotEmpty, provider.ErrDirectoryNotEmpty, http.StatusConflict},
	{codePathEscapes, provider.ErrPathEscapes, http.StatusForbidden},
	{codeInvalidArgument, provider.ErrInvalidArgument, http.StatusBadRequest},
	{codePermissionDenied, fs.ErrPermission, http.StatusForbidden},
	{codeTimeout, provider.ErrExecTimeout, http.StatusGatewayTimeout},
	{codeResourceLimit, provider.ErrResourceLimit, http.StatusInsufficientStorage},
	{codeNotImplemented, provider.ErrNotImplemented, http.StatusNotImplemented},
	{codeNotFound, provider.ErrNotImplemented, http.StatusNotFound},
	{codeUnavailable, provider.ErrUnavailable, http.StatusServiceUnavailable},
	{codeCanceled, context.Canceled, 499},
}

// toErrorBody classifies err for the wire and returns the body with the
// HTTP status of its code. An error that came from another agent keeps its
// code.
func toErrorBody(err error) (errorBody, int) {
	body := errorBody{Code: codeInternal, Message: err.Error()}
	status := http.StatusInternalServerError

	var pathErr *provider.PathError
	if errors.As(err, &pathErr) {
		body.Op, body.Path = pathErr.Op, pathErr.Path
		body.Message = pathErr.Err.Error()
	}
	var remote *remoteError
	known := ""
	if errors.As(err, &remote) {
		known = remote.code
	}
	for _, c := range errorCodes {
		if c.code == known || known == "" && errors.Is(err, c.err) {
			body.Code, status = c.code, c.status
			break
		}
	}
	return body, status
}

// toError turns an error body from the agent back into an error that
// matches the same sentinel, wrapped in *provider.PathError when the agent's
// error was one.
func (b errorBody) toError() error {
	var sentinel error
	for _, c := range errorCodes {
		if c.code == b.Code {
			sentinel = c.err
			break
		}
	}

	var err error
	switch {
	case sentinel != nil && b.Message == sentinel.Error():
		err = sentinel
	default:
		err = &remoteError{code: b.Code, message: b.Message, sentinel: sentinel}
	}
	if b.Op != "" || b.Path != "" {
		return &provider.PathError{Op: b.Op, Path: b.Path, Err: err}
	}
	return err
}

// remoteError is an error reported by the agent. It unwraps to the
// sentinel of its code, if the code has one.
type remoteError struct {
	code     string
	message  string
	sentinel error
}

func (e *remoteError) Error() string {
	if e.message == "" {
		return "agent error " + e.code
	}
	return e.message
}

func (e *remoteError) Unwrap() error { return e.sentinel }

// unavailable wraps a transport failure of op so that it matches
// provider.ErrUnavailable and keeps the cause.
func unavailable(op string, err error) error {
	return fmt.Errorf("agent %s: %w: %w", op, provider.ErrUnavailable, err)
}

// protocolError returns an error matching ErrProtocol and
// provider.ErrUnavailable with an explanation and what to do.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", provider.ErrUnavailable, ErrProtocol, fmt.Sprintf(format, args...))
}
