// Package orchestrator is the sandbox manager: admission, the lifecycle
// state machine, persistence through the store, the TTL reaper, reconcile
// between store and providers, and lifecycle events. The HTTP layer calls
// it; it calls providers through the registry.
//
// The manager drives each record through the states of store.State. These
// are its transitions and their triggers. Besides the edges drawn at
// store.State, a spawn that failed or was interrupted by a restart and a
// runtime that vanished go to destroyed without a destroying step:
//
//	creating        ── spawn ok ─────────────────────► running
//	creating        ── spawn failed, cleanup ok ─────► destroyed
//	creating        ── server restarted, cleanup ok ─► destroyed
//	creating        ── cleanup failed ───────────────► error
//	running         ── Destroy or reaper ────────────► destroying
//	running         ── Recover failed ───────────────► error
//	error           ── Recover ok ───────────────────► running
//	error           ── Destroy or reaper ────────────► destroying
//	destroying      ── provider destroy ok ──────────► destroyed
//	destroying      ── provider destroy failed ──────► error
//	running, error  ── runtime no longer exists ─────► destroyed
//	any live state  ── provider not registered ──────► error
//
// After a restart, reconcile destroys the runtimes of records left in
// creating (the server stopped during the spawn), finishes destroys left in
// destroying, and asks the provider to Recover every running and error
// record: a live runtime is running, a vanished one is destroyed, and an
// unreachable one is error. Runtimes that a provider lists but the store
// does not know are adopted as running records.
//
// Every transition appends a store.Event and is published to subscribers
// (see Subscribe). The manager never holds a lock across a provider call;
// spawns, execs and destroys of different sandboxes run concurrently.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// ErrNotRunning is returned (wrapped, naming the state) by calls that need a
// running sandbox when the sandbox is creating, destroying or in the error
// state. The HTTP layer reports it as 409 CONFLICT.
var ErrNotRunning = errors.New("sandbox is not running")

// Default timeouts for provider calls that run detached from the request.
const (
	DefaultSpawnTimeout   = 5 * time.Minute
	DefaultDestroyTimeout = 2 * time.Minute
)

// Manager owns every sandbox's lifecycle. It is safe for concurrent use and
// never holds a lock across a provider call.
type Manager struct {
	store          store.Store
	registry       *Registry
	limits         config.Limits
	cfg            config.ManagerConfig
	log            *slog.Logger
	now            func() time.Time
	spawnTimeout   time.Duration
	destroyTimeout time.Duration
	metrics        Metrics

	// admitMu serializes the live count and the insert of a new record, so
	// that concurrent spawns cannot overshoot a cap.
	admitMu sync.Mutex

	// recordMu serializes read-modify-write cycles on records.
	recordMu sync.Mutex

	// ops tracks the spawns, destroys and reconcile actions in flight in
	// this process, so that they do not act on one sandbox at once.
	opsMu sync.Mutex
	ops   map[string]*operation

	// emitMu keeps the store's event order and the order of publication
	// to subscribers the same.
	emitMu     sync.Mutex
	subsMu     sync.Mutex
	subs       map[*subscriber]struct{}
	subsClosed bool

	// reapRetries holds the backoff of sandboxes whose reaper destroy
	// failed.
	reapMu      sync.Mutex
	reapRetries map[string]reapRetry

	loopMu  sync.Mutex
	started bool
	closed  bool
	stop    context.CancelFunc
	loopsWG sync.WaitGroup
}

// Options are the dependencies of a Manager.
type Options struct {
	Store    store.Store
	Registry *Registry

	// Limits are the admission defaults and maximums. A zero default or
	// maximum takes the value of config.Default, except MaxSandboxes and
	// MaxSandboxesPerOwner, where zero means no cap.
	Limits config.Limits

	// Manager configures the background loops. Zero fields take the values
	// of config.Default.
	Manager config.ManagerConfig

	Logger *slog.Logger     // discards logs when nil
	Now    func() time.Time // clock; time.Now when nil

	// SpawnTimeout bounds a provider spawn, which runs detached from the
	// request. Default DefaultSpawnTimeout.
	SpawnTimeout time.Duration

	// DestroyTimeout bounds a provider destroy, which runs detached from
	// the request. Default DefaultDestroyTimeout.
	DestroyTimeout time.Duration

	// Metrics receives the durations of spawns, execs and file calls and
	// the reconcile and reaper counts. Nil discards them.
	Metrics Metrics
}

