// Package docker is the provider that runs each sandbox as one container of
// a Docker engine, with runc, gVisor's runsc or Kata as the OCI runtime.
//
// A sandbox is the container stacyvm-<id>. Its entrypoint is stacyvm-agent,
// bind-mounted read-only from the host at /.stacyvm/stacyvm-agent, which
// runs as PID 1 and serves exec and file calls on a unix socket in the
// sandbox's host directory:
//
//	<StateDir>/<id>/agent.sock   on the host
//	/run/stacyvm/agent.sock      inside the container
//
// Any image works, including one without a shell, because the agent needs
// nothing from the image. Containers carry stacyvm.* labels with the spawn's
// owner, metadata, image and limits, so that a new Provider over the same
// StateDir, as after a restart of the server, recovers and lists them.
// docs/providers/docker.md describes the hardening, the runtimes and the
// limits.
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// Name is the registry name of the docker provider.
const Name = "docker"

// Paths inside a sandbox.
const (
	agentMountPath = "/.stacyvm/" + agent.BinaryName
	workspaceDir   = "/workspace"
)

// socketName is the agent socket's file name in the sandbox's host
// directory, the base name of agent.DefaultSocketPath.
const socketName = "agent.sock"

// cleanupTimeout bounds the removal of a partly created sandbox, which runs
// detached from the spawn's context.
const cleanupTimeout = time.Minute

// validID matches the sandbox IDs the provider accepts. They become
// container names and directory names, so nothing else is allowed.
var validID = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Provider is the docker provider. It is safe for concurrent use.
type Provider struct {
	cfg      Config
	engine   *client.Client
	agentBin string
	log      *slog.Logger

	mu        sync.Mutex
	sandboxes map[string]*sandbox // attached sandboxes by ID

	runtimesMu sync.Mutex
	registered []string  // runtimes the engine reported, nil until known
	checked    time.Time // when registered was fetched
}

var (
	_ provider.Provider    = (*Provider)(nil)
	_ provider.Inventory   = (*Provider)(nil)
	_ provider.StatsReader = (*Provider)(nil)
	_ provider.LogReader   = (*Provider)(nil)
)

// New returns a docker provider for cfg after filling in its defaults. It
// does not contact the engine, so it succeeds while the engine is down;
// Health reports that. It fails when the configuration is invalid or the
// agent binary cannot be found.
func New(cfg Config) (*Provider, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("docker: %w: %w", provider.ErrInvalidArgument, err)
	}

	agentBin := cfg.AgentPath
	if agentBin == "" {
		path, err := agent.BinaryPath()
		if err != nil {
			return nil, fmt.Errorf("docker: %w", err)
		}
		agentBin = path
	}
	agentBin, err := filepath.Abs(agentBin)
	if err != nil {
		return nil, fmt.Errorf("docker: agent binary %q: %w", cfg.AgentPath, err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("docker: create state directory: %w", err)
	}

	opts := []client.Opt{client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	engine, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: engine address %q: %w: %w", cfg.Host, provider.ErrInvalidArgument, err)
	}

	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{
		cfg:       cfg,
		engine:    engine,
		agentBin:  agentBin,
		log:       log.With("provider", Name),
		sandboxes: make(map[string]*sandbox),
	}, nil
}

// Close closes the agent connections and the engine client. Sandboxes keep
// running.
func (p *Provider) Close() error {
	p.mu.Lock()
	attached := p.sandboxes
	p.sandboxes = make(map[string]*sandbox)
	p.mu.Unlock()
	for _, sb := range attached {
		_ = sb.client.Close()
	}
	return p.engine.Close()
}

// Name returns "docker".
func (p *Provider) Name() string { return Name }

// Capabilities reports container isolation and the runtimes known to be
// registered in the engine, the default first. Until the engine has been
// asked, as by Health, Runtimes lists the configured runtimes.
func (p *Provider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		Isolation:   "container",
		Isolated:    true,
		Network:     true,
		Runtimes:    p.offeredRuntimes(p.cachedRuntimes()),
		Inventory:   true,
		Stats:       true,
		Logs:        true,
		Description: "Runs each sandbox as a hardened container of a Docker engine, with runc or gVisor's runsc as the runtime.",
	}
}

