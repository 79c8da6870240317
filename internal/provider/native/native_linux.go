package native

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// validID matches the sandbox IDs the provider accepts. They name host
// directories and cgroups, so nothing else is allowed.
var validID = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Provider is the native provider. It is safe for concurrent use.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	cgroups *cgroupHost // nil when cgErr is set or limits are not enforced
	cgErr   error

	// unlimited is set in rootless mode without cgroups, where memory, pids
	// and CPU limits are not enforced.
	unlimited bool

	mu         sync.Mutex
	sandboxes  map[string]*sandbox // attached sandboxes by ID
	busy       map[string]bool     // IDs being spawned or destroyed, which lookups and orphan cleanup leave alone
	loadFlight map[string]chan struct{}
}

var (
	_ provider.Provider    = (*Provider)(nil)
	_ provider.Inventory   = (*Provider)(nil)
	_ provider.LogReader   = (*Provider)(nil)
	_ provider.StatsReader = (*Provider)(nil)
)

// New returns a native provider over cfg.StateDir, creating the directory
// when missing, and removes the sandboxes and cgroups that an earlier run
// left incomplete or whose init has exited. It fails only when cfg is
// invalid or StateDir cannot be created. Health reports missing host
// features.
func New(cfg Config) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("native: state directory %q: %w", cfg.StateDir, err)
	}
	if strings.ContainsAny(dir, ",:") {
		return nil, fmt.Errorf("native: state directory %q contains ',' or ':', which overlay mount options cannot hold: %w",
			dir, provider.ErrInvalidArgument)
	}
	cfg.StateDir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("native: create state directory: %w", err)
	}

	p := &Provider{
		cfg:        cfg,
		log:        cfg.Logger.With("provider", Name),
		sandboxes:  map[string]*sandbox{},
		busy:       map[string]bool{},
		loadFlight: map[string]chan struct{}{},
	}
	p.cgroups, p.cgErr = detectCgroups()
	if rootless() {
		// TODO: use a delegated cgroup v2 subtree when the server's own
		// cgroup is writable. Until then rootless sandboxes get no cgroups.
		p.cgroups, p.cgErr, p.unlimited = nil, nil, true
		p.log.Warn("the server does not run as root, so native sandboxes run in user namespaces without cgroups: "+
			"memory and CPU limits are not enforced, and the process count is bounded only by RLIMIT_NPROC",
			"uid", os.Geteuid(), "rlimit_nproc", cfg.PidsLimit)
	}
	p.cleanOrphans(context.Background())
	return p, nil
}

// Name returns "native".
func (p *Provider) Name() string { return Name }

// Capabilities reports namespace isolation without network access.
func (p *Provider) Capabilities() provider.Capabilities {
	description := "Runs each sandbox in its own Linux namespaces and cgroups with a pivot_root'ed root, a seccomp filter and no network beyond loopback; no daemon needed."
	if p.unlimited {
		description = "Runs each sandbox in its own Linux user, mount, PID, network, UTS, IPC and cgroup namespaces with a pivot_root'ed root, " +
			"a seccomp filter and no network beyond loopback; no daemon needed. The server does not run as root, so memory, pids and CPU limits " +
			"are NOT enforced (they need root or a delegated cgroup v2 subtree); only RLIMIT_NPROC bounds the process count."
	}
	return provider.Capabilities{
		Isolation:   "namespaces",
		Isolated:    true,
		Network:     false,
		Inventory:   true,
		Stats:       true,
		Logs:        true,
		Description: description,
	}
}

// Health returns nil when the host can run native sandboxes now. The error
// wraps ErrUnavailable and names the fix.
func (p *Provider) Health(ctx context.Context) error {
	var problems []string
	if rootless() {
		if err := checkUserNamespaces(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if agentPath, err := p.agentPath(); err != nil {
		problems = append(problems, err.Error())
	} else if rootless() {
		if err := unix.Access(agentPath, unix.R_OK|unix.X_OK); err != nil {
			problems = append(problems, fmt.Sprintf("agent binary %s is not readable and executable by uid %d: %v", agentPath, os.Geteuid(), err))
		}
	}
	if err := checkFilesystem("overlay"); err != nil {
		problems = append(problems, err.Error())
	}
	if p.cgErr != nil {
		problems = append(problems, fmt.Sprintf("cgroups: %v; mount the cgroup file systems at /sys/fs/cgroup", p.cgErr))
	} else if p.cgroups != nil {
		for _, dir := range p.cgroups.parentDirs(p.cfg.CgroupParent) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				problems = append(problems, fmt.Sprintf("cannot create cgroup %s: %v; mount the cgroup file systems read-write", dir, err))
			}
		}
	}
	if err := checkWritable(p.cfg.StateDir); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("native: %w: %s", provider.ErrUnavailable, strings.Join(problems, "; "))
	}
	return nil
}

