package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// insertAttempts bounds retries when a new ID collides with an existing
// record, which with 60 random bits is not expected to happen at all.
const insertAttempts = 3

// SpawnRequest is a request to create a sandbox. Zero values take the
// configured defaults.
type SpawnRequest struct {
	Image    string
	Provider string // registry name; empty for the default provider
	Runtime  string
	MemoryMB int
	VCPUs    int
	TTL      time.Duration
	OwnerID  string
	Network  bool
	Env      map[string]string
	Metadata map[string]string

	// Template names a stored template that fills the fields this request
	// leaves zero. Env and metadata are merged, with this request's keys
	// winning, and a non-empty Setup replaces the template's list.
	Template string

	// NetworkSet marks Network as given, so that false overrides a
	// template's true.
	NetworkSet bool

	// Setup lists shell commands run in order in /workspace once the
	// runtime is up. A command that fails destroys the sandbox and fails
	// the spawn with a *SetupError.
	Setup []string

	// SetupTimeout bounds each setup command; 0 for the default exec
	// timeout.
	SetupTimeout time.Duration
}

// Spawn admits, records and creates a sandbox and returns it in the running
// state. Errors: ErrInvalidArgument (wrapped in a *FieldError naming the
// field), a *provider.LimitError, ErrProviderNotFound, ErrUnavailable,
// store.ErrNotFound for an unknown template, a *SetupError, or the
// provider's spawn error. A failed spawn leaves no runtime and a record in
// the destroyed state, or in the error state when the cleanup failed too.
//
// Once the record is stored, the spawn runs to completion even when ctx is
// canceled, bounded by the spawn timeout, so that a client disconnect does
// not leave a half-built runtime. Spawn waits for it.
func (m *Manager) Spawn(ctx context.Context, req SpawnRequest) (store.Sandbox, error) {
	req, err := m.withTemplate(ctx, req)
	if err != nil {
		return store.Sandbox{}, err
	}
	sb, ttl, err := m.prepare(req)
	if err != nil {
		return store.Sandbox{}, err
	}
	setup, err := m.planSetup(req)
	if err != nil {
		return store.Sandbox{}, err
	}
	p, err := m.registry.Get(ctx, req.Provider)
	if err != nil {
		return store.Sandbox{}, err
	}
	if err := validateRuntime(req.Runtime, p); err != nil {
		return store.Sandbox{}, err
	}
	sb.Provider = p.Name()

	sb, op, err := m.admit(ctx, sb, ttl)
	if err != nil {
		return store.Sandbox{}, err
	}
	ctx = context.WithoutCancel(ctx)
	m.emit(ctx, EventCreated, sb, map[string]any{
		"image":      sb.Image,
		"owner_id":   sb.OwnerID,
		"expires_at": sb.ExpiresAt,
	})

	created, err := m.create(ctx, p, sb, setup)
	m.end(sb.ID, op, err)
	m.observeSpawn(sb, err)
	return created, err
}

// prepare validates req and returns the requested record and TTL, with
// defaults applied. The record has no ID, provider or times yet.
func (m *Manager) prepare(req SpawnRequest) (store.Sandbox, time.Duration, error) {
	if err := validateImage(req.Image); err != nil {
		return store.Sandbox{}, 0, err
	}
	memory, err := sizeOrDefault("memory_mb", req.MemoryMB, m.limits.DefaultMemoryMB, m.limits.MaxMemoryMB, "max_memory_mb")
	if err != nil {
		return store.Sandbox{}, 0, err
	}
	vcpus, err := sizeOrDefault("vcpus", req.VCPUs, m.limits.DefaultVCPUs, m.limits.MaxVCPUs, "max_vcpus")
	if err != nil {
		return store.Sandbox{}, 0, err
	}
	ttl, err := durationOrDefault("ttl", req.TTL, m.limits.DefaultTTL, m.limits.MaxTTL, "max_ttl")
	if err != nil {
		return store.Sandbox{}, 0, err
	}
	if err := validateOwnerID(req.OwnerID); err != nil {
		return store.Sandbox{}, 0, err
	}
	if err := validateEnv("env", req.Env); err != nil {
		return store.Sandbox{}, 0, err
	}
	if err := validateMetadata(req.Metadata); err != nil {
		return store.Sandbox{}, 0, err
	}

	return store.Sandbox{
		State:    store.StateCreating,
		Image:    req.Image,
		Runtime:  req.Runtime,
		MemoryMB: memory,
		VCPUs:    vcpus,
		Network:  req.Network,
		OwnerID:  req.OwnerID,
		Env:      maps.Clone(req.Env),
		Metadata: maps.Clone(req.Metadata),
		Template: req.Template,
	}, ttl, nil
}

