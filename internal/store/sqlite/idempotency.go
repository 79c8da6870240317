package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// ClaimIdempotencyKey inserts k as an in-progress claim with an empty
// sandbox ID. A record of k.Key that expired at or before k.CreatedAt is
// replaced. A live record gives an error wrapping store.ErrConflict. The
// write pool's single connection and BEGIN IMMEDIATE make the check and the
// insert one atomic step, also against other processes.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, k store.IdempotencyKey) error {
	if k.Key == "" {
		return errors.New("sqlite: claim idempotency key: key is empty")
	}
	created, err := encodeTime("created_at", k.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: claim idempotency key %q: %w", k.Key, err)
	}
	expires, err := encodeTime("expires_at", k.ExpiresAt)
	if err != nil {
		return fmt.Errorf("sqlite: claim idempotency key %q: %w", k.Key, err)
	}
	if created == nil || expires == nil {
		return fmt.Errorf("sqlite: claim idempotency key %q: created_at and expires_at must be set", k.Key)
	}

	// The upsert replaces only an expired record. For a live one the WHERE
	// clause is false, so nothing changes and no row counts as affected.
	query := `INSERT INTO idempotency_keys (key, request_hash, sandbox_id, created_at, expires_at)
		VALUES (?, ?, '', ?, ?)
		ON CONFLICT (key) DO UPDATE SET
			request_hash = excluded.request_hash,
			sandbox_id   = '',
			created_at   = excluded.created_at,
			expires_at   = excluded.expires_at
		WHERE idempotency_keys.expires_at <= excluded.created_at`
	result, err := s.write.ExecContext(ctx, query, k.Key, k.RequestHash, created, expires)
	if err != nil {
		return fmt.Errorf("sqlite: claim idempotency key %q: %w", k.Key, err)
	}
	claimed, err := result.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: claim idempotency key %q: %w", k.Key, err)
	}
	if claimed == 0 {
		return fmt.Errorf("idempotency key %q is in use: %w", k.Key, store.ErrConflict)
	}
	return nil
}

// CompleteIdempotencyKey stores sandboxID in the record of key and moves its
// expiry to expiresAt, or returns an error wrapping store.ErrNotFound.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, key, sandboxID string, expiresAt time.Time) error {
	if sandboxID == "" {
		return fmt.Errorf("sqlite: complete idempotency key %q: sandbox id is empty", key)
	}
	expires, err := encodeTime("expires_at", expiresAt)
	if err != nil {
		return fmt.Errorf("sqlite: complete idempotency key %q: %w", key, err)
	}

	result, err := s.write.ExecContext(ctx,
		`UPDATE idempotency_keys SET sandbox_id = ?, expires_at = ? WHERE key = ?`,
		sandboxID, expires, key)
	if err != nil {
		return fmt.Errorf("sqlite: complete idempotency key %q: %w", key, err)
	}
	updated, err := result.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: complete idempotency key %q: %w", key, err)
	}
	if updated == 0 {
		return fmt.Errorf("idempotency key %q: %w", key, store.ErrNotFound)
	}
	return nil
}

// ReleaseIdempotencyKey deletes the record of key when it is still an
// in-progress claim. A completed or missing record is left as it is.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, key string) error {
	_, err := s.write.ExecContext(ctx,
		`DELETE FROM idempotency_keys WHERE key = ? AND sandbox_id = ''`, key)
	if err != nil {
		return fmt.Errorf("sqlite: release idempotency key %q: %w", key, err)
	}
	return nil
}

// GetIdempotencyKey returns the record of key, expired or not, or an error
// wrapping store.ErrNotFound.
func (s *Store) GetIdempotencyKey(ctx context.Context, key string) (store.IdempotencyKey, error) {
	var (
		k                store.IdempotencyKey
		created, expires sql.NullInt64
	)
	err := s.read.QueryRowContext(ctx,
		`SELECT key, request_hash, sandbox_id, created_at, expires_at FROM idempotency_keys WHERE key = ?`, key).
		Scan(&k.Key, &k.RequestHash, &k.SandboxID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return store.IdempotencyKey{}, fmt.Errorf("idempotency key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return store.IdempotencyKey{}, fmt.Errorf("sqlite: get idempotency key %q: %w", key, err)
	}
	k.CreatedAt = decodeTime(created)
	k.ExpiresAt = decodeTime(expires)
	return k, nil
}

// PruneIdempotencyKeys deletes the records that expired at or before now and
// returns how many it deleted.
func (s *Store) PruneIdempotencyKeys(ctx context.Context, now time.Time) (int64, error) {
	at, err := encodeTime("now", now)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune idempotency keys: %w", err)
	}
	result, err := s.write.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= ?`, at)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune idempotency keys: %w", err)
	}
	deleted, err := result.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune idempotency keys: %w", err)
	}
	return deleted, nil
}