// agentPath returns the agent binary of new sandboxes.
func (p *Provider) agentPath() (string, error) {
	if p.cfg.AgentPath == "" {
		return agent.BinaryPath()
	}
	info, err := os.Stat(p.cfg.AgentPath)
	if err != nil {
		return "", fmt.Errorf("agent binary: %w", err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("agent binary %s is not an executable file", p.cfg.AgentPath)
	}
	return p.cfg.AgentPath, nil
}

// checkFilesystem returns an error unless /proc/filesystems lists the
// file system type name.
func checkFilesystem(name string) error {
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("read /proc/filesystems: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[len(fields)-1] == name {
			return nil
		}
	}
	return fmt.Errorf("the kernel has no %s file system; load it with `modprobe %s`", name, name)
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".health-*")
	if err != nil {
		return fmt.Errorf("state directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

func (p *Provider) sandboxDir(id string) string {
	return filepath.Join(p.cfg.StateDir, id)
}

// Recover returns nil when the sandbox's init is alive and its agent
// responds to a ping, attaching to it when this Provider has not seen it yet, as
// after a restart of the server.
func (p *Provider) Recover(ctx context.Context, id string) error {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return err
	}
	if err := sb.client.Ping(ctx); err != nil {
		// An agent that died takes its PID namespace with it, which can
		// take a moment while the kernel kills the other processes.
		exitCtx, cancel := context.WithTimeout(ctx, initExitGrace)
		defer cancel()
		if sb.pidfd >= 0 && waitExit(exitCtx, sb.pidfd) == nil {
			p.forget(ctx, sb)
			return fmt.Errorf("native: sandbox %s: its init exited: %w", id, provider.ErrSandboxNotFound)
		}
		return fmt.Errorf("native: sandbox %s: agent does not respond: %w", id, err)
	}
	return nil
}

// lookup returns the attached sandbox id, attaching to it from its state
// file when this Provider has not seen it yet. A sandbox whose init has
// exited is removed and reported as not found.
func (p *Provider) lookup(ctx context.Context, id string) (*sandbox, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("native: sandbox %q: %w", id, provider.ErrSandboxNotFound)
	}
	for {
		p.mu.Lock()
		if sb := p.sandboxes[id]; sb != nil {
			p.mu.Unlock()
			return sb, nil
		}
		if p.busy[id] {
			p.mu.Unlock()
			return nil, fmt.Errorf("native: sandbox %s: %w", id, provider.ErrSandboxNotFound)
		}
		// One caller attaches; the others wait for it and look again.
		if wait, ok := p.loadFlight[id]; ok {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		p.loadFlight[id] = done
		p.mu.Unlock()

		sb, err := p.attach(ctx, id)

		p.mu.Lock()
		delete(p.loadFlight, id)
		if err == nil && p.busy[id] {
			// A Destroy started while the sandbox was being attached.
			sb.close()
			sb, err = nil, fmt.Errorf("native: sandbox %s: %w", id, provider.ErrSandboxNotFound)
		}
		if err == nil {
			p.sandboxes[id] = sb
		}
		p.mu.Unlock()
		close(done)
		return sb, err
	}
}

// attach connects to the sandbox recorded in StateDir/id.
func (p *Provider) attach(ctx context.Context, id string) (*sandbox, error) {
	dir := p.sandboxDir(id)
	st, err := readState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("native: sandbox %s: %w", id, provider.ErrSandboxNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("native: load sandbox %s: %w", id, err)
	}

	pidfd, err := openInit(st.Pid, st.StartTime, st.BootID)
	if errors.Is(err, errProcessGone) {
		p.log.Info("sandbox init has exited; removing the sandbox", "sandbox_id", id, "pid", st.Pid)
		if err := p.removeSandbox(ctx, dir, st); err != nil {
			p.log.Warn("remove sandbox whose init exited", "sandbox_id", id, "error", err)
		}
		return nil, fmt.Errorf("native: sandbox %s: its init exited: %w", id, provider.ErrSandboxNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("native: sandbox %s: %w: %w", id, provider.ErrUnavailable, err)
	}

	sb := newSandbox(dir, st, pidfd, nil)
	client, err := dialAgent(ctx, filepath.Join(dir, runDir, socketName))
	if err != nil {
		sb.close()
		return nil, fmt.Errorf("native: sandbox %s: %w", id, err)
	}
	sb.client = client
	sb.release = p.holdImage(ctx, st)
	p.log.Info("sandbox attached", "sandbox_id", id, "pid", st.Pid)
	return sb, nil
}

// holdImage keeps the image tree of a re-attached sandbox from being
// garbage collected and returns the release function, or nil.
func (p *Provider) holdImage(ctx context.Context, st state) func() {
	if st.ImageRoot == "" || p.cfg.Images == nil {
		return nil
	}
	root, release, err := p.cfg.Images.RootFS(ctx, st.Image)
	if err != nil {
		p.log.Warn("image of a running sandbox is not in the image store; image GC may remove files the sandbox uses",
			"sandbox_id", st.ID, "image", st.Image, "error", err)
		return nil
	}
	if root != st.ImageRoot {
		release()
		p.log.Warn("image of a running sandbox now names another tree; image GC may remove files the sandbox uses",
			"sandbox_id", st.ID, "image", st.Image)
		return nil
	}
	return release
}

// forget drops an attached sandbox whose init exited and removes it.
func (p *Provider) forget(ctx context.Context, sb *sandbox) {
	p.mu.Lock()
	if p.sandboxes[sb.id] == sb {
		delete(p.sandboxes, sb.id)
	}
	p.mu.Unlock()
	sb.markDestroyed()
	if err := p.removeSandbox(ctx, sb.dir, sb.state); err != nil {
		p.log.Warn("remove sandbox whose init exited", "sandbox_id", sb.id, "error", err)
	}
	sb.close()
}

// Destroy kills the sandbox's init, which ends every process in its PID
// namespace and with them its mounts, then removes its cgroups and host
// directory. Unknown IDs, including invalid ones, give nil. Calls running
// on the sandbox return ErrSandboxDestroyed.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	if !validID.MatchString(id) {
		return nil
	}
	p.mu.Lock()
	if p.busy[id] {
		p.mu.Unlock()
		return fmt.Errorf("native: destroy sandbox %s: a spawn or destroy of it is in progress: %w", id, provider.ErrUnavailable)
	}
	p.busy[id] = true
	sb := p.sandboxes[id]
	delete(p.sandboxes, id)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.busy, id)
		p.mu.Unlock()
	}()

	started := time.Now()
	dir := p.sandboxDir(id)
	st, err := readState(dir)
	if sb != nil {
		st, err = sb.state, nil
		sb.markDestroyed()
		defer sb.close()
	}
	if errors.Is(err, os.ErrNotExist) {
		// An incomplete spawn left a directory, or nothing exists.
		st = state{ID: id}
		if p.cgroups != nil {
			st.Cgroups = p.cgroups.paths(p.cfg.CgroupParent, id)
		}
	} else if err != nil {
		return fmt.Errorf("native: destroy sandbox %s: %w", id, err)
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && sb == nil {
		return nil
	}

	if err := p.removeSandbox(ctx, dir, st); err != nil {
		return fmt.Errorf("native: destroy sandbox %s: %w", id, err)
	}
	p.log.Info("sandbox destroyed", "sandbox_id", id, "duration_ms", time.Since(started).Milliseconds())
	return nil
}