// admit checks the live-sandbox caps and inserts sb in the creating state
// under admitMu, so that concurrent spawns cannot overshoot a cap. It
// assigns the ID and the times, and returns the spawn operation registered
// on the new ID, which the caller must end.
func (m *Manager) admit(ctx context.Context, sb store.Sandbox, ttl time.Duration) (store.Sandbox, *operation, error) {
	m.admitMu.Lock()
	defer m.admitMu.Unlock()

	if err := m.checkCaps(ctx, sb.OwnerID); err != nil {
		return store.Sandbox{}, nil, err
	}

	now := m.now()
	sb.CreatedAt, sb.UpdatedAt, sb.ExpiresAt = now, now, now.Add(ttl)

	for range insertAttempts {
		sb.ID = newID()
		op, _ := m.tryBegin(sb.ID, opSpawn)
		if op == nil {
			continue
		}
		err := m.store.CreateSandbox(ctx, sb)
		if err == nil {
			return sb, op, nil
		}
		m.end(sb.ID, op, err)
		if !errors.Is(err, store.ErrConflict) {
			return store.Sandbox{}, nil, fmt.Errorf("store new sandbox: %w", err)
		}
	}
	return store.Sandbox{}, nil, fmt.Errorf("store new sandbox: %d generated IDs were taken", insertAttempts)
}

// checkCaps returns a *provider.LimitError when one more live sandbox, in
// total or for owner, would exceed a cap. The per-owner cap applies only to
// requests that name an owner.
func (m *Manager) checkCaps(ctx context.Context, owner string) error {
	if limit := m.limits.MaxSandboxes; limit > 0 {
		n, err := m.store.CountLive(ctx, "")
		if err != nil {
			return fmt.Errorf("count live sandboxes: %w", err)
		}
		if n >= limit {
			return &provider.LimitError{Limit: "max_sandboxes", Value: strconv.Itoa(limit)}
		}
	}

	if limit := m.limits.MaxSandboxesPerOwner; limit > 0 && owner != "" {
		n, err := m.store.CountLive(ctx, owner)
		if err != nil {
			return fmt.Errorf("count live sandboxes of owner %q: %w", owner, err)
		}
		if n >= limit {
			return &provider.LimitError{Limit: "max_sandboxes_per_owner", Value: strconv.Itoa(limit)}
		}
	}
	return nil
}

// create calls the provider's Spawn for the stored record sb, runs the
// setup commands, and moves the record to running, or cleans up after a
// failure. ctx must not be cancelable by the client.
func (m *Manager) create(ctx context.Context, p provider.Provider, sb store.Sandbox, setup setupPlan) (store.Sandbox, error) {
	start := m.now()
	spec := provider.SpawnSpec{
		ID:       sb.ID,
		Image:    sb.Image,
		Runtime:  sb.Runtime,
		MemoryMB: sb.MemoryMB,
		VCPUs:    sb.VCPUs,
		Network:  sb.Network,
		Env:      maps.Clone(sb.Env),
		OwnerID:  sb.OwnerID,
		Metadata: maps.Clone(sb.Metadata),
	}

	spawnCtx, cancel := context.WithTimeout(ctx, m.spawnTimeout)
	err := p.Spawn(spawnCtx, spec)
	cancel()
	if err != nil {
		err = fmt.Errorf("spawn sandbox %s on provider %s: %w", sb.ID, sb.Provider, err)
		return m.failSpawn(ctx, p, sb, err, start)
	}
	if err := m.runSetup(ctx, p, sb, setup); err != nil {
		return m.failSpawn(ctx, p, sb, err, start)
	}

	running, err := m.update(ctx, sb.ID, func(r *store.Sandbox) error {
		r.State = store.StateRunning
		return nil
	})
	if err != nil {
		// The runtime exists but the record could not be marked running.
		// Undo the spawn rather than leave a runtime that reconcile would
		// find in creating.
		err = fmt.Errorf("record sandbox %s as running: %w", sb.ID, err)
		return m.failSpawn(ctx, p, sb, err, start)
	}

	elapsed := m.now().Sub(start)
	m.emit(ctx, EventRunning, running, map[string]any{"duration_ms": elapsed.Milliseconds()})
	m.log.Info("sandbox spawned", "sandbox_id", sb.ID, "provider", sb.Provider,
		"image", sb.Image, "duration_ms", elapsed.Milliseconds())
	return running, nil
}

// failSpawn destroys whatever the failed spawn left behind and records the
// failure: destroyed when the cleanup worked, error when it failed too. It
// returns spawnErr.
func (m *Manager) failSpawn(ctx context.Context, p provider.Provider, sb store.Sandbox, spawnErr error, start time.Time) (store.Sandbox, error) {
	cleanupErr := m.destroyRuntime(ctx, p, sb.ID)

	failed, err := m.update(ctx, sb.ID, func(r *store.Sandbox) error {
		if cleanupErr != nil {
			r.State = store.StateError
			r.Error = fmt.Sprintf("spawn failed: %v; cleanup failed: %v", spawnErr, cleanupErr)
			return nil
		}
		r.State = store.StateDestroyed
		r.DestroyedAt = m.now()
		r.Error = fmt.Sprintf("spawn failed: %v", spawnErr)
		return nil
	})
	if err != nil {
		m.log.Error("record failed spawn", "sandbox_id", sb.ID, "provider", sb.Provider, "error", err)
		return store.Sandbox{}, spawnErr
	}

	m.emit(ctx, EventError, failed, map[string]any{"error": failed.Error})
	if cleanupErr != nil {
		m.log.Error("cleanup after failed spawn failed; the runtime may remain", "sandbox_id", sb.ID,
			"provider", sb.Provider, "error", cleanupErr)
	}
	m.log.Info("sandbox spawn failed", "sandbox_id", sb.ID, "provider", sb.Provider,
		"state", failed.State, "duration_ms", m.now().Sub(start).Milliseconds(), "error", spawnErr)
	return store.Sandbox{}, spawnErr
}
