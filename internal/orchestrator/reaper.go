package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// Reap runs one pass of the reaper: it destroys every live sandbox whose
// expiry has passed, with at most ReapParallelism destroys at once, and
// returns how many it destroyed. Sandboxes with a spawn, destroy or
// reconcile action in flight are left for the next pass. A failed destroy
// leaves the record in the error state, and Reap returns the failures
// joined. The reaper retries each failed sandbox with a backoff that
// doubles from the reap interval up to 5 minutes. Reap returns early when
// ctx is done.
func (m *Manager) Reap(ctx context.Context) (int, error) {
	live, err := m.store.ListSandboxes(ctx, store.Filter{Live: true})
	if err != nil {
		return 0, fmt.Errorf("reap: list live sandboxes: %w", err)
	}

	m.forgetRetries(live)

	now := m.now()
	var expired []string
	for _, sb := range live {
		if sb.ExpiresAt.Before(now) && !m.backingOff(sb.ID, now) {
			expired = append(expired, sb.ID)
		}
	}

	var destroyed atomic.Int64
	var errsMu sync.Mutex
	var errs []error
	forEachLimited(ctx, expired, m.cfg.ReapParallelism, func(id string) {
		ok, err := m.reapOne(ctx, id)
		if ok {
			destroyed.Add(1)
		}
		if err != nil {
			errsMu.Lock()
			errs = append(errs, err)
			errsMu.Unlock()
		}
	})
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("reap: %w", err))
	}
	m.countReaped(int(destroyed.Load()))
	return int(destroyed.Load()), errors.Join(errs...)
}

// reapOne destroys the sandbox id if it is still live and expired once its
// operation slot is taken. It reports whether it destroyed it.
func (m *Manager) reapOne(ctx context.Context, id string) (bool, error) {
	op, _ := m.tryBegin(id, opDestroy)
	if op == nil {
		return false, nil
	}
	var err error
	defer func() { m.end(id, op, err) }()

	// The record may have been extended or destroyed since the listing.
	sb, err := m.Get(ctx, id)
	if err != nil {
		return false, err
	}
	if sb.State == store.StateDestroyed || !sb.ExpiresAt.Before(m.now()) {
		return false, nil
	}

	if !m.retrying(id) {
		m.emit(ctx, EventExpired, sb, map[string]any{"expires_at": sb.ExpiresAt})
		m.log.Info("sandbox expired", "sandbox_id", id, "provider", sb.Provider, "op", "reap",
			"expires_at", sb.ExpiresAt.UTC().Format(time.RFC3339))
	}
	err = m.destroyClaimed(ctx, id, reasonExpired)
	m.recordReap(id, err)
	return err == nil, err
}

// reapRetry is the backoff state of a sandbox whose reaper destroy failed.
type reapRetry struct {
	failures int
	next     time.Time // no new attempt before this time
}

// maxReapBackoff bounds the wait between destroy attempts on one sandbox.
const maxReapBackoff = 5 * time.Minute

// backingOff reports whether the reaper should skip id at now because its
// last destroy failed recently.
func (m *Manager) backingOff(id string, now time.Time) bool {
	m.reapMu.Lock()
	defer m.reapMu.Unlock()
	r, ok := m.reapRetries[id]
	return ok && now.Before(r.next)
}

// retrying reports whether an earlier reaper destroy of id failed, so that
// the sandbox.expired event was already sent.
func (m *Manager) retrying(id string) bool {
	m.reapMu.Lock()
	defer m.reapMu.Unlock()
	_, ok := m.reapRetries[id]
	return ok
}

// forgetRetries drops the backoff of sandboxes that are no longer live,
// such as those destroyed through the API after a failed reap.
func (m *Manager) forgetRetries(live []store.Sandbox) {
	m.reapMu.Lock()
	defer m.reapMu.Unlock()
	if len(m.reapRetries) == 0 {
		return
	}
	ids := make(map[string]bool, len(live))
	for _, sb := range live {
		ids[sb.ID] = true
	}
	for id := range m.reapRetries {
		if !ids[id] {
			delete(m.reapRetries, id)
		}
	}
}

// recordReap updates the backoff of id after a destroy attempt. Each
// failure doubles the wait, starting at the reap interval, up to
// maxReapBackoff.
func (m *Manager) recordReap(id string, err error) {
	m.reapMu.Lock()
	defer m.reapMu.Unlock()
	if err == nil {
		delete(m.reapRetries, id)
		return
	}
	r := m.reapRetries[id]
	wait := m.cfg.ReapInterval << min(r.failures, 16)
	r.failures++
	r.next = m.now().Add(min(wait, maxReapBackoff))
	m.reapRetries[id] = r
}

// reapOnce runs Reap for the background loop and logs failures.
func (m *Manager) reapOnce(ctx context.Context) {
	n, err := m.Reap(ctx)
	if err != nil && ctx.Err() == nil {
		m.log.Error("reap failed", "op", "reap", "destroyed", n, "error", err)
		return
	}
	if n > 0 {
		m.log.Debug("reap pass done", "op", "reap", "destroyed", n)
	}
}

// forEachLimited calls fn for each item with at most limit calls at once,
// and returns when all started calls have returned. It starts no new calls
// after ctx is done.
func forEachLimited[T any](ctx context.Context, items []T, limit int, fn func(T)) {
	if limit < 1 {
		limit = 1
	}
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, item := range items {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			fn(item)
		})
	}
	wg.Wait()
}
