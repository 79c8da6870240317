//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"sync"
	"testing"

	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// TestConformance runs the provider conformance suite against agents
// started on the host, one per sandbox, with every call going through the
// client.
func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		New:       func(t *testing.T) provider.Provider { return newHostProvider(t, false) },
		HostPaths: true,
	})
}

// TestConformanceAsPID1 runs the suite against agents that are PID 1 of
// their own PID namespace, as inside a sandbox.
func TestConformanceAsPID1(t *testing.T) {
	agenttest.RequirePIDNamespace(t)
	conformance.Run(t, conformance.Harness{
		New:       func(t *testing.T) provider.Provider { return newHostProvider(t, true) },
		HostPaths: true,
	})
}

// hostProvider is a test-only provider whose sandboxes are agents in the
// host test mode, so the conformance suite exercises the agent protocol
// from end to end: client, wire, server, procexec and fileops.
type hostProvider struct {
	bin          string
	log          func(string)
	pidNamespace bool // run each agent as PID 1 of a new PID namespace

	mu        sync.Mutex
	sandboxes map[string]*hostSandbox
}

type hostSandbox struct {
	agent *agenttest.Agent
	env   map[string]string // SpawnSpec.Env, applied to every command
}

func newHostProvider(t *testing.T, pidNamespace bool) *hostProvider {
	p := &hostProvider{
		bin:          agenttest.Build(t),
		log:          func(line string) { t.Log("agent: " + line) },
		pidNamespace: pidNamespace,
		sandboxes:    make(map[string]*hostSandbox),
	}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for id, sb := range p.sandboxes {
			if err := sb.agent.Stop(); err != nil {
				t.Errorf("stop agent of %s: %v", id, err)
			}
		}
	})
	return p
}

func (p *hostProvider) Name() string { return "agent-host" }

func (p *hostProvider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		Isolation:   "none",
		Description: "stacyvm-agent processes on the host, one per sandbox, for testing the agent protocol.",
	}
}

func (p *hostProvider) Health(ctx context.Context) error { return nil }

func (p *hostProvider) Spawn(ctx context.Context, spec provider.SpawnSpec) error {
	p.mu.Lock()
	_, exists := p.sandboxes[spec.ID]
	p.mu.Unlock()
	if exists {
		return fmt.Errorf("sandbox %s already exists: %w", spec.ID, provider.ErrInvalidArgument)
	}

	a, err := agenttest.Launch(ctx, p.bin, agenttest.Options{Log: p.log, PIDNamespace: p.pidNamespace})
	if err != nil {
		return fmt.Errorf("spawn %s: %w", spec.ID, err)
	}
	p.mu.Lock()
	p.sandboxes[spec.ID] = &hostSandbox{agent: a, env: maps.Clone(spec.Env)}
	p.mu.Unlock()
	return nil
}

func (p *hostProvider) lookup(id string) (*hostSandbox, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sb, ok := p.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("sandbox %s: %w", id, provider.ErrSandboxNotFound)
	}
	return sb, nil
}

func (p *hostProvider) Recover(ctx context.Context, id string) error {
	sb, err := p.lookup(id)
	if err != nil {
		return err
	}
	return sb.agent.Client.Ping(ctx)
}

func (p *hostProvider) Destroy(ctx context.Context, id string) error {
	p.mu.Lock()
	sb, ok := p.sandboxes[id]
	delete(p.sandboxes, id)
	p.mu.Unlock()
	if !ok {
		return nil
	}
	return sb.agent.Stop()
}

func (p *hostProvider) Exec(ctx context.Context, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	sb, err := p.lookup(id)
	if err != nil {
		return provider.ExecResult{}, err
	}
	if len(sb.env) > 0 {
		env := maps.Clone(sb.env)
		maps.Copy(env, req.Env)
		req.Env = env
	}
	return sb.agent.Client.Exec(ctx, req, out)
}

func (p *hostProvider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	sb, err := p.lookup(id)
	if err != nil {
		return nil, err
	}
	return sb.agent.Client.ReadFile(ctx, path)
}

func (p *hostProvider) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	sb, err := p.lookup(id)
	if err != nil {
		return err
	}
	return sb.agent.Client.WriteFile(ctx, path, r, mode)
}

func (p *hostProvider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	sb, err := p.lookup(id)
	if err != nil {
		return provider.FileInfo{}, err
	}
	return sb.agent.Client.Stat(ctx, path)
}

func (p *hostProvider) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	sb, err := p.lookup(id)
	if err != nil {
		return nil, err
	}
	return sb.agent.Client.ListDir(ctx, path)
}

func (p *hostProvider) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	sb, err := p.lookup(id)
	if err != nil {
		return err
	}
	return sb.agent.Client.Mkdir(ctx, path, mode)
}

func (p *hostProvider) Remove(ctx context.Context, id, path string, recursive bool) error {
	sb, err := p.lookup(id)
	if err != nil {
		return err
	}
	return sb.agent.Client.Remove(ctx, path, recursive)
}

func (p *hostProvider) Move(ctx context.Context, id, oldPath, newPath string) error {
	sb, err := p.lookup(id)
	if err != nil {
		return err
	}
	return sb.agent.Client.Move(ctx, oldPath, newPath)
}

func (p *hostProvider) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	sb, err := p.lookup(id)
	if err != nil {
		return err
	}
	return sb.agent.Client.Chmod(ctx, path, mode)
}

func (p *hostProvider) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	sb, err := p.lookup(id)
	if err != nil {
		return nil, err
	}
	return sb.agent.Client.Glob(ctx, pattern)
}

func (p *hostProvider) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	sb, err := p.lookup(id)
	if err != nil {
		return nil, err
	}
	return sb.agent.Client.ReadArchive(ctx, path)
}

func (p *hostProvider) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	sb, err := p.lookup(id)
	if err != nil {
		return err
	}
	return sb.agent.Client.WriteArchive(ctx, path, r)
}
