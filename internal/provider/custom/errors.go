package custom

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// ErrProtocol is returned when the backend is not a provider server, or
// speaks another major protocol version. Such errors also match
// provider.ErrUnavailable, because the provider cannot be used until the
// backend or base_url is fixed.
var ErrProtocol = errors.New("custom provider protocol mismatch")

// Error codes of the protocol.
const (
	codeSandboxNotFound   = "sandbox_not_found"
	codeSandboxDestroyed  = "sandbox_destroyed"
	codePathNotFound      = "path_not_found"
	codePathExists        = "path_exists"
	codeIsDirectory       = "is_directory"
	codeNotDirectory      = "not_directory"
	codeDirectoryNotEmpty = "directory_not_empty"
	codePathEscapes       = "path_escapes"
	codeInvalidArgument   = "invalid_argument"
	codePermissionDenied  = "permission_denied"
	codeTimeout           = "timeout"
	codeResourceLimit     = "resource_limit"
	codeNotImplemented    = "not_implemented"
	codeUnavailable       = "unavailable"
	codeUnauthorized      = "unauthorized"
	codeInternal          = "internal"
)

// errorCodes maps codes to the sentinels they stand for and their HTTP
// status, in the order the server tests them. An error may match several
// sentinels, and the first match decides its code. So a file call cut
// short by Destroy is sandbox_destroyed rather than the file error it
// caused, and a file error wins over the system cause it also wraps.
var errorCodes = []struct {
	code   string
	err    error
	status int
	file   bool // a file condition, sent with the op and path of its *provider.PathError
}{
	{codeSandboxDestroyed, provider.ErrSandboxDestroyed, http.StatusGone, false},
	{codePathNotFound, provider.ErrPathNotFound, http.StatusNotFound, true},
	{codePathExists, provider.ErrPathExists, http.StatusConflict, true},
	{codeDirectoryNotEmpty, provider.ErrDirectoryNotEmpty, http.StatusConflict, true},
	{codeIsDirectory, provider.ErrIsDirectory, http.StatusBadRequest, true},
	{codeNotDirectory, provider.ErrNotDirectory, http.StatusBadRequest, true},
	{codePathEscapes, provider.ErrPathEscapes, http.StatusBadRequest, true},
	{codeSandboxNotFound, provider.ErrSandboxNotFound, http.StatusNotFound, false},
	{codeTimeout, provider.ErrExecTimeout, http.StatusRequestTimeout, false},
	{codeResourceLimit, provider.ErrResourceLimit, http.StatusTooManyRequests, false},
	{codeUnavailable, provider.ErrUnavailable, http.StatusServiceUnavailable, false},
	{codeNotImplemented, provider.ErrNotImplemented, http.StatusNotImplemented, false},
	{codeInvalidArgument, provider.ErrInvalidArgument, http.StatusBadRequest, true},
	{codePermissionDenied, fs.ErrPermission, http.StatusForbidden, true},
	{codeUnauthorized, errUnauthorized, http.StatusUnauthorized, false},
}

// errUnauthorized is the server's error for a call without the right
// token.
var errUnauthorized = errors.New("missing or invalid token; send it as Authorization: Bearer TOKEN")

// errShuttingDown is the cause of the calls that the server stops when it
// shuts down.
var errShuttingDown = errors.New("provider server is shutting down")

// toErrorBody classifies err for the wire and returns the body with the
// HTTP status of its code. An error with no code is "internal" with 500.
func toErrorBody(err error) (errorBody, int) {
	body := errorBody{Code: codeInternal, Message: err.Error()}
	status := http.StatusInternalServerError
	file := true
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			body.Code, status, file = c.code, c.status, c.file
			break
		}
	}

	var pathErr *provider.PathError
	if file && errors.As(err, &pathErr) {
		body.Op, body.Path = pathErr.Op, pathErr.Path
		body.Message = pathErr.Err.Error()
	}
	var limitErr *provider.LimitError
	if errors.As(err, &limitErr) {
		body.Limit = &limitBody{Name: limitErr.Limit, Value: limitErr.Value, Got: limitErr.Got}
	}
	return body, status
}

// toError turns an error body from the server back into an error that
// matches the same sentinel: a *provider.PathError when the server's error
// was one, a *provider.LimitError when it named a limit.
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
	case b.Limit != nil:
		err = &provider.LimitError{Limit: b.Limit.Name, Value: b.Limit.Value, Got: b.Limit.Got}
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

// remoteError is an error reported by the backend. It unwraps to the
// sentinel of its code, if the code has one.
type remoteError struct {
	code     string
	message  string
	sentinel error
}

func (e *remoteError) Error() string {
	if e.message == "" {
		return "backend error " + e.code
	}
	return e.message
}

func (e *remoteError) Unwrap() error { return e.sentinel }

// callError returns the error of a call that failed in transit. When the
// caller's ctx has ended, that is the wrapped ctx.Err(). Otherwise it is an
// error matching provider.ErrUnavailable that names the backend and the
// cause, which is the cancel cause of callCtx when a watchdog or deadline
// of the client cut the call.
func (p *Provider) callError(ctx, callCtx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("custom provider: %s: %w", op, ctxErr)
	}
	if cause := context.Cause(callCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return p.unavailable(op, err)
}

// unavailable wraps cause so that it matches provider.ErrUnavailable and
// names the backend.
func (p *Provider) unavailable(op string, cause error) error {
	return fmt.Errorf("custom provider: %s on backend %s: %w: %w", op, p.base, cause, provider.ErrUnavailable)
}
