// Package provider defines the contract between the sandbox manager and the
// isolation technologies (Docker, native namespaces, microVMs, PRoot, remote
// HTTP backends, the mock), the typed errors every provider returns, and the
// data types that cross the boundary.
//
// A provider knows nothing of the HTTP layer, the store or the registry. The
// manager assigns sandbox IDs, resolves paths to absolute sandbox paths and
// enforces admission limits before it calls a provider. The conformance
// suite in the conformance subpackage checks every provider against this
// contract; docs/provider-contract.md describes it for people.
package provider

import (
	"context"
	"io"
	"io/fs"
	"time"
)

// Provider is one isolation technology. All methods are safe for concurrent
// use, including concurrent calls on the same sandbox.
//
// Sandbox IDs are assigned by the manager. Every method that takes an ID
// returns an error wrapping ErrSandboxNotFound when the provider has no
// runtime for it, and ErrUnavailable when the underlying runtime cannot be
// reached.
type Provider interface {
	// Name returns the registry name, such as "docker" or "mock".
	Name() string

	// Capabilities reports what this provider isolates and which optional
	// interfaces it implements.
	Capabilities() Capabilities

	// Health returns nil when the provider can spawn sandboxes now, and an
	// error wrapping ErrUnavailable that says what is missing otherwise.
	Health(ctx context.Context) error

	// Spawn creates and starts the runtime for spec.ID and returns once it
	// accepts Exec and file calls. On failure it leaves nothing behind. The
	// sandbox must outlive ctx: ctx bounds only the creation.
	Spawn(ctx context.Context, spec SpawnSpec) error

	// Recover re-attaches to a runtime that existed before a restart of the
	// server. It returns nil when the runtime is live and usable, an error
	// wrapping ErrSandboxNotFound when it is gone, and one wrapping
	// ErrUnavailable when that cannot be told now. Recover is idempotent.
	Recover(ctx context.Context, id string) error

	// Destroy stops the runtime and removes everything it owns on the host.
	// Destroying a runtime that does not exist returns nil, so Destroy is
	// idempotent.
	Destroy(ctx context.Context, id string) error

	// Exec runs one command and returns when it exits, times out, or ctx is
	// done. Output goes to out as it is produced; see ExecRequest for the
	// timeout, stdin and output cap rules. A non-zero exit is a result, not
	// an error. A timeout is a result with TimedOut set. When ctx is done the
	// whole process tree is killed and ctx.Err() is returned (wrapped).
	Exec(ctx context.Context, id string, req ExecRequest, out OutputFunc) (ExecResult, error)

	// Files returns the file operations of the sandbox. Paths given to
	// them are absolute, clean paths inside the sandbox; the provider must
	// resolve them inside the sandbox's root and never follow a symlink out
	// of it.
	Files
}

// Files is the file API of a sandbox. Every method returns *PathError
// wrapping one of the file sentinels (ErrPathNotFound, ErrIsDirectory, ...)
// for conditions a caller can fix.
type Files interface {
	// ReadFile opens a regular file for streaming. The caller closes it.
	ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error)

	// WriteFile streams r into path, creating parent directories, and
	// replaces any existing file atomically: readers see the old content or
	// the new, never a mix. mode is the permission bits of the new file.
	WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error

	// Stat describes path without following a final symlink.
	Stat(ctx context.Context, id, path string) (FileInfo, error)

	// ListDir lists the entries of a directory sorted by name.
	ListDir(ctx context.Context, id, path string) ([]FileInfo, error)

	// Mkdir creates a directory and its missing parents. An existing
	// directory is not an error.
	Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error

	// Remove deletes a file, a symlink or an empty directory; with
	// recursive it deletes a directory tree. A non-empty directory without
	// recursive gives ErrDirectoryNotEmpty.
	Remove(ctx context.Context, id, path string, recursive bool) error

	// Move renames oldPath to newPath, creating newPath's parents and
	// replacing an existing file at newPath.
	Move(ctx context.Context, id, oldPath, newPath string) error

	// Chmod sets the permission bits of path.
	Chmod(ctx context.Context, id, path string, mode fs.FileMode) error

	// Glob returns the entries matching an absolute pattern in the syntax
	// of path.Match, where a "**" element matches zero or more directories.
	// Results are sorted by path; no match is an empty result, not an error.
	Glob(ctx context.Context, id, pattern string) ([]FileInfo, error)

	// ReadArchive streams the directory at path as a tar archive whose
	// entry names are relative to path. The caller closes it.
	ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error)

	// WriteArchive extracts the tar stream r into the directory at path,
	// creating it when missing. Entries that would land outside path are
	// rejected with ErrPathEscapes.
	WriteArchive(ctx context.Context, id, path string, r io.Reader) error
}

