package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/store"
)

// maxIdempotencyKeyLen bounds the bytes of an Idempotency-Key.
const maxIdempotencyKeyLen = 255

// idempotencyOpPrefix starts the operation IDs that serialize the spawns of
// one Idempotency-Key in this process. Sandbox IDs start with "sb-", so the
// two never collide in the operation table.
const idempotencyOpPrefix = "idempotency-key:"

// opIdempotentSpawn is the operation kind of a spawn with an
// Idempotency-Key.
const opIdempotentSpawn = "idempotent_spawn"

// claimMargin is added to the longest time a spawn may take to get the
// lifetime of an in-progress claim. A claim left behind by a crash blocks
// its key for that long.
const claimMargin = time.Minute

// conflictError is an error for the client that the HTTP layer reports as
// 409 CONFLICT, because it wraps store.ErrConflict.
type conflictError string

func (e conflictError) Error() string { return string(e) }

func (e conflictError) Unwrap() error { return store.ErrConflict }

// Errors of spawns with an Idempotency-Key. Both match store.ErrConflict.
var (
	// ErrIdempotencyKeyInProgress: another server process is spawning a
	// sandbox for the key. Requests in this process wait for each other
	// instead.
	ErrIdempotencyKeyInProgress error = conflictError(
		"a request with this Idempotency-Key is in progress; retry once it has finished")

	// ErrIdempotencyKeyReused: the key was used before with a different
	// request.
	ErrIdempotencyKeyReused error = conflictError(
		"this Idempotency-Key was used with a different request; send a new key for a new request")
)

// SpawnIdempotent is Spawn with an Idempotency-Key. The first request with
// key spawns a sandbox. A later request with the key and the same request,
// within limits.idempotency_window of the first, returns that sandbox as it
// is now, with replayed set, instead of spawning another. An empty key
// spawns without these checks.
//
// Requests with one key in this process run one at a time, so a retry that
// arrives while the first request still spawns waits for it and then
// returns its sandbox. A failed spawn releases the key, and a retry spawns
// again. Keys are global, not scoped per owner. Requests are compared after
// parsing, so the TTLs "1h" and "60m" are the same request.
//
// Errors besides those of Spawn: a *FieldError for a malformed key,
// ErrIdempotencyKeyReused, and ErrIdempotencyKeyInProgress when another
// process holds the key.
func (m *Manager) SpawnIdempotent(ctx context.Context, key string, req SpawnRequest) (sb store.Sandbox, replayed bool, err error) {
	if key == "" {
		sb, err := m.Spawn(ctx, req)
		return sb, false, err
	}
	if err := validateIdempotencyKey(key); err != nil {
		return store.Sandbox{}, false, err
	}
	hash, err := requestHash(req)
	if err != nil {
		return store.Sandbox{}, false, err
	}

	opID := idempotencyOpPrefix + key
	op, _, err := m.begin(ctx, opID, opIdempotentSpawn, false)
	if err != nil {
		return store.Sandbox{}, false, fmt.Errorf("wait for the request with the same Idempotency-Key: %w", err)
	}
	defer func() { m.end(opID, op, err) }()

	now := m.now()
	if _, err := m.store.PruneIdempotencyKeys(ctx, now); err != nil {
		m.log.Warn("prune expired idempotency keys", "error", err)
	}
	sb, found, err := m.replay(ctx, key, hash, now)
	if err != nil || found {
		return sb, found, err
	}

	if err := m.claim(ctx, key, hash, req, now); err != nil {
		return store.Sandbox{}, false, err
	}
	sb, err = m.Spawn(ctx, req)
	m.settle(context.WithoutCancel(ctx), key, sb, err)
	return sb, false, err
}

// replay returns the sandbox of a live record of key, with found set, or
// found unset when there is no live record. A record of another request or
// one still in progress gives the matching error.
func (m *Manager) replay(ctx context.Context, key, hash string, now time.Time) (sb store.Sandbox, found bool, err error) {
	rec, err := m.store.GetIdempotencyKey(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return store.Sandbox{}, false, nil
	}
	if err != nil {
		return store.Sandbox{}, false, fmt.Errorf("read Idempotency-Key: %w", err)
	}
	if !rec.ExpiresAt.After(now) {
		return store.Sandbox{}, false, nil
	}

	switch {
	case rec.RequestHash != hash:
		return store.Sandbox{}, false, ErrIdempotencyKeyReused
	case rec.SandboxID == "":
		// This process holds the key's turn, so the claim is another
		// process's.
		return store.Sandbox{}, false, ErrIdempotencyKeyInProgress
	}

	sb, err = m.Get(ctx, rec.SandboxID)
	if err != nil {
		return store.Sandbox{}, false, err
	}
	m.log.Info("spawn replayed for Idempotency-Key", "sandbox_id", sb.ID, "provider", sb.Provider)
	return sb, true, nil
}

// claim stores an in-progress claim of key that lasts as long as the spawn
// of req may take, so that a claim left behind by a crash expires.
func (m *Manager) claim(ctx context.Context, key, hash string, req SpawnRequest, now time.Time) error {
	merged, err := m.withTemplate(ctx, req)
	if err != nil {
		return err
	}
	setup, err := m.planSetup(merged)
	if err != nil {
		return err
	}
	lease := m.spawnTimeout + m.destroyTimeout + claimMargin +
		time.Duration(len(setup.commands))*setup.timeout

	err = m.store.ClaimIdempotencyKey(ctx, store.IdempotencyKey{
		Key:         key,
		RequestHash: hash,
		CreatedAt:   now,
		ExpiresAt:   now.Add(lease),
	})
	if errors.Is(err, store.ErrConflict) {
		return ErrIdempotencyKeyInProgress
	}
	if err != nil {
		return fmt.Errorf("claim Idempotency-Key: %w", err)
	}
	return nil
}

// settle records the outcome of the spawn for the claimed key: the sandbox
// for the idempotency window, or, after a failure, no record, so that a
// retry spawns again.
func (m *Manager) settle(ctx context.Context, key string, sb store.Sandbox, spawnErr error) {
	if spawnErr != nil {
		if err := m.store.ReleaseIdempotencyKey(ctx, key); err != nil {
			m.log.Error("release Idempotency-Key after a failed spawn; retries get 409 until the claim expires",
				"error", err)
		}
		return
	}

	window := m.limits.IdempotencyWindow
	if window <= 0 {
		window = config.Default().Limits.IdempotencyWindow
	}
	if err := m.store.CompleteIdempotencyKey(ctx, key, sb.ID, m.now().Add(window)); err != nil {
		m.log.Error("record the sandbox of an Idempotency-Key; a retry after the claim expires spawns another",
			"sandbox_id", sb.ID, "provider", sb.Provider, "error", err)
	}
}

// validateIdempotencyKey accepts 1 to 255 printable ASCII characters
// without spaces.
func validateIdempotencyKey(key string) error {
	if len(key) > maxIdempotencyKeyLen {
		return invalid("Idempotency-Key", "must be at most %d characters, got %d", maxIdempotencyKeyLen, len(key))
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return invalid("Idempotency-Key", "must contain only printable ASCII characters without spaces, "+
				"such as a UUID; got byte 0x%02x at offset %d", c, i)
		}
	}
	return nil
}

// requestHash returns a SHA-256 digest of every field of req, so that a
// retry can be distinguished from another request that reuses the key.
func requestHash(req SpawnRequest) (string, error) {
	// encoding/json writes map keys sorted, so equal requests encode
	// equally.
	data, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("hash spawn request: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