// removeSandbox kills the init recorded in st, waits for it, removes the
// cgroups and then the host directory. It is safe to repeat.
func (p *Provider) removeSandbox(ctx context.Context, dir string, st state) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), destroyLimit)
	defer cancel()
	if st.Pid > 0 {
		pidfd, err := openInit(st.Pid, st.StartTime, st.BootID)
		if err == nil {
			err = killProcess(pidfd)
			if err == nil {
				err = waitExit(ctx, pidfd)
			}
			_ = unixClose(pidfd)
		}
		if err != nil && !errors.Is(err, errProcessGone) {
			return fmt.Errorf("kill init %d: %w", st.Pid, err)
		}
	}
	if err := st.Cgroups.remove(ctx); err != nil {
		return err
	}
	if err := removeDir(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// initExitGrace bounds how long Recover waits for the init of a sandbox
// whose agent does not respond to exit, before it reports ErrUnavailable.
const initExitGrace = 2 * time.Second

// destroyLimit bounds the wait for a sandbox's processes to exit.
const destroyLimit = 30 * time.Second

// ListRuntimes returns the sandboxes in StateDir whose init is alive,
// sorted by ID. It first removes orphans: sandbox directories without a
// live init and cgroups without a sandbox directory.
func (p *Provider) ListRuntimes(ctx context.Context) ([]provider.RuntimeInfo, error) {
	p.cleanOrphans(ctx)
	entries, err := os.ReadDir(p.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("native: list sandboxes: %w: %w", provider.ErrUnavailable, err)
	}
	var runtimes []provider.RuntimeInfo
	for _, e := range entries {
		if !e.IsDir() || !validID.MatchString(e.Name()) {
			continue
		}
		st, err := readState(filepath.Join(p.cfg.StateDir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("native: list sandboxes: %w", err)
		}
		runtimes = append(runtimes, st.runtimeInfo(true))
	}
	return runtimes, nil
}
