package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// Destroy destroys the sandbox. It is idempotent: destroying a destroyed
// sandbox returns nil. Unknown IDs give provider.ErrSandboxNotFound.
//
// A destroy that arrives while another destroy of the same sandbox is in
// flight waits for it and returns its result. One that arrives during the
// spawn waits for the spawn to finish and then destroys the sandbox. Once
// started, the provider destroy runs to completion even when ctx is
// canceled, bounded by the destroy timeout.
//
// When the provider fails, the record moves to the error state with the
// cause and Destroy returns the error. A later Destroy or the reaper
// retries.
// When the record's provider is not registered in this server (after a
// restart with another configuration), the record moves to the error state
// and the error wraps provider.ErrUnavailable, because the runtime may
// still exist and must not be forgotten.
func (m *Manager) Destroy(ctx context.Context, id string) error {
	op, joined, err := m.begin(ctx, id, opDestroy, true)
	if joined {
		return err
	}
	if err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", id, err)
	}

	err = m.destroyClaimed(ctx, id, reasonRequest)
	m.end(id, op, err)
	return err
}

// destroyClaimed destroys the sandbox id, whose operation slot the caller
// holds. reason is recorded in the sandbox.destroyed event.
func (m *Manager) destroyClaimed(ctx context.Context, id, reason string) error {
	sb, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	if sb.State == store.StateDestroyed {
		return nil
	}
	p, ok := m.registry.Lookup(sb.Provider)
	if !ok {
		err := m.registry.errProviderGone(id, sb.Provider)
		m.markError(ctx, id, err.Error())
		return err
	}

	ctx = context.WithoutCancel(ctx)
	start := m.now()
	sb, err = m.update(ctx, id, func(r *store.Sandbox) error {
		if r.State == store.StateDestroyed {
			return errSkipUpdate
		}
		r.State = store.StateDestroying
		return nil
	})
	if err != nil {
		return err
	}
	if sb.State == store.StateDestroyed {
		return nil
	}

	if err := m.destroyRuntime(ctx, p, id); err != nil {
		err = fmt.Errorf("destroy sandbox %s on provider %s: %w", id, p.Name(), err)
		m.markError(ctx, id, err.Error())
		return err
	}
	return m.markDestroyed(ctx, id, reason, "", start)
}

// destroyRuntime calls p.Destroy for id, detached from ctx's cancellation
// and bounded by the destroy timeout. A runtime that is
// already gone is not an error.
func (m *Manager) destroyRuntime(ctx context.Context, p provider.Provider, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.destroyTimeout)
	defer cancel()
	err := p.Destroy(ctx, id)
	if errors.Is(err, provider.ErrSandboxNotFound) {
		return nil
	}
	return err
}

// markDestroyed records that the runtime of id is gone, appends a
// sandbox.destroyed event with reason, and logs the duration since start.
// cause, when not empty, is stored in the record's Error, so that people
// see why the manager ended a sandbox without a Destroy call.
func (m *Manager) markDestroyed(ctx context.Context, id, reason, cause string, start time.Time) error {
	var changed bool
	sb, err := m.update(ctx, id, func(r *store.Sandbox) error {
		if r.State == store.StateDestroyed {
			return errSkipUpdate
		}
		changed = true
		r.State = store.StateDestroyed
		r.DestroyedAt = m.now()
		r.Error = cause
		return nil
	})
	if err != nil {
		return fmt.Errorf("record sandbox %s as destroyed: %w", id, err)
	}
	if !changed {
		return nil
	}

	elapsed := m.now().Sub(start).Milliseconds()
	m.emit(ctx, EventDestroyed, sb, map[string]any{"reason": reason, "duration_ms": elapsed})
	m.log.Info("sandbox destroyed", "sandbox_id", id, "provider", sb.Provider,
		"reason", reason, "duration_ms", elapsed)
	return nil
}

// markError moves the live record id to the error state with msg and
// appends a sandbox.error event when the state or the message changed. It
// reports whether the record is now in the error state. A failed store
// update is logged and not returned, because the caller is already
// returning or counting the failure that msg describes.
func (m *Manager) markError(ctx context.Context, id, msg string) bool {
	var changed bool
	sb, err := m.update(context.WithoutCancel(ctx), id, func(r *store.Sandbox) error {
		if r.State == store.StateDestroyed || (r.State == store.StateError && r.Error == msg) {
			return errSkipUpdate
		}
		changed = true
		r.State = store.StateError
		r.Error = msg
		return nil
	})
	if err != nil {
		m.log.Error("record sandbox error state failed", "sandbox_id", id, "error", err, "cause", msg)
		return false
	}
	if changed {
		m.emit(ctx, EventError, sb, map[string]any{"error": msg})
		m.log.Debug("sandbox moved to the error state", "sandbox_id", id, "provider", sb.Provider, "error", msg)
	}
	return sb.State == store.StateError
}
