package provider

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every provider. Providers wrap them with %w so
// that callers can match with errors.Is; the HTTP layer maps each one to a
// status code in a single place.
var (
	// ErrSandboxNotFound is returned when the provider has no runtime for
	// the sandbox ID.
	ErrSandboxNotFound = errors.New("sandbox not found")

	// ErrSandboxDestroyed is returned by calls on a sandbox that was
	// destroyed. The HTTP layer reports it as 404 with a message saying so.
	ErrSandboxDestroyed = errors.New("sandbox destroyed")

	// ErrProviderNotFound is returned when a request names a provider that is
	// not registered.
	ErrProviderNotFound = errors.New("provider not found")

	// ErrUnavailable is returned when the provider's runtime (an engine, a
	// daemon, a host feature) cannot be reached or used right now.
	ErrUnavailable = errors.New("provider unavailable")

	// ErrExecTimeout is returned when a command ran past its timeout and was
	// killed together with its process tree.
	ErrExecTimeout = errors.New("exec timeout")

	// ErrResourceLimit is returned when a request exceeds a configured or
	// runtime limit (memory, CPUs, live sandboxes, sizes).
	ErrResourceLimit = errors.New("resource limit exceeded")

	// ErrInvalidArgument is returned for malformed input, such as a bad path,
	// mode or image name.
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrNotImplemented is returned by a provider for an operation it does
	// not support.
	ErrNotImplemented = errors.New("not implemented")
)

// File errors. Every provider returns these (wrapped) from its file
// operations so that the same condition gives the same status on every
// provider.
var (
	// ErrPathNotFound: the path does not exist inside the sandbox.
	ErrPathNotFound = errors.New("path not found")

	// ErrPathExists: the operation needs the path to be absent.
	ErrPathExists = errors.New("path already exists")

	// ErrIsDirectory: a file operation was given a directory.
	ErrIsDirectory = errors.New("path is a directory")

	// ErrNotDirectory: a directory operation was given a non-directory.
	ErrNotDirectory = errors.New("path is not a directory")

	// ErrDirectoryNotEmpty: a non-recursive delete of a non-empty directory.
	ErrDirectoryNotEmpty = errors.New("directory not empty")

	// ErrPathEscapes: the path, or a symlink along it, points outside the
	// sandbox's root filesystem.
	ErrPathEscapes = errors.New("path escapes the sandbox")
)

// PathError records a failed file operation on a sandbox path. Err is one of
// the sentinels above or a lower-level cause.
type PathError struct {
	Op   string // operation, such as "stat" or "write"
	Path string // path inside the sandbox
	Err  error
}

func (e *PathError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Op, e.Path, e.Err)
}

func (e *PathError) Unwrap() error { return e.Err }

// LimitError names the limit a request exceeded. It unwraps to
// ErrResourceLimit.
type LimitError struct {
	Limit string // name of the limit, such as "max_memory_mb"
	Value string // the configured maximum
	Got   string // the requested value, empty when not applicable
}

func (e *LimitError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("resource limit %s=%s reached", e.Limit, e.Value)
	}
	return fmt.Sprintf("requested %s exceeds limit %s=%s", e.Got, e.Limit, e.Value)
}

func (e *LimitError) Unwrap() error { return ErrResourceLimit }
