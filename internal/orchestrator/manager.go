// Package orchestrator is the sandbox manager: admission, the lifecycle
// state machine, persistence through the store, the TTL reaper, reconcile
// between store and providers, and lifecycle events. The HTTP layer calls
// it; it calls providers through the registry.
package orchestrator

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

var errTODO = errors.New("orchestrator: not implemented yet")

// Manager owns every sandbox's lifecycle. It is safe for concurrent use and
// never holds a lock across a provider call.
type Manager struct {
	store    store.Store
	registry *Registry
	limits   config.Limits
	cfg      config.ManagerConfig
	log      *slog.Logger
}

// Options are the dependencies of a Manager.
type Options struct {
	Store    store.Store
	Registry *Registry
	Limits   config.Limits
	Manager  config.ManagerConfig
	Logger   *slog.Logger
	Now      func() time.Time // clock; time.Now when nil
}

// New returns a Manager. Call Start to reconcile and start the background
// loops.
func New(opts Options) (*Manager, error) { return nil, errTODO }

// Start reconciles store and providers once, then starts the reaper and the
// periodic reconcile. The loops stop when ctx is done or Close is called.
func (m *Manager) Start(ctx context.Context) error { return errTODO }

// Close stops the background loops and waits for them. Sandboxes keep
// running for the next start to reconcile.
func (m *Manager) Close() error { return errTODO }

// SpawnRequest is a request to create a sandbox. Zero values take the
// configured defaults.
type SpawnRequest struct {
	Image    string
	Provider string // registry name; empty for the default provider
	Runtime  string
	MemoryMB int
	VCPUs    int
	TTL      time.Duration
	OwnerID  string
	Network  bool
	Env      map[string]string
	Metadata map[string]string
}

// Spawn admits, records and creates a sandbox and returns it in the running
// state. Errors: ErrInvalidArgument (wrapped, naming the field), a
// *provider.LimitError, ErrProviderNotFound, ErrUnavailable, or the
// provider's spawn error. A failed spawn leaves no runtime and a record in
// the destroyed or error state.
func (m *Manager) Spawn(ctx context.Context, req SpawnRequest) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// Get returns the sandbox with id, including destroyed ones. Unknown IDs
// give an error wrapping provider.ErrSandboxNotFound.
func (m *Manager) Get(ctx context.Context, id string) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// List returns sandboxes matching f, newest first.
func (m *Manager) List(ctx context.Context, f store.Filter) ([]store.Sandbox, error) {
	return nil, errTODO
}

// Destroy destroys the sandbox. It is idempotent: destroying a destroyed
// sandbox returns nil. Unknown IDs give provider.ErrSandboxNotFound.
func (m *Manager) Destroy(ctx context.Context, id string) error { return errTODO }

// Extend sets the sandbox's expiry to now plus ttl, bounded by the maximum
// TTL, and returns the updated record.
func (m *Manager) Extend(ctx context.Context, id string, ttl time.Duration) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// Logs returns up to lines lines of the sandbox's console log.
func (m *Manager) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	return nil, errTODO
}

// Stats returns a resource sample, when the provider supports it.
func (m *Manager) Stats(ctx context.Context, id string) (provider.Stats, error) {
	return provider.Stats{}, errTODO
}

// ExecRequest is a command as the API receives it.
type ExecRequest struct {
	Command string
	Args    []string
	Shell   bool // true: sh -c "command 'arg1' 'arg2'..."; false: argv
	Env     map[string]string
	Workdir string // absolute, or relative to /workspace; empty for /workspace
	Stdin   []byte
	Timeout time.Duration // 0 for the default
}

// Exec runs a command in a running sandbox. The result's TimedOut is set
// when the timeout killed it; that is a result, not an error.
func (m *Manager) Exec(ctx context.Context, id string, req ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	return provider.ExecResult{}, errTODO
}

// Files returns the file API of a running sandbox, with paths resolved
// against /workspace.
func (m *Manager) Files(ctx context.Context, id string) (*SandboxFiles, error) {
	return nil, errTODO
}

// SandboxFiles is the file API of one sandbox. Paths may be absolute or
// relative to /workspace; they are cleaned before they reach the provider.
type SandboxFiles struct {
	m  *Manager
	p  provider.Provider
	id string
}

func (f *SandboxFiles) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	return nil, errTODO
}

func (f *SandboxFiles) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	return errTODO
}

// ... Stat, ListDir, Mkdir, Remove, Move, Chmod, Glob, ReadArchive and
// WriteArchive follow provider.Files.

// Providers returns the registry.
func (m *Manager) Providers() *Registry { return m.registry }

// Ready returns nil when the default provider is healthy, else an error
// wrapping provider.ErrUnavailable that names what to install or fix.
func (m *Manager) Ready(ctx context.Context) error { return errTODO }