// New returns a Manager. Call Start to reconcile and start the background
// loops.
func New(opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("orchestrator: Options.Store is nil")
	}
	if opts.Registry == nil {
		return nil, errors.New("orchestrator: Options.Registry is nil")
	}

	m := &Manager{
		store:          opts.Store,
		registry:       opts.Registry,
		limits:         withDefaultLimits(opts.Limits),
		cfg:            withDefaultLoops(opts.Manager),
		log:            opts.Logger,
		now:            opts.Now,
		spawnTimeout:   opts.SpawnTimeout,
		destroyTimeout: opts.DestroyTimeout,
		metrics:        metricsOrNop(opts.Metrics),
		ops:            make(map[string]*operation),
		subs:           make(map[*subscriber]struct{}),
		reapRetries:    make(map[string]reapRetry),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.spawnTimeout <= 0 {
		m.spawnTimeout = DefaultSpawnTimeout
	}
	if m.destroyTimeout <= 0 {
		m.destroyTimeout = DefaultDestroyTimeout
	}
	return m, nil
}

// withDefaultLimits fills zero limits from config.Default. The two sandbox
// caps keep zero, which means no cap.
func withDefaultLimits(l config.Limits) config.Limits {
	d := config.Default().Limits
	fill := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	fillDuration := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&l.DefaultMemoryMB, d.DefaultMemoryMB)
	fill(&l.MaxMemoryMB, d.MaxMemoryMB)
	fill(&l.DefaultVCPUs, d.DefaultVCPUs)
	fill(&l.MaxVCPUs, d.MaxVCPUs)
	fillDuration(&l.DefaultTTL, d.DefaultTTL)
	fillDuration(&l.MaxTTL, d.MaxTTL)
	fillDuration(&l.DefaultExecTimeout, d.DefaultExecTimeout)
	fillDuration(&l.MaxExecTimeout, d.MaxExecTimeout)
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = d.MaxOutputBytes
	}
	return l
}

// withDefaultLoops fills zero loop settings from config.Default.
func withDefaultLoops(c config.ManagerConfig) config.ManagerConfig {
	d := config.Default().Manager
	if c.ReapInterval <= 0 {
		c.ReapInterval = d.ReapInterval
	}
	if c.ReapParallelism <= 0 {
		c.ReapParallelism = d.ReapParallelism
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = d.ReconcileInterval
	}
	if c.EventRetention <= 0 {
		c.EventRetention = d.EventRetention
	}
	return c
}

// Start reconciles store and providers once, then starts the reaper, the
// periodic reconcile and the event pruning. The loops stop when ctx is done
// or Close is called. Start returns an error only when the store fails
// during the first reconcile; provider failures are recorded in the records
// and logged.
func (m *Manager) Start(ctx context.Context) error {
	m.loopMu.Lock()
	if m.started || m.closed {
		m.loopMu.Unlock()
		return errors.New("orchestrator: Start called twice or after Close")
	}
	m.started = true
	m.loopMu.Unlock()

	report, err := m.Reconcile(ctx)
	if err != nil {
		return fmt.Errorf("orchestrator: startup reconcile: %w", err)
	}
	m.log.Info("startup reconcile done", report.logAttrs()...)

	m.loopMu.Lock()
	defer m.loopMu.Unlock()
	if m.closed {
		return nil
	}
	loopCtx, stop := context.WithCancel(ctx)
	m.stop = stop
	m.runLoop(loopCtx, "reap", m.cfg.ReapInterval, m.reapOnce)
	m.runLoop(loopCtx, "reconcile", m.cfg.ReconcileInterval, m.reconcileOnce)
	m.runLoop(loopCtx, "prune_events", pruneInterval(m.cfg.EventRetention), m.pruneEvents)
	return nil
}

