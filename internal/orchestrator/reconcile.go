package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// recoverTimeout bounds one Recover or ListRuntimes call.
const recoverTimeout = 30 * time.Second

// ReconcileReport counts what one Reconcile pass found and did.
type ReconcileReport struct {
	Checked  int // live records examined
	Skipped  int // records and runtimes with a spawn, destroy or other action in flight in this process
	Running  int // running records whose runtime is live
	Restored int // error records whose runtime is live again, now running
	Gone     int // records whose runtime no longer exists, now destroyed
	Cleaned  int // records left in creating or destroying by a stopped server, now destroyed
	Errored  int // records now in the error state: provider missing or unreachable, or a destroy failed
	Adopted  int // runtimes without a record, now recorded
	Removed  int // runtimes of destroyed records, now destroyed
	Failed   int // actions that failed on the store, or inventories that could not be listed
}

// outcome is the result of reconcile for one record or runtime.
type outcome int

const (
	outNone outcome = iota
	outSkipped
	outRunning
	outRestored
	outGone
	outCleaned
	outErrored
	outAdopted
	outRemoved
	outFailed
)

// add counts o in r.
func (r *ReconcileReport) add(o outcome) {
	counters := map[outcome]*int{
		outSkipped:  &r.Skipped,
		outRunning:  &r.Running,
		outRestored: &r.Restored,
		outGone:     &r.Gone,
		outCleaned:  &r.Cleaned,
		outErrored:  &r.Errored,
		outAdopted:  &r.Adopted,
		outRemoved:  &r.Removed,
		outFailed:   &r.Failed,
	}
	if c, ok := counters[o]; ok {
		*c++
	}
}

// changed reports whether the pass changed any record or runtime.
func (r ReconcileReport) changed() bool {
	return r.Restored+r.Gone+r.Cleaned+r.Errored+r.Adopted+r.Removed+r.Failed > 0
}

// logAttrs returns the counts as slog key-value pairs.
func (r ReconcileReport) logAttrs() []any {
	return []any{
		"op", "reconcile", "checked", r.Checked, "skipped", r.Skipped, "running", r.Running,
		"restored", r.Restored, "gone", r.Gone, "cleaned", r.Cleaned, "errored", r.Errored,
		"adopted", r.Adopted, "removed", r.Removed, "failed", r.Failed,
	}
}

// Reconcile brings the store and the providers into agreement. For every
// live record:
//
//   - a provider missing from the registry: the record moves to error with
//     a message naming the provider;
//   - creating (the server stopped during the spawn): the runtime is
//     destroyed and the record becomes destroyed with the error "server
//     stopped during spawn";
//   - destroying: the destroy is finished;
//   - running or error: the provider's Recover decides. A live runtime is
//     running (an error record is restored), a vanished one is destroyed
//     with the error "runtime no longer exists", and any other failure
//     leaves the record in error with the cause.
//
// Then, for every provider that implements provider.Inventory, runtimes
// without a record are adopted as running records that expire after the
// default TTL, and runtimes whose record is destroyed are destroyed.
//
// Records and runtimes with a spawn, destroy or other action in flight in
// this process are skipped. Reconcile returns an error only when it cannot
// list the records; every other failure is logged, counted in Failed or
// recorded in the record.
//
// NOTE: a record in error after a failed destroy or a failed spawn cleanup
// returns to running when Recover finds its runtime usable. It is then
// destroyed by a new Destroy call or by the reaper when it expires.
func (m *Manager) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var report ReconcileReport
	live, err := m.store.ListSandboxes(ctx, store.Filter{Live: true})
	if err != nil {
		return report, fmt.Errorf("reconcile: list live sandboxes: %w", err)
	}
	report.Checked = len(live)

	var mu sync.Mutex
	forEachLimited(ctx, live, m.cfg.ReapParallelism, func(sb store.Sandbox) {
		o := m.reconcileRecord(ctx, sb.ID)
		mu.Lock()
		report.add(o)
		mu.Unlock()
	})

	for _, p := range m.registry.All() {
		if inv, ok := p.(provider.Inventory); ok && ctx.Err() == nil {
			m.reconcileInventory(ctx, p, inv, &report)
		}
	}
	m.countReconcile(report)
	return report, nil
}

// reconcileOnce runs Reconcile for the background loop and logs the result.
func (m *Manager) reconcileOnce(ctx context.Context) {
	report, err := m.Reconcile(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		m.log.Error("reconcile failed", "op", "reconcile", "error", err)
	case report.changed():
		m.log.Info("reconcile done", report.logAttrs()...)
	default:
		m.log.Debug("reconcile done", report.logAttrs()...)
	}
}

