package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// Lifecycle event types. Each event's Data is a JSON object with at least
// "id", "state" and "provider"; the comments name the other keys.
const (
	EventCreated       = "sandbox.created"   // image, owner_id, expires_at
	EventRunning       = "sandbox.running"   // duration_ms on spawn; reason after reconcile
	EventError         = "sandbox.error"     // error
	EventExpired       = "sandbox.expired"   // expires_at
	EventDestroyed     = "sandbox.destroyed" // reason, duration_ms when a destroy ran
	EventAdopted       = "sandbox.adopted"   // image, owner_id, expires_at
	EventExecCompleted = "exec.completed"    // exit_code, timed_out, duration_ms, exit_reason
)

// Reasons recorded in the "reason" key of sandbox.destroyed and
// sandbox.running events.
const (
	reasonRequest      = "request"
	reasonExpired      = "expired"
	reasonReconcile    = "reconcile"
	reasonRecovered    = "recovered"
	reasonVanished     = "runtime disappeared"
	reasonRuntimeGone  = "runtime no longer exists"
	reasonSpawnStopped = "server stopped during spawn"
)

// eventTimeout bounds one event append, which runs detached from the
// request so that a client disconnect does not lose the event.
const eventTimeout = 10 * time.Second

// defaultSubscriberBuffer is the channel capacity of a subscription whose
// requested buffer is not positive.
const defaultSubscriberBuffer = 256

// emit appends an event for sb to the store and publishes it to the
// subscribers. fields adds keys to the event's Data. A failed append is
// logged and not returned, because the transition it describes is already
// stored.
func (m *Manager) emit(ctx context.Context, typ string, sb store.Sandbox, fields map[string]any) {
	data := map[string]any{
		"id":       sb.ID,
		"state":    sb.State,
		"provider": sb.Provider,
	}
	maps.Copy(data, fields)
	raw, err := json.Marshal(data)
	if err != nil {
		m.log.Error("encode event failed", "sandbox_id", sb.ID, "op", typ, "error", err)
		return
	}

	e := store.Event{Type: typ, SandboxID: sb.ID, Time: m.now(), Data: raw}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventTimeout)
	defer cancel()

	m.emitMu.Lock()
	defer m.emitMu.Unlock()
	seq, err := m.store.AppendEvent(ctx, e)
	if err != nil {
		m.log.Error("append event failed", "sandbox_id", sb.ID, "provider", sb.Provider, "op", typ, "error", err)
		return
	}
	e.Seq = seq
	m.publish(e)
}

// EventsAfter returns up to limit stored events with Seq above after,
// oldest first; limit <= 0 returns all of them. Subscribers use it to read
// the events they missed.
func (m *Manager) EventsAfter(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	events, err := m.store.EventsAfter(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events after seq %d: %w", after, err)
	}
	return events, nil
}

// subscriber is one in-process event subscription.
type subscriber struct {
	ch chan store.Event
}

// Subscribe returns a channel that receives every event stored from now on,
// in Seq order, and a function that ends the subscription. buffer is the
// channel's capacity; a value <= 0 selects 256.
//
// Publishing does not wait for subscribers, so a slow subscriber cannot
// block the manager. When an event arrives while the subscriber's buffer is
// full, the subscriber has lagged: the manager drops it and closes its
// channel. Close also closes every channel. A subscriber whose channel is
// closed should read the events after the last Seq it received with
// EventsAfter and subscribe again. To resume without a gap, subscribe
// first, then read the backlog with EventsAfter, and skip channel events
// whose Seq is not above the last one read.
//
// The cancel function is idempotent and safe to call after the channel was
// closed.
func (m *Manager) Subscribe(buffer int) (<-chan store.Event, func()) {
	if buffer <= 0 {
		buffer = defaultSubscriberBuffer
	}
	sub := &subscriber{ch: make(chan store.Event, buffer)}

	m.subsMu.Lock()
	if m.subsClosed {
		m.subsMu.Unlock()
		close(sub.ch)
		return sub.ch, func() {}
	}
	m.subs[sub] = struct{}{}
	m.subsMu.Unlock()

	return sub.ch, func() { m.unsubscribe(sub) }
}

// unsubscribe removes sub and closes its channel, unless that already
// happened.
func (m *Manager) unsubscribe(sub *subscriber) {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	if _, ok := m.subs[sub]; ok {
		delete(m.subs, sub)
		close(sub.ch)
	}
}

// publish sends e to every subscriber without blocking, dropping the
// subscribers whose buffer is full.
func (m *Manager) publish(e store.Event) {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	for sub := range m.subs {
		select {
		case sub.ch <- e:
		default:
			delete(m.subs, sub)
			close(sub.ch)
			m.log.Warn("event subscriber lagged and was dropped", "seq", e.Seq, "buffer", cap(sub.ch))
		}
	}
}

// closeSubscribers ends every subscription and makes later ones start
// closed.
func (m *Manager) closeSubscribers() {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	m.subsClosed = true
	for sub := range m.subs {
		delete(m.subs, sub)
		close(sub.ch)
	}
}

// pruneInterval returns how often events are pruned: a tenth of the
// retention, between one minute and one hour.
func pruneInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Minute), time.Hour)
}

// pruneEvents deletes the events older than the configured retention.
func (m *Manager) pruneEvents(ctx context.Context) {
	before := m.now().Add(-m.cfg.EventRetention)
	n, err := m.store.PruneEvents(ctx, before, 0)
	if err != nil {
		m.log.Error("prune events failed", "op", "prune_events", "error", err)
		return
	}
	if n > 0 {
		m.log.Debug("events pruned", "op", "prune_events", "deleted", n)
	}
}