// Health pings the engine and checks that the agent binary is still there.
func (p *Provider) Health(ctx context.Context) error {
	if _, err := p.engine.Ping(ctx); err != nil {
		return p.engineDown(err)
	}
	if _, err := os.Stat(p.agentBin); err != nil {
		return fmt.Errorf("docker: agent binary: %w: %w; rebuild it with `make build`", provider.ErrUnavailable, err)
	}
	_, _ = p.runtimes(ctx, false)
	return nil
}

// engineDown wraps an error of a call that did not reach the engine.
func (p *Provider) engineDown(err error) error {
	host := p.engine.DaemonHost()
	return fmt.Errorf("docker: no Docker engine responded at %s: %w: %w; start the Docker engine (dockerd) or set DOCKER_HOST",
		host, provider.ErrUnavailable, err)
}

// Recover re-attaches to the sandbox's container and dials its agent. A
// stopped container is started again first, with its files kept. Its
// processes ended, as after a reboot of the host or a restart of an engine
// without live restore, but its file system is still there. A container
// that does not exist, or that another server's StateDir owns, gives
// ErrSandboxNotFound.
func (p *Provider) Recover(ctx context.Context, id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("docker: sandbox %q: %w", id, provider.ErrSandboxNotFound)
	}
	if sb := p.cached(id); sb != nil {
		if err := sb.client.Ping(ctx); err == nil {
			return nil
		}
		p.forget(sb)
	}
	_, err := p.attach(ctx, id, attachStart)
	return err
}

// Destroy removes the sandbox's container, killing its processes, and its
// host directory. Calls in progress on the sandbox fail with
// ErrSandboxDestroyed. Unknown IDs, including invalid ones, give nil.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	if !validID.MatchString(id) {
		return nil
	}
	if sb := p.cached(id); sb != nil {
		sb.markDestroyed()
		p.forget(sb)
	}

	if err := p.removeContainer(ctx, id); err != nil {
		return fmt.Errorf("docker: destroy sandbox %s: %w", id, err)
	}
	if sb := p.cached(id); sb != nil { // attached again during the removal
		sb.markDestroyed()
		p.forget(sb)
	}
	if err := os.RemoveAll(p.sandboxDir(id)); err != nil {
		return fmt.Errorf("docker: destroy sandbox %s: remove host directory: %w", id, err)
	}
	p.log.Info("sandbox destroyed", "sandbox_id", id)
	return nil
}

// sandboxDir returns the host directory of sandbox id.
func (p *Provider) sandboxDir(id string) string {
	return filepath.Join(p.cfg.StateDir, id)
}

// containerName returns the container name of sandbox id.
func containerName(id string) string {
	return "stacyvm-" + id
}

// cachedRuntimes returns the runtimes the engine last reported, or nil.
func (p *Provider) cachedRuntimes() []string {
	p.runtimesMu.Lock()
	defer p.runtimesMu.Unlock()
	return p.registered
}

// runtimesMaxAge is how long the engine's list of runtimes is reused.
const runtimesMaxAge = time.Minute

// runtimes returns the runtimes registered in the engine, asking the
// engine when the list is unknown, older than runtimesMaxAge, or refresh is
// set.
func (p *Provider) runtimes(ctx context.Context, refresh bool) ([]string, error) {
	p.runtimesMu.Lock()
	defer p.runtimesMu.Unlock()
	if p.registered != nil && !refresh && time.Since(p.checked) < runtimesMaxAge {
		return p.registered, nil
	}
	info, err := p.engine.Info(ctx)
	if err != nil {
		return nil, p.engineError("list runtimes", err)
	}
	names := make([]string, 0, len(info.Runtimes))
	for name := range info.Runtimes {
		names = append(names, name)
	}
	slices.Sort(names)
	p.registered, p.checked = names, time.Now()
	return names, nil
}

// offeredRuntimes returns the configured runtimes that are in registered,
// the default first; with registered nil, all configured runtimes.
func (p *Provider) offeredRuntimes(registered []string) []string {
	offered := []string{p.cfg.Runtime}
	for _, name := range p.cfg.Runtimes {
		if name == p.cfg.Runtime {
			continue
		}
		if registered == nil || slices.Contains(registered, name) {
			offered = append(offered, name)
		}
	}
	return offered
}

// errDestroyed is the cause of calls cut short by Destroy.
var errDestroyed = errors.New("the sandbox was destroyed during the call")
