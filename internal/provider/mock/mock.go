// Package mock is a provider without isolation, for tests and demos. Each
// sandbox is a directory on the host, and commands run directly on the host
// as the server's user, with the sandbox's directory tree as their working
// area:
//
//	<Root>/<id>/state.json    the SpawnSpec and the creation time
//	<Root>/<id>/console.log   one line per lifecycle step and per exec
//	<Root>/<id>/rootfs/       the sandbox's "/", with workspace/, tmp/ and home/
//
// Because the state is on disk, a new Provider over the same Root, as after
// a restart of the server, recovers and lists the sandboxes of the old one.
// The file API is confined to rootfs, but commands are not: an absolute
// path in a command names a host file.
package mock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/stacyvm/stacyvm/internal/fileops"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// Name is the registry name of the mock provider.
const Name = "mock"

// Config configures the mock provider.
type Config struct {
	// Root is the directory that holds one subdirectory per sandbox. It is
	// created with mode 0700 when missing.
	Root string
}

// validID matches the sandbox IDs the mock accepts. They are used as
// directory names, so nothing else is allowed.
var validID = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Provider is the mock provider. It is safe for concurrent use.
type Provider struct {
	root string

	mu        sync.Mutex
	sandboxes map[string]*sandbox // loaded sandboxes by ID
}

var (
	_ provider.Provider  = (*Provider)(nil)
	_ provider.Inventory = (*Provider)(nil)
	_ provider.LogReader = (*Provider)(nil)
)

// New returns a mock provider over cfg.Root, creating the directory when
// missing.
func New(cfg Config) (*Provider, error) {
	if cfg.Root == "" {
		return nil, fmt.Errorf("mock: root directory is empty, set Config.Root: %w", provider.ErrInvalidArgument)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("mock: root directory %q: %w", cfg.Root, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("mock: create root directory: %w", err)
	}
	return &Provider{root: root, sandboxes: make(map[string]*sandbox)}, nil
}

// Name returns "mock".
func (p *Provider) Name() string { return Name }

// Capabilities reports that the mock isolates nothing.
func (p *Provider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		Isolation:   "none",
		Isolated:    false,
		Network:     true,
		Inventory:   true,
		Logs:        true,
		Description: "Runs commands directly on the host without isolation, for tests and demos only.",
	}
}

