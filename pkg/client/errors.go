package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Sentinel errors for matching an *APIError with errors.Is. Each matches by
// the error code in the response body and, for codes this client does not
// know, by the HTTP status.
var (
	// ErrNotFound: the sandbox, file or route does not exist, or the
	// sandbox was destroyed (404, 410).
	ErrNotFound = errors.New("not found")

	// ErrTimeout: a command ran past its timeout and was killed (408).
	// Exec and ExecStream return it together with the command's result.
	ErrTimeout = errors.New("timed out")

	// ErrConflict: the request conflicts with the current state, such as a
	// call on a sandbox that is not running (409).
	ErrConflict = errors.New("conflict")

	// ErrUnauthorized: the API key is missing or wrong (401, 403).
	ErrUnauthorized = errors.New("unauthorized")

	// ErrResourceLimit: the request exceeds a configured limit such as
	// max_memory_mb, max_sandboxes or the upload size (413, 429).
	ErrResourceLimit = errors.New("resource limit exceeded")

	// ErrUnavailable: the provider or the server cannot serve the request
	// now (502, 503, 504).
	ErrUnavailable = errors.New("unavailable")

	// ErrBadRequest: the request is malformed or names an invalid value
	// (400, 405, 415, 422).
	ErrBadRequest = errors.New("bad request")
)

// APIError is an error response from the server.
type APIError struct {
	StatusCode int    // HTTP status
	Code       string // machine-readable code, such as "NOT_FOUND"
	Message    string // human-readable message
	RequestID  string // server-side request ID, for matching server logs
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s", e.Code)
	} else {
		fmt.Fprintf(&b, " (HTTP %d", e.StatusCode)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, ", request_id %s", e.RequestID)
	}
	b.WriteString(")")
	return b.String()
}

// sentinelCodes maps error codes to the sentinel they match.
var sentinelCodes = map[string]error{
	"NOT_FOUND":            ErrNotFound,
	"SANDBOX_NOT_FOUND":    ErrNotFound,
	"SANDBOX_DESTROYED":    ErrNotFound,
	"PATH_NOT_FOUND":       ErrNotFound,
	"PROVIDER_NOT_FOUND":   ErrNotFound,
	"ROUTE_NOT_FOUND":      ErrNotFound,
	"TIMEOUT":              ErrTimeout,
	"CONFLICT":             ErrConflict,
	"PATH_EXISTS":          ErrConflict,
	"DIRECTORY_NOT_EMPTY":  ErrConflict,
	"UNAUTHORIZED":         ErrUnauthorized,
	"FORBIDDEN":            ErrUnauthorized,
	"RESOURCE_LIMIT":       ErrResourceLimit,
	"PAYLOAD_TOO_LARGE":    ErrResourceLimit,
	"UNAVAILABLE":          ErrUnavailable,
	"PROVIDER_UNAVAILABLE": ErrUnavailable,
	"BAD_REQUEST":          ErrBadRequest,
	"INVALID_ARGUMENT":     ErrBadRequest,
	"INVALID_REQUEST":      ErrBadRequest,
	"VALIDATION_ERROR":     ErrBadRequest,
	"METHOD_NOT_ALLOWED":   ErrBadRequest,
}

// sentinelStatus maps HTTP statuses to the sentinel they match, for codes
// missing from sentinelCodes.
var sentinelStatus = map[int]error{
	http.StatusNotFound:              ErrNotFound,
	http.StatusGone:                  ErrNotFound,
	http.StatusRequestTimeout:        ErrTimeout,
	http.StatusConflict:              ErrConflict,
	http.StatusUnauthorized:          ErrUnauthorized,
	http.StatusForbidden:             ErrUnauthorized,
	http.StatusRequestEntityTooLarge: ErrResourceLimit,
	http.StatusTooManyRequests:       ErrResourceLimit,
	http.StatusBadGateway:            ErrUnavailable,
	http.StatusServiceUnavailable:    ErrUnavailable,
	http.StatusGatewayTimeout:        ErrUnavailable,
	http.StatusBadRequest:            ErrBadRequest,
	http.StatusMethodNotAllowed:      ErrBadRequest,
	http.StatusUnsupportedMediaType:  ErrBadRequest,
	http.StatusUnprocessableEntity:   ErrBadRequest,
}

// Is reports whether target is the sentinel for e's code, or for its HTTP
// status when the code is missing from sentinelCodes.
func (e *APIError) Is(target error) bool {
	if sentinel, ok := sentinelCodes[e.Code]; ok {
		return sentinel == target
	}
	return sentinelStatus[e.StatusCode] == target
}

// errorBody is the JSON error body: {"code","message","request_id"}.
type errorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// readAPIError builds an *APIError from a non-2xx response. A body that is
// not a JSON error, such as a proxy's HTML page, becomes the message.
func readAPIError(resp *http.Response) *APIError {
	e := &APIError{
		StatusCode: resp.StatusCode,
		RequestID:  resp.Header.Get("X-Request-Id"),
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))

	var body errorBody
	if err := json.Unmarshal(raw, &body); err == nil && (body.Code != "" || body.Message != "") {
		e.Code, e.Message = body.Code, body.Message
		if body.RequestID != "" {
			e.RequestID = body.RequestID
		}
		return e
	}

	e.Message = http.StatusText(resp.StatusCode)
	if text := strings.TrimSpace(string(raw)); text != "" {
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		e.Message += ": " + text
	}
	return e
}
