package mock

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stacyvm/stacyvm/internal/procexec"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// defaultPath is the PATH of every command unless SpawnSpec.Env or the
// request sets one. It names host directories, because commands run on the
// host.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultWorkdir is the working directory of a request without one.
const defaultWorkdir = "/workspace"

// Exec runs req on the host through procexec, in the host directory of
// req.Workdir inside the sandbox's rootfs. The environment is built from
// the defaults and the sandbox's and request's Env only, so the server's own
// environment never reaches the command. Destroy stops a running Exec,
// which then returns an error wrapping ErrSandboxDestroyed.
func (p *Provider) Exec(ctx context.Context, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	sb, err := p.lookup(id)
	if err != nil {
		return provider.ExecResult{}, err
	}
	if len(req.Argv) == 0 {
		return provider.ExecResult{}, fmt.Errorf("mock: exec in %s: empty argv: %w", id, provider.ErrInvalidArgument)
	}
	if !sb.begin() {
		return provider.ExecResult{}, fmt.Errorf("mock: sandbox %s: %w", id, provider.ErrSandboxNotFound)
	}
	defer sb.running.Done()

	dir, err := sb.workdir(ctx, req.Workdir)
	if err != nil {
		return provider.ExecResult{}, err
	}

	// The command stops when the request ends or the sandbox is destroyed.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnDestroy := context.AfterFunc(sb.ctx, cancel)
	defer stopOnDestroy()

	res, err := procexec.Run(runCtx, procexec.Command{
		Argv:           req.Argv,
		Env:            sb.env(req.Env),
		Dir:            dir,
		Stdin:          req.Stdin,
		Timeout:        req.Timeout,
		MaxOutputBytes: req.MaxOutputBytes,
	}, out)
	sb.logExec(req.Argv, res, err)

	if err != nil && ctx.Err() == nil && sb.ctx.Err() != nil {
		return res, fmt.Errorf("mock: exec in %s: %w", id, provider.ErrSandboxDestroyed)
	}
	if err != nil {
		return res, fmt.Errorf("mock: exec in %s: %w", id, err)
	}
	return res, nil
}

// workdir creates the sandbox directory workdir through the file API, so it
// stays inside the rootfs, and returns its host path. A workdir whose host
// path leads out of the rootfs through a symlink gives ErrPathEscapes.
func (sb *sandbox) workdir(ctx context.Context, workdir string) (string, error) {
	if workdir == "" {
		workdir = defaultWorkdir
	}
	if err := sb.files.Mkdir(ctx, workdir, 0o755); err != nil {
		return "", err
	}

	dir, err := filepath.EvalSymlinks(filepath.Join(sb.rootfs, workdir))
	if err != nil {
		return "", &provider.PathError{Op: "exec", Path: workdir, Err: err}
	}
	if dir != sb.realRootfs && !strings.HasPrefix(dir, sb.realRootfs+string(filepath.Separator)) {
		return "", &provider.PathError{Op: "exec", Path: workdir, Err: provider.ErrPathEscapes}
	}
	return dir, nil
}

// env returns the command's environment: the defaults, then the sandbox's
// Env, then the request's, later ones winning, sorted by name.
func (sb *sandbox) env(request map[string]string) []string {
	vars := map[string]string{
		"PATH":   defaultPath,
		"HOME":   filepath.Join(sb.rootfs, "home"),
		"TMPDIR": filepath.Join(sb.rootfs, "tmp"),
		"LANG":   "C.UTF-8",
	}
	maps.Copy(vars, sb.state.Env)
	maps.Copy(vars, request)

	env := make([]string, 0, len(vars))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, k+"="+vars[k])
	}
	return env
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
