package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// sandbox is one attached sandbox: a running container whose agent
// responded.
type sandbox struct {
	id          string
	containerID string
	client      *agent.Client
	counters    cgroupCounters // the container's cgroup event counters on the host

	mu        sync.Mutex
	destroyed bool
	lastCPU   cpuSample // the previous Stats sample, for CPU percent
}

func (sb *sandbox) markDestroyed() {
	sb.mu.Lock()
	sb.destroyed = true
	sb.mu.Unlock()
}

func (sb *sandbox) isDestroyed() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.destroyed
}

// cached returns the attached sandbox id, or nil.
func (p *Provider) cached(id string) *sandbox {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sandboxes[id]
}

// forget drops sb from the attached sandboxes and closes its agent
// connection, which fails its calls in progress.
func (p *Provider) forget(sb *sandbox) {
	p.mu.Lock()
	if p.sandboxes[sb.id] == sb {
		delete(p.sandboxes, sb.id)
	}
	p.mu.Unlock()
	_ = sb.client.Close()
}

// keep records sb as attached and returns it, or returns the sandbox that
// a concurrent call attached first, closing sb.
func (p *Provider) keep(sb *sandbox) *sandbox {
	p.mu.Lock()
	defer p.mu.Unlock()
	if existing := p.sandboxes[sb.id]; existing != nil {
		_ = sb.client.Close()
		return existing
	}
	p.sandboxes[sb.id] = sb
	return sb
}

// lookup returns the attached sandbox id, attaching to its container when
// this Provider has not yet, as after a restart of the server. A stopped
// container is not started here; Recover does that.
func (p *Provider) lookup(ctx context.Context, id string) (*sandbox, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("docker: sandbox %q: %w", id, provider.ErrSandboxNotFound)
	}
	if sb := p.cached(id); sb != nil {
		return sb, nil
	}
	return p.attach(ctx, id, attachRunning)
}

// attachMode selects what attach does with a container that is not running.
type attachMode int

const (
	attachRunning attachMode = iota // fail with ErrUnavailable
	attachStart                     // start it
	attachNew                       // fail with its exit code and last log lines, as a spawn
)

// attach inspects the container of sandbox id, handles a stopped one as
// mode selects, waits for its agent and records it as attached.
func (p *Provider) attach(ctx context.Context, id string, mode attachMode) (*sandbox, error) {
	info, err := p.inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case info.State.Status == container.StateRunning:
	case mode == attachNew:
		return nil, p.stoppedBeforeAgent(ctx, id, info.ID, info.State)
	case mode == attachStart && (info.State.Status == container.StateExited || info.State.Status == container.StateCreated):
		if err := p.engine.ContainerStart(ctx, info.ID, container.StartOptions{}); err != nil {
			return nil, p.engineError("start container of sandbox "+id, err)
		}
		p.log.Info("stopped container started again", "sandbox_id", id,
			"exit_code", info.State.ExitCode, "oom_killed", info.State.OOMKilled)
		if info, err = p.inspect(ctx, id); err != nil {
			return nil, err
		}
	default:
		return nil, notRunning(id, info.State)
	}

	c, err := p.waitAgent(ctx, id, info.ID)
	if err != nil {
		return nil, err
	}
	sb := &sandbox{
		id:          id,
		containerID: info.ID,
		client:      c,
		counters:    findCgroupCounters(info.State.Pid, info.ID),
	}
	return p.keep(sb), nil
}

// inspect returns the container of sandbox id. A container that does not
// exist, or that is not one of this server's sandboxes, gives
// ErrSandboxNotFound.
func (p *Provider) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	info, err := p.engine.ContainerInspect(ctx, containerName(id))
	if cerrdefs.IsNotFound(err) {
		return info, fmt.Errorf("docker: sandbox %s: %w", id, provider.ErrSandboxNotFound)
	}
	if err != nil {
		return info, p.engineError("inspect sandbox "+id, err)
	}
	if info.Config == nil || info.State == nil || !p.owns(info.Config.Labels, id) {
		return info, fmt.Errorf("docker: sandbox %s: container %s belongs to another server or is not a StacyVM sandbox: %w",
			id, containerName(id), provider.ErrSandboxNotFound)
	}
	return info, nil
}

// notRunning returns the error for calls on a container that is not
// running. It wraps ErrUnavailable, because Recover can start it again.
func notRunning(id string, state *container.State) error {
	detail := string(state.Status)
	if state.Status == container.StateExited {
		detail = fmt.Sprintf("exited with code %d", state.ExitCode)
		if state.OOMKilled {
			detail += " after the memory limit was reached"
		}
	}
	return fmt.Errorf("docker: sandbox %s: its container is %s; the next reconcile starts it again, or destroy it: %w",
		id, detail, provider.ErrUnavailable)
}

// agentPoll is the pause between attempts to reach a starting agent.
const agentPoll = 5 * time.Millisecond

// containerCheckInterval is how often waitAgent checks that the container
// is still running.
const containerCheckInterval = 250 * time.Millisecond

// waitAgent dials the agent of sandbox id until it completes the version
// handshake, the container stops, or Config.AgentTimeout passes.
func (p *Provider) waitAgent(ctx context.Context, id, containerID string) (*agent.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AgentTimeout)
	defer cancel()
	dial := socketDialer(p.sandboxDir(id))
	nextCheck := time.Now().Add(containerCheckInterval)
	for {
		c, err := agent.Dial(ctx, dial)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, agent.ErrProtocol) {
			return nil, fmt.Errorf("docker: sandbox %s: %w", id, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("docker: sandbox %s: the agent did not respond within %s: %w",
				id, p.cfg.AgentTimeout, err)
		}
		if time.Now().After(nextCheck) {
			if err := p.checkStarted(ctx, id, containerID); err != nil {
				return nil, err
			}
			nextCheck = time.Now().Add(containerCheckInterval)
		}
		select {
		case <-ctx.Done():
		case <-time.After(agentPoll):
		}
	}
}

// checkStarted returns an error with the container's exit code and last
// log lines when it has stopped.
func (p *Provider) checkStarted(ctx context.Context, id, containerID string) error {
	info, err := p.engine.ContainerInspect(ctx, containerID)
	if err != nil {
		return p.engineError("inspect sandbox "+id, err)
	}
	if info.State.Running {
		return nil
	}
	return p.stoppedBeforeAgent(ctx, id, containerID, info.State)
}

// stoppedBeforeAgent returns the error for a container that stopped before
// its agent responded, with its exit code and last log lines.
func (p *Provider) stoppedBeforeAgent(ctx context.Context, id, containerID string, state *container.State) error {
	lines, _ := p.containerLogs(ctx, containerID, 10)
	return fmt.Errorf("docker: sandbox %s: the container stopped (%s, exit code %d) before its agent responded; its last log lines: %q: %w",
		id, state.Status, state.ExitCode, strings.Join(lines, "\n"), provider.ErrUnavailable)
}