// reconcileRecord applies the record rules of Reconcile to the record id.
func (m *Manager) reconcileRecord(ctx context.Context, id string) outcome {
	op, _ := m.tryBegin(id, opReconcile)
	if op == nil {
		return outSkipped
	}
	defer m.end(id, op, nil)

	sb, err := m.Get(ctx, id)
	if err != nil {
		m.log.Error("reconcile: read record failed", "sandbox_id", id, "op", "reconcile", "error", err)
		return outFailed
	}
	if sb.State == store.StateDestroyed {
		return outNone
	}

	p, ok := m.registry.Lookup(sb.Provider)
	if !ok {
		msg := m.registry.errProviderGone(id, sb.Provider).Error()
		m.log.Info("reconcile: provider not registered", "sandbox_id", id, "provider", sb.Provider, "op", "mark_error")
		return m.reconcileError(ctx, sb, msg)
	}

	switch sb.State {
	case store.StateCreating:
		m.log.Info("reconcile: destroying a sandbox whose spawn was interrupted", "sandbox_id", id,
			"provider", sb.Provider, "op", "cleanup_spawn")
		return m.finishDestroy(ctx, p, sb, reasonSpawnStopped, reasonSpawnStopped)
	case store.StateDestroying:
		m.log.Info("reconcile: finishing an interrupted destroy", "sandbox_id", id,
			"provider", sb.Provider, "op", "finish_destroy")
		return m.finishDestroy(ctx, p, sb, reasonReconcile, "")
	default:
		return m.recoverRecord(ctx, p, sb)
	}
}

// finishDestroy destroys the runtime of sb and records the result. cause
// is stored in the destroyed record's Error.
func (m *Manager) finishDestroy(ctx context.Context, p provider.Provider, sb store.Sandbox, reason, cause string) outcome {
	start := m.now()
	if err := m.destroyRuntime(ctx, p, sb.ID); err != nil {
		msg := fmt.Sprintf("destroy on provider %s failed: %v", p.Name(), err)
		return m.reconcileError(ctx, sb, msg)
	}
	if err := m.markDestroyed(ctx, sb.ID, reason, cause, start); err != nil {
		m.log.Error("reconcile: record destroy failed", "sandbox_id", sb.ID, "provider", sb.Provider,
			"op", "reconcile", "error", err)
		return outFailed
	}
	return outCleaned
}

// recoverRecord calls the provider's Recover for a running or error record
// and updates the record from the result.
func (m *Manager) recoverRecord(ctx context.Context, p provider.Provider, sb store.Sandbox) outcome {
	rctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	err := p.Recover(rctx, sb.ID)
	cancel()

	switch {
	case err == nil && sb.State == store.StateRunning:
		m.log.Debug("reconcile: runtime is live", "sandbox_id", sb.ID, "provider", sb.Provider, "op", "recover")
		return outRunning
	case err == nil:
		return m.restore(ctx, sb)
	case errors.Is(err, provider.ErrSandboxNotFound):
		m.log.Info("reconcile: runtime no longer exists", "sandbox_id", sb.ID, "provider", sb.Provider,
			"op", "mark_gone")
		if err := m.markDestroyed(ctx, sb.ID, reasonRuntimeGone, reasonRuntimeGone, m.now()); err != nil {
			m.log.Error("reconcile: record destroy failed", "sandbox_id", sb.ID, "provider", sb.Provider,
				"op", "mark_gone", "error", err)
			return outFailed
		}
		return outGone
	case ctx.Err() != nil:
		return outNone
	default:
		msg := fmt.Sprintf("provider %s cannot recover the runtime: %v", p.Name(), err)
		m.log.Info("reconcile: runtime cannot be recovered", "sandbox_id", sb.ID, "provider", sb.Provider,
			"op", "mark_error", "error", err)
		return m.reconcileError(ctx, sb, msg)
	}
}

// restore moves an error record whose runtime is live back to running.
func (m *Manager) restore(ctx context.Context, sb store.Sandbox) outcome {
	restored, err := m.update(ctx, sb.ID, func(r *store.Sandbox) error {
		if r.State != store.StateError {
			return errSkipUpdate
		}
		r.State = store.StateRunning
		r.Error = ""
		return nil
	})
	if err != nil {
		m.log.Error("reconcile: record restore failed", "sandbox_id", sb.ID, "provider", sb.Provider,
			"op", "restore", "error", err)
		return outFailed
	}
	if restored.State != store.StateRunning {
		return outNone
	}

	m.emit(ctx, EventRunning, restored, map[string]any{"reason": reasonRecovered})
	m.log.Info("reconcile: runtime is live again", "sandbox_id", sb.ID, "provider", sb.Provider, "op", "restore")
	return outRestored
}

