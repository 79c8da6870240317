package docker

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// engineError wraps an error of the engine call op with the provider
// sentinel for its kind. Callers handle "not found" themselves, because
// what was not found depends on the call.
func (p *Provider) engineError(op string, err error) error {
	switch {
	case client.IsErrConnectionFailed(err):
		return p.engineDown(fmt.Errorf("%s: %w", op, err))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("docker: %s: %w", op, err)
	case cerrdefs.IsInvalidArgument(err):
		return fmt.Errorf("docker: %s: %w: %w", op, provider.ErrInvalidArgument, err)
	case cerrdefs.IsUnavailable(err):
		return fmt.Errorf("docker: %s: %w: %w", op, provider.ErrUnavailable, err)
	}
	return fmt.Errorf("docker: %s: %w", op, err)
}

// callError refines the error of an agent call on sb. A call cut short by
// Destroy gives ErrSandboxDestroyed. When the agent could not be reached,
// the container is inspected: a removed container gives
// ErrSandboxNotFound, so that the manager checks with Recover, and a
// stopped one an ErrUnavailable error that states why it stopped.
func (p *Provider) callError(ctx context.Context, sb *sandbox, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("docker: %s in sandbox %s: %w", op, sb.id, err)
	}
	if sb.isDestroyed() {
		return fmt.Errorf("docker: %s in sandbox %s: %w: %w", op, sb.id, provider.ErrSandboxDestroyed, errDestroyed)
	}
	if !errors.Is(err, provider.ErrUnavailable) {
		return err
	}

	info, inspectErr := p.inspect(ctx, sb.id)
	switch {
	case errors.Is(inspectErr, provider.ErrSandboxNotFound):
		p.forget(sb)
		return fmt.Errorf("docker: %s in sandbox %s: its container was removed: %w", op, sb.id, provider.ErrSandboxNotFound)
	case inspectErr != nil:
		return fmt.Errorf("docker: %s in sandbox %s: %w (inspecting the container failed too: %w)", op, sb.id, err, inspectErr)
	case !info.State.Running:
		p.forget(sb)
		return fmt.Errorf("docker: %s: %w", op, notRunning(sb.id, info.State))
	}
	return fmt.Errorf("docker: %s in sandbox %s: %w", op, sb.id, err)
}