// runLoop calls fn every interval until ctx is done.
func (m *Manager) runLoop(ctx context.Context, name string, interval time.Duration, fn func(context.Context)) {
	m.loopsWG.Add(1)
	go func() {
		defer m.loopsWG.Done()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		m.log.Debug("manager loop started", "op", name, "interval", interval.String())
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				fn(ctx)
			}
		}
	}()
}

// Close stops the background loops, waits for them, and closes every event
// subscription. Sandboxes keep running for the next start to reconcile.
// Close is idempotent.
func (m *Manager) Close() error {
	m.loopMu.Lock()
	if m.closed {
		m.loopMu.Unlock()
		return nil
	}
	m.closed = true
	if m.stop != nil {
		m.stop()
	}
	m.loopMu.Unlock()

	m.loopsWG.Wait()
	m.closeSubscribers()
	return nil
}

// Get returns the sandbox with id, including destroyed ones. Unknown IDs
// give an error wrapping provider.ErrSandboxNotFound.
func (m *Manager) Get(ctx context.Context, id string) (store.Sandbox, error) {
	sb, err := m.store.GetSandbox(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Sandbox{}, fmt.Errorf("sandbox %s does not exist: %w", id, provider.ErrSandboxNotFound)
	}
	if err != nil {
		return store.Sandbox{}, fmt.Errorf("get sandbox %s: %w", id, err)
	}
	return sb, nil
}

// List returns sandboxes matching f, newest first.
func (m *Manager) List(ctx context.Context, f store.Filter) ([]store.Sandbox, error) {
	list, err := m.store.ListSandboxes(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	return list, nil
}

// running returns the record of a running sandbox. Destroyed sandboxes give
// an error wrapping provider.ErrSandboxDestroyed, and sandboxes in any other
// state one wrapping ErrNotRunning.
func (m *Manager) running(ctx context.Context, id string) (store.Sandbox, error) {
	sb, err := m.Get(ctx, id)
	if err != nil {
		return store.Sandbox{}, err
	}
	if err := checkRunning(sb); err != nil {
		return store.Sandbox{}, err
	}
	return sb, nil
}

// checkRunning returns nil when sb is running, and otherwise the error that
// running describes.
func checkRunning(sb store.Sandbox) error {
	switch sb.State {
	case store.StateRunning:
		return nil
	case store.StateDestroyed:
		return errDestroyed(sb)
	case store.StateError:
		return fmt.Errorf("sandbox %s is in the error state (%s); destroy it, or wait for reconcile "+
			"to recover it: %w", sb.ID, sb.Error, ErrNotRunning)
	default:
		return fmt.Errorf("sandbox %s is %s: %w", sb.ID, sb.State, ErrNotRunning)
	}
}

// errDestroyed returns the error for calls on the destroyed record sb.
func errDestroyed(sb store.Sandbox) error {
	msg := fmt.Sprintf("sandbox %s was destroyed at %s", sb.ID, sb.DestroyedAt.UTC().Format(time.RFC3339))
	if sb.Error != "" {
		msg += " (" + sb.Error + ")"
	}
	return fmt.Errorf("%s: %w", msg, provider.ErrSandboxDestroyed)
}

// providerFor returns the provider of an existing record.
func (m *Manager) providerFor(sb store.Sandbox) (provider.Provider, error) {
	p, ok := m.registry.Lookup(sb.Provider)
	if !ok {
		return nil, m.registry.errProviderGone(sb.ID, sb.Provider)
	}
	return p, nil
}

// errSkipUpdate makes update return the current record without writing.
var errSkipUpdate = errors.New("skip update")

// update reads the record of id, applies change, and writes it back, with
// no other update in between. When change returns errSkipUpdate, update
// returns the record unchanged and a nil error; other errors are returned
// as they are.
func (m *Manager) update(ctx context.Context, id string, change func(sb *store.Sandbox) error) (store.Sandbox, error) {
	m.recordMu.Lock()
	defer m.recordMu.Unlock()

	sb, err := m.Get(ctx, id)
	if err != nil {
		return store.Sandbox{}, err
	}
	if err := change(&sb); err != nil {
		if errors.Is(err, errSkipUpdate) {
			return sb, nil
		}
		return sb, err
	}

	sb.UpdatedAt = m.now()
	if err := m.store.UpdateSandbox(ctx, sb); err != nil {
		return sb, fmt.Errorf("update sandbox %s: %w", id, err)
	}
	return sb, nil
}

// Extend sets the sandbox's expiry to now plus ttl, bounded by the maximum
// TTL, and returns the updated record. The sandbox must be running.
func (m *Manager) Extend(ctx context.Context, id string, ttl time.Duration) (store.Sandbox, error) {
	if ttl <= 0 {
		return store.Sandbox{}, invalid("ttl", "must be positive, got %s", ttl)
	}
	if ttl > m.limits.MaxTTL {
		return store.Sandbox{}, &provider.LimitError{Limit: "max_ttl", Value: m.limits.MaxTTL.String(), Got: ttl.String()}
	}

	sb, err := m.update(ctx, id, func(sb *store.Sandbox) error {
		if err := checkRunning(*sb); err != nil {
			return err
		}
		sb.ExpiresAt = m.now().Add(ttl)
		return nil
	})
	if err != nil {
		return store.Sandbox{}, err
	}

	m.log.Info("sandbox extended", "sandbox_id", id, "provider", sb.Provider,
		"expires_at", sb.ExpiresAt.UTC().Format(time.RFC3339))
	return sb, nil
}

// Logs returns up to lines lines of the sandbox's console log; lines <= 0
// returns all of it. Any sandbox that is not destroyed may be read, because
// the log of a broken sandbox is often what explains it. Providers without
// a console log give an error wrapping provider.ErrNotImplemented.
func (m *Manager) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	sb, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if sb.State == store.StateDestroyed {
		return nil, errDestroyed(sb)
	}
	p, err := m.providerFor(sb)
	if err != nil {
		return nil, err
	}

	reader, ok := p.(provider.LogReader)
	if !ok {
		return nil, fmt.Errorf("provider %s keeps no console log: %w", p.Name(), provider.ErrNotImplemented)
	}
	out, err := reader.Logs(ctx, id, lines)
	if err != nil {
		return nil, m.providerError(ctx, sb, "read logs of", err)
	}
	return out, nil
}

