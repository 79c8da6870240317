// Package proot is the provider for hosts where nothing stronger than
// PRoot is available. PRoot runs programs with a different root directory
// and bind mounts by intercepting their system calls with ptrace, so it
// needs no kernel features beyond ptrace. It isolates the file system view
// only: commands share the host's kernel, network and process table.
//
// A sandbox's commands run through stacyvm-agent under PRoot. The root
// directory is the image's unpacked tree from the image store, shared by
// every sandbox of the image. The tree is never written, because the agent
// and its commands run as a host user of their own, from Config.UIDStart
// up, without write permission on it. PRoot binds per-sandbox directories,
// owned by that user, over /workspace, /tmp and /home. The file API runs
// in the server and resolves paths the way PRoot does, across the image's
// tree and the sandbox's own directories.
//
// Layout under Config.StateDir:
//
//	<id>/state.json           the SpawnSpec, the image and the sandbox's user
//	<id>/agent.json           process ID and start time of the running PRoot
//	<id>/console.log          lifecycle lines, and the agent's and PRoot's messages
//	<id>/upper/               workspace/, tmp/ and home/, bound over the image
//	<id>/dev/                 the sandbox's /dev, with some host devices bound in
//	run/<uid>/                /run/stacyvm of the sandbox whose user is uid: the agent's socket
//	bin/stacyvm-agent-<hash>  a copy of the agent that every sandbox user can run
//
// Because the state is on disk, a new Provider over the same StateDir, as
// after a restart of the server, recovers and lists the sandboxes of the
// old one, and reconnects to their agents or starts them again.
package proot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Name is the registry name of the PRoot provider.
const Name = "proot"

// validID matches the sandbox IDs the provider accepts. They are used as
// directory names, so nothing else is allowed.
var validID = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Provider is the PRoot provider. It is safe for concurrent use.
type Provider struct {
	cfg  Config
	euid int

	agentMu  sync.Mutex
	agentBin string // copy of the agent under StateDir/bin, once made

	mu        sync.Mutex
	sandboxes map[string]*sandbox // loaded sandboxes by ID
	uids      map[uint32]string   // user IDs of loaded or spawning sandboxes
}

var (
	_ provider.Provider  = (*Provider)(nil)
	_ provider.Inventory = (*Provider)(nil)
	_ provider.LogReader = (*Provider)(nil)
)

// New returns a PRoot provider for cfg, creating cfg.StateDir when
// missing. It does not check the host: Health reports what is missing.
func New(cfg Config) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("proot: state directory %q: %w", cfg.StateDir, err)
	}
	cfg.StateDir = dir
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("proot: create state directory: %w", err)
	}
	for _, sub := range []string{"run", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o711); err != nil {
			return nil, fmt.Errorf("proot: create state directory: %w", err)
		}
	}
	return &Provider{
		cfg:       cfg,
		euid:      os.Geteuid(),
		sandboxes: make(map[string]*sandbox),
		uids:      make(map[uint32]string),
	}, nil
}

// Name returns "proot".
func (p *Provider) Name() string { return Name }

// description is Capabilities().Description.
const description = "Runs commands under PRoot as an unprivileged user of their own with the image as a read-only root; " +
	"isolates the file system view only and always shares the host's network, process table and kernel."

// Capabilities reports that PRoot gives each sandbox its own file system
// view and user, but not its own network, processes or resources.
func (p *Provider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		Isolation:   "proot",
		Isolated:    false,
		Network:     true,
		Inventory:   true,
		Logs:        true,
		Description: description,
	}
}