// Health returns nil when a file can be created in Root.
func (p *Provider) Health(ctx context.Context) error {
	f, err := os.CreateTemp(p.root, ".health-*")
	if err != nil {
		return fmt.Errorf("mock: root directory %s is not writable: %w: %w", p.root, provider.ErrUnavailable, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// Spawn creates the sandbox's directories and records spec in state.json.
// An ID that does not match [a-z0-9-]{1,64} or that already exists gives an
// error wrapping ErrInvalidArgument, because the manager never reuses IDs.
func (p *Provider) Spawn(ctx context.Context, spec provider.SpawnSpec) (err error) {
	if !validID.MatchString(spec.ID) {
		return fmt.Errorf("mock: sandbox ID %q must match [a-z0-9-]{1,64}: %w", spec.ID, provider.ErrInvalidArgument)
	}
	dir := p.sandboxDir(spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("mock: sandbox %s already exists: %w", spec.ID, provider.ErrInvalidArgument)
		}
		return fmt.Errorf("mock: create sandbox %s: %w", spec.ID, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()

	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o755}, {"workspace", 0o755}, {"home", 0o755}, {"tmp", 0o1777}} {
		if err := mkdirMode(filepath.Join(rootfs, d.name), d.mode); err != nil {
			return fmt.Errorf("mock: create sandbox %s: %w", spec.ID, err)
		}
	}

	st := newState(spec, time.Now())
	sb, err := openSandbox(dir, st)
	if err != nil {
		return fmt.Errorf("mock: create sandbox %s: %w", spec.ID, err)
	}
	sb.logf("spawned image=%q owner=%q", spec.Image, spec.OwnerID)

	// state.json marks a complete sandbox, so it is written last and under
	// the lock that lookup loads sandboxes under.
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := writeState(dir, st); err != nil {
		sb.close()
		return fmt.Errorf("mock: create sandbox %s: %w", spec.ID, err)
	}
	p.sandboxes[spec.ID] = sb
	return nil
}

// mkdirMode creates dir with exactly mode, whatever the umask.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// Recover returns nil when the sandbox's directory and state are on disk.
func (p *Provider) Recover(ctx context.Context, id string) error {
	_, err := p.lookup(id)
	return err
}

// Destroy stops the sandbox's running commands and removes its directory.
// Unknown IDs, including invalid ones, give nil.
//
// NOTE: a descendant of a command that both left its process group and
// replaced its environment escapes procexec's kill and keeps running on the
// host, because the mock has no boundary that would end it.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	if !validID.MatchString(id) {
		return nil
	}
	dir := p.sandboxDir(id)

	// Removing state.json under the lock keeps a concurrent lookup from
	// loading the sandbox again while its directory is being removed.
	p.mu.Lock()
	sb := p.sandboxes[id]
	delete(p.sandboxes, id)
	err := os.Remove(filepath.Join(dir, stateFile))
	p.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mock: destroy sandbox %s: %w", id, err)
	}

	if sb != nil {
		if err := sb.stop(ctx); err != nil {
			return fmt.Errorf("mock: destroy sandbox %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("mock: destroy sandbox %s: %w", id, err)
	}
	return nil
}

// lookup returns the sandbox with id, loading it from disk when this
// Provider has not seen it yet.
func (p *Provider) lookup(id string) (*sandbox, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("mock: sandbox %q: %w", id, provider.ErrSandboxNotFound)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sb := p.sandboxes[id]; sb != nil {
		return sb, nil
	}

	dir := p.sandboxDir(id)
	st, err := readState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("mock: sandbox %s: %w", id, provider.ErrSandboxNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("mock: load sandbox %s: %w", id, err)
	}
	sb, err := openSandbox(dir, st)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("mock: sandbox %s has no rootfs: %w", id, provider.ErrSandboxNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("mock: load sandbox %s: %w", id, err)
	}
	p.sandboxes[id] = sb
	return sb, nil
}

func (p *Provider) sandboxDir(id string) string {
	return filepath.Join(p.root, id)
}

// sandbox is one loaded sandbox.
type sandbox struct {
	id         string
	dir        string // <Root>/<id>
	rootfs     string // <Root>/<id>/rootfs
	realRootfs string // rootfs with symlinks resolved, for workdir checks
	state      state
	files      *fileops.FS

	// ctx is cancelled by Destroy, which stops the running commands.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	destroyed bool
	running   sync.WaitGroup // running Exec calls

	logMu sync.Mutex // serializes console.log writes
}

// openSandbox opens the file API of the sandbox in dir.
func openSandbox(dir string, st state) (*sandbox, error) {
	rootfs := filepath.Join(dir, "rootfs")
	realRootfs, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		return nil, err
	}
	files, err := fileops.Open(rootfs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &sandbox{
		id:         st.ID,
		dir:        dir,
		rootfs:     rootfs,
		realRootfs: realRootfs,
		state:      st,
		files:      files,
		ctx:        ctx,
		cancel:     cancel,
	}, nil
}

// begin registers a running Exec. It returns false once the sandbox is
// destroyed.
func (sb *sandbox) begin() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.destroyed {
		return false
	}
	sb.running.Add(1)
	return true
}

func (sb *sandbox) isDestroyed() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.destroyed
}

// stop marks the sandbox destroyed, kills its running commands and waits
// for their Exec calls to return, or for ctx.
func (sb *sandbox) stop(ctx context.Context) error {
	sb.mu.Lock()
	sb.destroyed = true
	sb.mu.Unlock()
	sb.cancel()

	done := make(chan struct{})
	go func() {
		sb.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wait for running commands: %w", ctx.Err())
	}
	sb.close()
	return nil
}

func (sb *sandbox) close() {
	sb.cancel()
	_ = sb.files.Close()
}