// Stats returns a resource sample of a running sandbox. Providers that
// cannot report one give an error wrapping provider.ErrNotImplemented.
func (m *Manager) Stats(ctx context.Context, id string) (provider.Stats, error) {
	sb, err := m.running(ctx, id)
	if err != nil {
		return provider.Stats{}, err
	}
	p, err := m.providerFor(sb)
	if err != nil {
		return provider.Stats{}, err
	}

	reader, ok := p.(provider.StatsReader)
	if !ok {
		return provider.Stats{}, fmt.Errorf("provider %s cannot report resource use: %w",
			p.Name(), provider.ErrNotImplemented)
	}
	stats, err := reader.Stats(ctx, id)
	if err != nil {
		return provider.Stats{}, m.providerError(ctx, sb, "read stats of", err)
	}
	return stats, nil
}

// Providers returns the registry.
func (m *Manager) Providers() *Registry { return m.registry }

// Limits returns the admission limits in effect, with defaults applied.
func (m *Manager) Limits() config.Limits { return m.limits }

// Ready returns nil when the default provider is healthy, else an error
// wrapping provider.ErrUnavailable that names what to install or fix.
func (m *Manager) Ready(ctx context.Context) error {
	p, err := m.registry.Get(ctx, "")
	if err != nil {
		return err
	}
	err = p.Health(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, provider.ErrUnavailable):
		return fmt.Errorf("default provider %s is not ready: %w", p.Name(), err)
	default:
		return fmt.Errorf("default provider %s is not ready: %w (%w)", p.Name(), err, provider.ErrUnavailable)
	}
}
