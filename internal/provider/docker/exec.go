package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// stopWait bounds how long Exec waits for the engine to report a container
// stopped after its agent connection broke.
const stopWait = 2 * time.Second

// Exec runs req through the sandbox's agent. An empty Workdir means
// /workspace. The sandbox's Env is the container's environment, which the
// agent passes to every command, and req.Env is added on top.
//
// The agent reports an OOM kill of the command it started. Exec also reads
// the container's cgroup counters on the host before and after the
// command, and reports:
//
//   - exit code 137 with ExitReason "oom" when the OOM killer ran during
//     the command, also for a shell whose child was killed;
//   - ExitReason "pids" for a failed command during which a fork failed at
//     the pids limit.
//
// The counters cover the whole sandbox, so an OOM kill or a failed fork
// caused by a concurrent command marks this one too.
//
// With runsc the memory limit covers gVisor's kernel as well, so the host's
// OOM killer ends the whole sandbox. And a command that uses up the pids
// limit can leave the agent no thread, so that it exits. In both cases Exec
// reports exit code 137 with ExitReason "oom" or "pids", and starts the
// container again: the sandbox's files are kept, its processes are not.
func (p *Provider) Exec(ctx context.Context, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	if len(req.Argv) == 0 {
		return provider.ExecResult{}, fmt.Errorf("docker: exec in %s: empty argv: %w", id, provider.ErrInvalidArgument)
	}
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return provider.ExecResult{}, err
	}
	if req.Workdir == "" {
		req.Workdir = workspaceDir
	}

	started := time.Now()
	before := sb.counters.read()
	res, err := sb.client.Exec(ctx, req, out)
	if err != nil {
		return p.execFailed(ctx, sb, started, err)
	}
	return classifyExit(res, before, sb.counters), nil
}

// classifyExit sets the exit reason of res from the cgroup counters read
// before the command and now.
func classifyExit(res provider.ExecResult, before counterSample, counters cgroupCounters) provider.ExecResult {
	if res.TimedOut || res.ExitCode == 0 || res.ExitReason == provider.ExitOOM {
		return res
	}
	after := counters.read()
	switch {
	case res.ExitCode == 137 && oomKilledDuring(before, after):
		res.ExitReason = provider.ExitOOM
	case res.ExitReason == "" && pidsLimitHitDuring(before, after):
		res.ExitReason = provider.ExitPids
	}
	return res
}

// execFailed handles an exec whose agent call failed. When the container
// stopped during the command because the sandbox ran out of memory or out
// of processes, the command's result reports it and the container is started
// again. Other errors are refined by callError.
func (p *Provider) execFailed(ctx context.Context, sb *sandbox, started time.Time, err error) (provider.ExecResult, error) {
	if ctx.Err() != nil || sb.isDestroyed() || !errors.Is(err, provider.ErrUnavailable) {
		return provider.ExecResult{}, p.callError(ctx, sb, "exec", err)
	}
	state, stopped := p.waitStopped(ctx, sb)
	if !stopped {
		return provider.ExecResult{}, p.callError(ctx, sb, "exec", err)
	}

	elapsed := time.Since(started)
	lines, _ := p.containerLogs(ctx, sb.containerID, maxCrashLines)
	reason := stopReason(state, lines)
	p.log.Warn("sandbox container stopped during an exec", "sandbox_id", sb.id,
		"exit_code", state.ExitCode, "oom_killed", state.OOMKilled, "exit_reason", reason)
	if reason == "" {
		return provider.ExecResult{}, p.callError(ctx, sb, "exec", err)
	}

	p.forget(sb)
	restartCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := p.attach(restartCtx, sb.id, attachStart); err != nil {
		p.log.Error("start a sandbox again after its container stopped", "sandbox_id", sb.id, "error", err)
	}
	return provider.ExecResult{ExitCode: 137, Duration: elapsed, ExitReason: reason}, nil
}

// maxCrashLines bounds the log lines read to find why a container stopped.
const maxCrashLines = 2000

// threadFailure is the message the Go runtime prints before it exits when it
// cannot create an OS thread, which the agent meets when the pids limit is
// used up, as by a fork bomb.
const threadFailure = "runtime: failed to create new OS thread"

// stopReason returns the exit reason of a command during which its
// container stopped: "oom" when the OOM killer stopped it or it was killed
// by SIGKILL, "pids" when the agent exited because the pids limit left it no
// thread, else "".
func stopReason(state *container.State, logLines []string) string {
	if state.OOMKilled {
		return provider.ExitOOM
	}
	for _, line := range logLines {
		if strings.HasPrefix(line, threadFailure) {
			return provider.ExitPids
		}
	}
	// NOTE: with runsc the engine does not always set OOMKilled when the
	// host's OOM killer ends the sandbox, and the container's cgroup and
	// its counters are gone by then. A SIGKILL (exit 137) that StacyVM did
	// not send, during a command, is taken as the memory limit: that is an
	// inference, not a reading.
	if state.ExitCode == 137 {
		return provider.ExitOOM
	}
	return ""
}

// waitStopped waits up to stopWait for the engine to report sb's container
// stopped, and returns its state and true once it is.
func (p *Provider) waitStopped(ctx context.Context, sb *sandbox) (*container.State, bool) {
	deadline := time.Now().Add(stopWait)
	for {
		info, err := p.inspect(ctx, sb.id)
		if err != nil {
			return nil, false
		}
		if !info.State.Running {
			return info.State, true
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(50 * time.Millisecond):
		}
	}
}
