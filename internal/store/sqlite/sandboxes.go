package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// sandboxColumns lists the sandboxes columns in the order that
// sandboxValues writes them and scanSandbox reads them.
const sandboxColumns = `id, state, provider, image, runtime, memory_mb, vcpus, network,
	owner_id, template, env, metadata, error,
	created_at, updated_at, expires_at, destroyed_at`

// CreateSandbox inserts sb. It returns an error wrapping store.ErrConflict
// when a record with sb.ID exists, and rejects an empty ID or an unknown
// state.
func (s *Store) CreateSandbox(ctx context.Context, sb store.Sandbox) error {
	values, err := sandboxValues(sb)
	if err != nil {
		return fmt.Errorf("sqlite: create sandbox %q: %w", sb.ID, err)
	}

	query := `INSERT INTO sandboxes (` + sandboxColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`
	result, err := s.write.ExecContext(ctx, query, values...)
	if err != nil {
		return fmt.Errorf("sqlite: create sandbox %q: %w", sb.ID, err)
	}

	inserted, err := result.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: create sandbox %q: %w", sb.ID, err)
	}
	if inserted == 0 {
		return fmt.Errorf("sandbox %q already exists: %w", sb.ID, store.ErrConflict)
	}
	return nil
}

// GetSandbox returns the record with id, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetSandbox(ctx context.Context, id string) (store.Sandbox, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE id = ?`, id)
	sb, err := scanSandbox(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Sandbox{}, fmt.Errorf("sandbox %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Sandbox{}, fmt.Errorf("sqlite: get sandbox %q: %w", id, err)
	}
	return sb, nil
}

// ListSandboxes returns the records that match f, newest CreatedAt first.
// Records created at the same time are ordered by descending ID, and records
// with a zero CreatedAt come last. A Limit of zero or less returns all
// matches.
func (s *Store) ListSandboxes(ctx context.Context, f store.Filter) ([]store.Sandbox, error) {
	var conditions []string
	var args []any
	if f.State != "" {
		conditions = append(conditions, "state = ?")
		args = append(args, string(f.State))
	}
	if f.OwnerID != "" {
		conditions = append(conditions, "owner_id = ?")
		args = append(args, f.OwnerID)
	}
	if f.Live {
		conditions = append(conditions, "state != ?")
		args = append(args, string(store.StateDestroyed))
	}

	query := `SELECT ` + sandboxColumns + ` FROM sandboxes`
	if len(conditions) > 0 {
		query += ` WHERE ` + strings.Join(conditions, " AND ")
	}
	query += ` ORDER BY created_at DESC, id DESC`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}

	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list sandboxes: %w", err)
	}
	defer rows.Close()

	sandboxes := []store.Sandbox{}
	for rows.Next() {
		sb, err := scanSandbox(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list sandboxes: %w", err)
		}
		sandboxes = append(sandboxes, sb)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list sandboxes: %w", err)
	}
	return sandboxes, nil
}

// UpdateSandbox replaces every field of the record with sb.ID and sets its
// UpdatedAt to the current time, ignoring sb.UpdatedAt. It returns an error
// wrapping store.ErrNotFound when no record has sb.ID.
func (s *Store) UpdateSandbox(ctx context.Context, sb store.Sandbox) error {
	sb.UpdatedAt = time.Now()
	values, err := sandboxValues(sb)
	if err != nil {
		return fmt.Errorf("sqlite: update sandbox %q: %w", sb.ID, err)
	}

	// values starts with the id, which goes last here for the WHERE clause.
	query := `UPDATE sandboxes SET state = ?, provider = ?, image = ?, runtime = ?,
		memory_mb = ?, vcpus = ?, network = ?, owner_id = ?, template = ?,
		env = ?, metadata = ?, error = ?,
		created_at = ?, updated_at = ?, expires_at = ?, destroyed_at = ?
		WHERE id = ?`
	result, err := s.write.ExecContext(ctx, query, append(slices.Clone(values[1:]), values[0])...)
	if err != nil {
		return fmt.Errorf("sqlite: update sandbox %q: %w", sb.ID, err)
	}

	updated, err := result.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: update sandbox %q: %w", sb.ID, err)
	}
	if updated == 0 {
		return fmt.Errorf("sandbox %q: %w", sb.ID, store.ErrNotFound)
	}
	return nil
}

// CountLive returns how many records are not destroyed, for every owner when
// ownerID is empty.
func (s *Store) CountLive(ctx context.Context, ownerID string) (int, error) {
	query := `SELECT COUNT(*) FROM sandboxes WHERE state != ?`
	args := []any{string(store.StateDestroyed)}
	if ownerID != "" {
		query += ` AND owner_id = ?`
		args = append(args, ownerID)
	}

	var count int
	if err := s.read.QueryRowContext(ctx, query, args...).Scan(&count); err != nil {
		return 0, fmt.Errorf("sqlite: count live sandboxes: %w", err)
	}
	return count, nil
}

// sandboxValues validates sb and returns its column values in the order of
// sandboxColumns.
func sandboxValues(sb store.Sandbox) ([]any, error) {
	if sb.ID == "" {
		return nil, errors.New("sandbox id is empty")
	}
	if !sb.State.Valid() {
		return nil, fmt.Errorf("sandbox state %q is invalid", sb.State)
	}

	env, err := encodeMap("env", sb.Env)
	if err != nil {
		return nil, err
	}
	metadata, err := encodeMap("metadata", sb.Metadata)
	if err != nil {
		return nil, err
	}

	times := []struct {
		field string
		value time.Time
	}{
		{"created_at", sb.CreatedAt},
		{"updated_at", sb.UpdatedAt},
		{"expires_at", sb.ExpiresAt},
		{"destroyed_at", sb.DestroyedAt},
	}
	encodedTimes := make([]any, len(times))
	for i, t := range times {
		if encodedTimes[i], err = encodeTime(t.field, t.value); err != nil {
			return nil, err
		}
	}

	values := []any{
		sb.ID, string(sb.State), sb.Provider, sb.Image, sb.Runtime,
		sb.MemoryMB, sb.VCPUs, encodeBool(sb.Network),
		sb.OwnerID, sb.Template, env, metadata, sb.Error,
	}
	return append(values, encodedTimes...), nil
}

// scanSandbox reads one row selected with sandboxColumns.
func scanSandbox(row interface{ Scan(dest ...any) error }) (store.Sandbox, error) {
	var (
		sb                                   store.Sandbox
		state, env, metadata                 string
		network                              int
		created, updated, expires, destroyed sql.NullInt64
	)
	err := row.Scan(&sb.ID, &state, &sb.Provider, &sb.Image, &sb.Runtime,
		&sb.MemoryMB, &sb.VCPUs, &network,
		&sb.OwnerID, &sb.Template, &env, &metadata, &sb.Error,
		&created, &updated, &expires, &destroyed)
	if err != nil {
		return store.Sandbox{}, err
	}

	sb.State = store.State(state)
	sb.Network = network != 0
	if sb.Env, err = decodeMap("env", env); err != nil {
		return store.Sandbox{}, fmt.Errorf("sandbox %q: %w", sb.ID, err)
	}
	if sb.Metadata, err = decodeMap("metadata", metadata); err != nil {
		return store.Sandbox{}, fmt.Errorf("sandbox %q: %w", sb.ID, err)
	}
	sb.CreatedAt = decodeTime(created)
	sb.UpdatedAt = decodeTime(updated)
	sb.ExpiresAt = decodeTime(expires)
	sb.DestroyedAt = decodeTime(destroyed)
	return sb, nil
}
