package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// ExecRequest is a command as the API receives it.
type ExecRequest struct {
	Command string
	Args    []string
	Shell   bool // true: sh -c "command 'arg1' 'arg2'..."; false: argv
	Env     map[string]string
	Workdir string // absolute, or relative to /workspace; empty for /workspace
	Stdin   []byte
	Timeout time.Duration // 0 for the default

	// OnStart, when set, is called once the request has passed validation
	// and the sandbox's state check, right before the provider runs the
	// command. A streaming caller uses it to send its response headers, so
	// that a quiet command does not leave the client waiting for them.
	OnStart func()
}

// Exec runs a command in a running sandbox. The result's TimedOut is set
// when the timeout killed it; that is a result, not an error. The command
// ends with ctx, so a foreground exec ends with its request.
//
// In shell mode the command is a script for sh -c and each argument is
// appended single-quoted, so arguments are never expanded by the shell. In
// argv mode Command is the program and Args its arguments. The sandbox's
// environment is merged with req.Env, and req.Env wins.
//
// Errors: a *FieldError for bad input, a *provider.LimitError for a timeout
// above the maximum, ErrNotRunning, provider.ErrSandboxDestroyed, and the
// provider's error. When the provider reports that the runtime of a running
// sandbox is gone, and Recover confirms it, the record becomes destroyed
// with the error "runtime disappeared" and Exec returns an error wrapping
// provider.ErrSandboxDestroyed, like every later call.
func (m *Manager) Exec(ctx context.Context, id string, req ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	sb, err := m.running(ctx, id)
	if err != nil {
		return provider.ExecResult{}, err
	}
	preq, err := m.execRequest(sb, req)
	if err != nil {
		return provider.ExecResult{}, err
	}
	p, err := m.providerFor(sb)
	if err != nil {
		return provider.ExecResult{}, err
	}

	if req.OnStart != nil {
		req.OnStart()
	}
	start := m.now()
	res, err := p.Exec(ctx, id, preq, out)
	m.observeExec(sb.Provider, start, res, err)
	if err != nil {
		return res, m.providerError(ctx, sb, "exec in", err)
	}

	m.emit(ctx, EventExecCompleted, sb, map[string]any{
		"exit_code":   res.ExitCode,
		"timed_out":   res.TimedOut,
		"truncated":   res.Truncated,
		"duration_ms": res.Duration.Milliseconds(),
		"exit_reason": res.ExitReason,
	})
	m.log.Debug("exec completed", "sandbox_id", id, "provider", sb.Provider, "exit_code", res.ExitCode,
		"timed_out", res.TimedOut, "duration_ms", res.Duration.Milliseconds())
	return res, nil
}

// execRequest validates req and turns it into the provider's request for
// the sandbox sb.
func (m *Manager) execRequest(sb store.Sandbox, req ExecRequest) (provider.ExecRequest, error) {
	argv, err := buildArgv(req)
	if err != nil {
		return provider.ExecRequest{}, err
	}
	workdir, err := resolveWorkdir(req.Workdir)
	if err != nil {
		return provider.ExecRequest{}, err
	}
	timeout, err := durationOrDefault("timeout", req.Timeout,
		m.limits.DefaultExecTimeout, m.limits.MaxExecTimeout, "max_exec_timeout")
	if err != nil {
		return provider.ExecRequest{}, err
	}
	if err := validateEnv("env", req.Env); err != nil {
		return provider.ExecRequest{}, err
	}

	env := maps.Clone(sb.Env)
	if env == nil {
		env = make(map[string]string, len(req.Env))
	}
	maps.Copy(env, req.Env)

	return provider.ExecRequest{
		Argv:           argv,
		Env:            env,
		Workdir:        workdir,
		Stdin:          req.Stdin,
		Timeout:        timeout,
		MaxOutputBytes: m.limits.MaxOutputBytes,
	}, nil
}

// buildArgv returns the argument vector for req: ["sh", "-c", script] in
// shell mode, where script is the command followed by the quoted
// arguments, and [command, args...] otherwise.
func buildArgv(req ExecRequest) ([]string, error) {
	if strings.TrimSpace(req.Command) == "" {
		return nil, invalid("command", "must not be empty")
	}
	if strings.IndexByte(req.Command, 0) >= 0 {
		return nil, invalid("command", "contains a NUL byte")
	}
	for i, arg := range req.Args {
		if strings.IndexByte(arg, 0) >= 0 {
			return nil, invalid("args["+strconv.Itoa(i)+"]", "contains a NUL byte")
		}
	}

	if !req.Shell {
		return append([]string{req.Command}, req.Args...), nil
	}
	var script strings.Builder
	script.WriteString(req.Command)
	for _, arg := range req.Args {
		script.WriteByte(' ')
		script.WriteString(shellQuote(arg))
	}
	return []string{"sh", "-c", script.String()}, nil
}

// shellQuote quotes s as one word for a POSIX shell. Inside single quotes
// nothing is special, so only a single quote needs care: it becomes a
// closing quote, a backslash-escaped quote and an opening quote.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// providerError wraps an error that the provider returned for the sandbox
// sb. verb names the operation, such as "exec in". When err wraps
// provider.ErrSandboxNotFound, providerError checks whether the runtime is
// really gone and, if so, records the sandbox as destroyed and returns an
// error wrapping provider.ErrSandboxDestroyed.
func (m *Manager) providerError(ctx context.Context, sb store.Sandbox, verb string, err error) error {
	wrapped := fmt.Errorf("%s sandbox %s: %w", verb, sb.ID, err)
	if !errors.Is(err, provider.ErrSandboxNotFound) {
		return wrapped
	}
	if vanishedErr := m.checkVanished(ctx, sb); vanishedErr != nil {
		return vanishedErr
	}
	return wrapped
}

// checkVanished calls the provider's Recover to check whether the runtime
// of the running sandbox sb still exists. When it does not, checkVanished
// records the sandbox as destroyed and returns the error for calls on it.
// It returns nil when the runtime exists or Recover fails for another
// reason, such as an unreachable provider.
func (m *Manager) checkVanished(ctx context.Context, sb store.Sandbox) error {
	p, err := m.providerFor(sb)
	if err != nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
	rerr := p.Recover(rctx, sb.ID)
	cancel()
	if !errors.Is(rerr, provider.ErrSandboxNotFound) {
		return nil
	}

	op, _ := m.tryBegin(sb.ID, opReconcile)
	if op == nil {
		// A destroy or reconcile is acting on the sandbox; report its
		// current state instead of racing it.
		return m.stateError(ctx, sb.ID)
	}
	defer m.end(sb.ID, op, nil)

	current, err := m.Get(ctx, sb.ID)
	if err != nil {
		return err
	}
	if current.State != store.StateRunning {
		return checkRunning(current)
	}
	if err := m.markDestroyed(ctx, sb.ID, reasonVanished, reasonVanished, m.now()); err != nil {
		return err
	}
	return m.stateError(ctx, sb.ID)
}

// stateError returns the error that running gives for the record id now,
// or nil when it is running.
func (m *Manager) stateError(ctx context.Context, id string) error {
	sb, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	return checkRunning(sb)
}
