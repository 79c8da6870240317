package proot

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// defaultWorkdir is the working directory of a request without one.
const defaultWorkdir = "/workspace"

// Exec runs req through an agent of the sandbox, which runs it under PRoot
// with the procexec rules: the whole process tree dies at the timeout, on
// cancellation and shortly after the main process exits. The working
// directory is created through the file view first, so that it is
// created only where the sandbox may write and belongs to the sandbox's
// user. The environment is built from the defaults and the sandbox's and
// request's Env only. Destroy stops a running Exec, which then returns an
// error wrapping ErrSandboxDestroyed.
func (p *Provider) Exec(ctx context.Context, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return provider.ExecResult{}, err
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return provider.ExecResult{}, fmt.Errorf("proot: exec in %s: empty argv: %w", id, provider.ErrInvalidArgument)
	}
	if !sb.begin() {
		return provider.ExecResult{}, fmt.Errorf("proot: sandbox %s: %w", id, provider.ErrSandboxNotFound)
	}
	defer sb.running.Done()

	if req.Workdir == "" {
		req.Workdir = defaultWorkdir
	}
	if err := sb.files.Mkdir(ctx, req.Workdir, 0o755); err != nil {
		if errors.Is(err, provider.ErrPathExists) {
			return provider.ExecResult{}, &provider.PathError{Op: "exec", Path: req.Workdir, Err: provider.ErrNotDirectory}
		}
		return provider.ExecResult{}, err
	}

	// The command stops when the request ends or the sandbox is destroyed.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnDestroy := context.AfterFunc(sb.ctx, cancel)
	defer stopOnDestroy()

	conn, err := p.acquireAgent(runCtx, sb)
	if err != nil {
		return provider.ExecResult{}, p.execError(ctx, sb, err)
	}
	req.Env = sb.env(req.Env)
	res, err := conn.client.Exec(runCtx, req, out)
	p.releaseAgent(sb, conn, err)
	sb.logExec(req.Argv, res, err)
	if err != nil {
		return res, p.execError(ctx, sb, err)
	}
	return res, nil
}

// execError wraps an error of Exec, reporting ErrSandboxDestroyed when the
// sandbox was destroyed during the call rather than the request ending.
func (p *Provider) execError(ctx context.Context, sb *sandbox, err error) error {
	if ctx.Err() == nil && sb.ctx.Err() != nil {
		return fmt.Errorf("proot: exec in %s: %w", sb.id, provider.ErrSandboxDestroyed)
	}
	return fmt.Errorf("proot: exec in %s: %w", sb.id, err)
}

// env returns the command's environment: the defaults, then the sandbox's
// Env, then the request's, later ones winning. The agent merges it over
// its own environment, which launch sets to the same defaults, so nothing
// of the server's environment reaches a command.
func (sb *sandbox) env(request map[string]string) map[string]string {
	vars := map[string]string{
		"PATH":   agent.DefaultPath,
		"HOME":   "/home",
		"TMPDIR": "/tmp",
		"LANG":   "C.UTF-8",
	}
	maps.Copy(vars, sb.state.Env)
	maps.Copy(vars, request)
	return vars
}

// logExec records one exec in the console log.
func (sb *sandbox) logExec(argv []string, res provider.ExecResult, err error) {
	summary := fmt.Sprintf("%q", argv)
	if len(summary) > 200 {
		summary = summary[:200] + "..."
	}
	switch {
	case err != nil:
		sb.logf("exec %s error=%q duration=%s", summary, err.Error(), res.Duration)
	case res.TimedOut:
		sb.logf("exec %s exit=%d timed_out duration=%s", summary, res.ExitCode, res.Duration)
	default:
		sb.logf("exec %s exit=%d duration=%s", summary, res.ExitCode, res.Duration)
	}
}