// Health returns nil when the server runs as root, the proot binary runs,
// the agent binary is found, StateDir is writable, and sandbox users may
// pass through the directories above StateDir and the image store's trees.
func (p *Provider) Health(ctx context.Context) error {
	if err := p.checkRoot(); err != nil {
		return err
	}
	for _, dir := range []string{p.cfg.StateDir, p.cfg.Images.Dir()} {
		if err := checkSearchable(dir, -1, -1); err != nil {
			return fmt.Errorf("proot: %w", err)
		}
	}
	binary, err := p.prootPath()
	if err != nil {
		return err
	}
	if err := checkVersion(ctx, binary); err != nil {
		return err
	}
	if _, err := p.agentSource(); err != nil {
		return err
	}
	f, err := os.CreateTemp(p.cfg.StateDir, ".health-*")
	if err != nil {
		return fmt.Errorf("proot: state directory %s is not writable: %w: %w", p.cfg.StateDir, provider.ErrUnavailable, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// checkRoot returns an error wrapping ErrUnavailable unless the server runs
// as root. Without root, commands would run as the server's own user,
// which owns the image store and could change the tree every sandbox of
// the image shares.
func (p *Provider) checkRoot() error {
	if p.euid == 0 {
		return nil
	}
	return fmt.Errorf("proot: the server runs as uid %d, but it must run as root so that commands run as a user of their own "+
		"that cannot change the shared image files: %w", p.euid, provider.ErrUnavailable)
}

// Spawn prepares the sandbox's directories, starts its agent under PRoot
// and records spec in state.json. An ID that does not match
// [a-z0-9-]{1,64} or that already exists gives an error wrapping
// ErrInvalidArgument, because the manager never reuses IDs.
//
// spec.Network is recorded but cannot be honoured: PRoot cannot take the
// network away, so every sandbox shares the host's network. With Network
// set, the host's /etc/resolv.conf and /etc/hosts are bound over the
// image's so that names resolve as on the host.
func (p *Provider) Spawn(ctx context.Context, spec provider.SpawnSpec) (err error) {
	start := time.Now()
	if !validID.MatchString(spec.ID) {
		return fmt.Errorf("proot: sandbox ID %q must match [a-z0-9-]{1,64}: %w", spec.ID, provider.ErrInvalidArgument)
	}
	if err := p.checkRoot(); err != nil {
		return err
	}
	if _, err := p.prootPath(); err != nil {
		return err
	}

	dir := p.sandboxDir(spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("proot: sandbox %s already exists: %w", spec.ID, provider.ErrInvalidArgument)
		}
		return fmt.Errorf("proot: create sandbox %s: %w", spec.ID, err)
	}
	var undo cleanup
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	undo.add(func() { _ = os.RemoveAll(dir) })

	uid, err := p.reserveUID(spec.ID)
	if err != nil {
		return err
	}
	undo.add(func() { p.releaseUID(uid) })
	undo.add(func() { _ = os.RemoveAll(runDir(p.cfg.StateDir, uid)) })

	image := spec.Image
	if image == "" {
		image = p.cfg.DefaultImage
	}
	sb, err := p.prepare(ctx, dir, newState(spec, image, uid, start))
	if err != nil {
		return fmt.Errorf("proot: create sandbox %s: %w", spec.ID, err)
	}
	undo.add(func() { sb.close() })
	sb.logf("spawned image=%q owner=%q uid=%d network=%t", image, spec.OwnerID, uid, spec.Network)

	undo.add(func() { _ = killSandbox(context.WithoutCancel(ctx), uid) })
	conn, err := p.acquireAgent(ctx, sb)
	if err != nil {
		return fmt.Errorf("proot: start sandbox %s: %w", spec.ID, err)
	}
	p.releaseAgent(sb, conn, nil)

	// state.json marks a complete sandbox, so it is written last and under
	// the lock that lookup loads sandboxes under.
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := writeJSON(dir, stateFile, sb.state); err != nil {
		return fmt.Errorf("proot: create sandbox %s: %w", spec.ID, err)
	}
	p.sandboxes[spec.ID] = sb
	p.cfg.Logger.Info("sandbox spawned", "provider", Name, "sandbox_id", spec.ID, "image", image,
		"uid", uid, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// Recover returns nil when the sandbox's state is on disk and an agent
// runs for it. A Provider that loads a sandbox from disk first kills the
// processes left from before, because no call of this process waits for
// them, and then starts a new agent.
func (p *Provider) Recover(ctx context.Context, id string) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	conn, err := p.acquireAgent(ctx, sb)
	if err != nil {
		return fmt.Errorf("proot: recover sandbox %s: %w", id, err)
	}
	p.releaseAgent(sb, conn, nil)
	return nil
}

// Destroy kills every process of the sandbox, releases its image and
// removes its directories. Unknown IDs, including invalid ones, give nil.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	if !validID.MatchString(id) {
		return nil
	}
	start := time.Now()
	dir := p.sandboxDir(id)

	// Removing state.json under the lock keeps a concurrent lookup from
	// loading the sandbox again while its directory is being removed.
	p.mu.Lock()
	sb := p.sandboxes[id]
	delete(p.sandboxes, id)
	st, stateErr := readState(dir)
	err := os.Remove(filepath.Join(dir, stateFile))
	p.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("proot: destroy sandbox %s: %w", id, err)
	}
	if sb != nil {
		st, stateErr = sb.state, nil
		if err := sb.stop(ctx); err != nil {
			return fmt.Errorf("proot: destroy sandbox %s: %w", id, err)
		}
	}

	// A directory without a readable state.json is a spawn that did not
	// complete. Its user is in agent.json, which Spawn writes first.
	uid, haveUID := st.UID, stateErr == nil
	if !haveUID {
		uid, haveUID = recordedUID(dir)
	}
	if haveUID {
		if err := killSandbox(ctx, uid); err != nil {
			return fmt.Errorf("proot: destroy sandbox %s: %w", id, err)
		}
		if err := os.RemoveAll(runDir(p.cfg.StateDir, uid)); err != nil {
			return fmt.Errorf("proot: destroy sandbox %s: %w", id, err)
		}
	}
	if sb != nil {
		sb.close()
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("proot: destroy sandbox %s: %w", id, err)
	}
	if haveUID {
		p.releaseUID(uid)
	}
	if sb != nil || stateErr == nil {
		p.cfg.Logger.Info("sandbox destroyed", "provider", Name, "sandbox_id", id,
			"duration_ms", time.Since(start).Milliseconds())
	}
	return nil
}

// lookup returns the sandbox with id, loading it from disk when this
// Provider has not seen it yet. Loading kills the processes that a
// previous server left running as the sandbox's user and acquires the
// image's tree, but starts no agent.
func (p *Provider) lookup(ctx context.Context, id string) (*sandbox, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("proot: sandbox %q: %w", id, provider.ErrSandboxNotFound)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sb := p.sandboxes[id]; sb != nil {
		return sb, nil
	}

	dir := p.sandboxDir(id)
	st, err := readState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("proot: sandbox %s: %w", id, provider.ErrSandboxNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("proot: load sandbox %s: %w", id, err)
	}
	if err := killSandbox(ctx, st.UID); err != nil {
		return nil, fmt.Errorf("proot: load sandbox %s: %w", id, err)
	}
	sb, err := p.open(ctx, dir, st)
	if err != nil {
		return nil, fmt.Errorf("proot: load sandbox %s: %w: %w", id, provider.ErrUnavailable, err)
	}
	p.sandboxes[id] = sb
	p.uids[st.UID] = id
	return sb, nil
}

func (p *Provider) sandboxDir(id string) string {
	return filepath.Join(p.cfg.StateDir, id)
}

// cleanup is a stack of undo steps, run in reverse order.
type cleanup []func()

func (c *cleanup) add(f func()) { *c = append(*c, f) }

func (c *cleanup) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}