// reconcileError records msg on sb in the error state.
func (m *Manager) reconcileError(ctx context.Context, sb store.Sandbox, msg string) outcome {
	if !m.markError(ctx, sb.ID, msg) {
		return outFailed
	}
	return outErrored
}

// reconcileInventory adopts the runtimes of p that have no record and
// destroys those whose record is destroyed.
func (m *Manager) reconcileInventory(ctx context.Context, p provider.Provider, inv provider.Inventory, report *ReconcileReport) {
	lctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	runtimes, err := inv.ListRuntimes(lctx)
	cancel()
	if err != nil {
		m.log.Warn("reconcile: list runtimes failed; adoption skipped", "provider", p.Name(),
			"op", "list_runtimes", "error", err)
		report.add(outFailed)
		return
	}

	for _, rt := range runtimes {
		if ctx.Err() != nil {
			return
		}
		report.add(m.reconcileRuntime(ctx, p, rt))
	}
}

// reconcileRuntime applies the inventory rules of Reconcile to one runtime.
func (m *Manager) reconcileRuntime(ctx context.Context, p provider.Provider, rt provider.RuntimeInfo) outcome {
	if rt.ID == "" {
		m.log.Warn("reconcile: runtime without a sandbox ID ignored", "provider", p.Name(), "op", "adopt")
		return outNone
	}
	op, _ := m.tryBegin(rt.ID, opReconcile)
	if op == nil {
		return outSkipped
	}
	defer m.end(rt.ID, op, nil)

	sb, err := m.store.GetSandbox(ctx, rt.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return m.adopt(ctx, p, rt)
	case err != nil:
		m.log.Error("reconcile: read record failed", "sandbox_id", rt.ID, "provider", p.Name(),
			"op", "adopt", "error", err)
		return outFailed
	case sb.Provider != p.Name():
		m.log.Warn("reconcile: runtime ID belongs to a record of another provider; runtime left alone",
			"sandbox_id", rt.ID, "provider", p.Name(), "record_provider", sb.Provider, "op", "adopt")
		return outNone
	case sb.State != store.StateDestroyed:
		return outNone
	}

	m.log.Info("reconcile: destroying the runtime of a destroyed sandbox", "sandbox_id", rt.ID,
		"provider", p.Name(), "op", "remove_stale")
	if err := m.destroyRuntime(ctx, p, rt.ID); err != nil {
		m.log.Error("reconcile: destroy of a stale runtime failed", "sandbox_id", rt.ID, "provider", p.Name(),
			"op", "remove_stale", "error", err)
		return outFailed
	}
	return outRemoved
}

// adopt records a runtime that the store does not know. The record expires
// after the default TTL. When Recover fails, the record is stored in the
// error state so that people see it and the reaper removes it.
func (m *Manager) adopt(ctx context.Context, p provider.Provider, rt provider.RuntimeInfo) outcome {
	rctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	rerr := p.Recover(rctx, rt.ID)
	cancel()
	if errors.Is(rerr, provider.ErrSandboxNotFound) {
		return outNone
	}

	now := m.now()
	sb := store.Sandbox{
		ID:        rt.ID,
		State:     store.StateRunning,
		Provider:  p.Name(),
		Image:     rt.Image,
		MemoryMB:  rt.MemoryMB,
		VCPUs:     rt.VCPUs,
		OwnerID:   rt.OwnerID,
		Metadata:  rt.Metadata,
		CreatedAt: rt.CreatedAt,
		UpdatedAt: now,
		ExpiresAt: now.Add(m.limits.DefaultTTL),
	}
	if sb.CreatedAt.IsZero() {
		sb.CreatedAt = now
	}
	if rerr != nil {
		sb.State = store.StateError
		sb.Error = fmt.Sprintf("adopted, but provider %s cannot recover the runtime: %v", p.Name(), rerr)
	}

	if err := m.store.CreateSandbox(ctx, sb); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return outNone
		}
		m.log.Error("reconcile: record adopted runtime failed", "sandbox_id", rt.ID, "provider", p.Name(),
			"op", "adopt", "error", err)
		return outFailed
	}

	m.emit(ctx, EventAdopted, sb, map[string]any{
		"image":      sb.Image,
		"owner_id":   sb.OwnerID,
		"expires_at": sb.ExpiresAt,
	})
	m.log.Info("reconcile: runtime adopted", "sandbox_id", rt.ID, "provider", p.Name(), "op", "adopt",
		"state", sb.State, "expires_at", sb.ExpiresAt.UTC().Format(time.RFC3339))
	return outAdopted
}