// SpawnSpec is what the manager asks a provider to create.
type SpawnSpec struct {
	ID       string            // sandbox ID, assigned by the manager
	Image    string            // image reference; providers document their default
	Runtime  string            // OCI runtime or variant, such as "runsc"; empty for the default
	MemoryMB int               // memory limit in MiB
	VCPUs    int               // CPU limit in whole CPUs
	Network  bool              // true to give the sandbox network access
	Env      map[string]string // environment applied to every command
	OwnerID  string            // owner, recorded as a label for adoption
	Metadata map[string]string // user metadata, recorded as labels for adoption
}

// Stream names an output stream of a command.
type Stream string

// The output streams of a command.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// OutputFunc receives a command's output as it is produced. Calls are never
// concurrent and arrive in the order the command wrote them within each
// stream. The callee must not keep p after it returns.
type OutputFunc func(stream Stream, p []byte)

// ExecRequest is one command to run inside a sandbox.
type ExecRequest struct {
	// Argv is the program and its arguments; Argv[0] is looked up in PATH
	// inside the sandbox. Shell mode is expanded by the manager into
	// ["sh", "-c", script] before it reaches the provider.
	Argv []string

	// Env is added to the sandbox environment for this command.
	Env map[string]string

	// Workdir is the absolute working directory inside the sandbox. The
	// provider creates it when missing.
	Workdir string

	// Stdin is the command's standard input. Nil or empty gives EOF at once;
	// stdin is never left open.
	Stdin []byte

	// Timeout bounds the command's run time. When it expires the provider
	// kills the whole process tree, including descendants that called
	// setsid, and returns a result with TimedOut set. Zero means no timeout
	// beyond ctx.
	Timeout time.Duration

	// MaxOutputBytes caps the bytes delivered per stream. Output past the cap
	// is discarded and the result has Truncated set. Zero means no cap.
	MaxOutputBytes int64
}

// Exit reasons reported in ExecResult.ExitReason when a command was killed.
const (
	ExitTimeout = "timeout" // killed at the exec timeout
	ExitOOM     = "oom"     // killed by the sandbox memory limit
	ExitPids    = "pids"    // failed because the pids limit stopped forks
	ExitSignal  = "signal"  // killed by another signal
)

// ExecResult is the outcome of a command that ran.
type ExecResult struct {
	ExitCode   int           // exit status; 128+N when killed by signal N
	Duration   time.Duration // wall time from start to exit
	TimedOut   bool          // the timeout killed the command
	Truncated  bool          // output was cut at MaxOutputBytes on some stream
	ExitReason string        // one of the Exit* constants when killed, else empty
}

// FileType names the kind of a file system entry.
type FileType string

// File system entry kinds.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeOther   FileType = "other"
)

// FileInfo describes one entry of a sandbox's file system.
type FileInfo struct {
	Name       string      // base name
	Path       string      // absolute path inside the sandbox
	Size       int64       // size in bytes
	Mode       fs.FileMode // permission bits and type bits
	Type       FileType    // entry kind
	ModTime    time.Time   // last modification
	LinkTarget string      // symlink target as stored, for symlinks
}

// IsDir reports whether the entry is a directory.
func (fi FileInfo) IsDir() bool { return fi.Type == TypeDir }

// Capabilities describes a provider as data, for /health, the CLI and
// scheduling.
type Capabilities struct {
	Isolation   string   `json:"isolation"`   // such as "container", "namespaces", "none"
	Isolated    bool     `json:"isolated"`    // false when sandboxes run directly on the host
	Network     bool     `json:"network"`     // can give sandboxes network access
	Runtimes    []string `json:"runtimes"`    // selectable runtimes, first is the default
	Inventory   bool     `json:"inventory"`   // implements Inventory (adoption)
	Stats       bool     `json:"stats"`       // implements StatsReader
	Logs        bool     `json:"logs"`        // implements LogReader
	Description string   `json:"description"` // one sentence for people
}

// Inventory is implemented by providers that can list the runtimes they
// created, so that reconcile can adopt runtimes missing from the store.
type Inventory interface {
	ListRuntimes(ctx context.Context) ([]RuntimeInfo, error)
}

// RuntimeInfo describes a runtime found by ListRuntimes, from the labels the
// provider recorded at spawn.
type RuntimeInfo struct {
	ID        string
	Image     string
	MemoryMB  int
	VCPUs     int
	OwnerID   string
	Metadata  map[string]string
	CreatedAt time.Time
	Running   bool
}

// StatsReader is implemented by providers that can report resource use.
type StatsReader interface {
	Stats(ctx context.Context, id string) (Stats, error)
}

// Stats is a sample of a sandbox's resource use.
type Stats struct {
	CPUPercent       float64 `json:"cpu_percent"`
	MemoryBytes      int64   `json:"memory_bytes"`
	MemoryLimitBytes int64   `json:"memory_limit_bytes"`
	Pids             int     `json:"pids"`
}

// LogReader is implemented by providers that keep a console log per sandbox.
type LogReader interface {
	// Logs returns up to the last lines lines of the sandbox's log; lines
	// <= 0 means all of it.
	Logs(ctx context.Context, id string, lines int) ([]string, error)
}
