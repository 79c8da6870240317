package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// AppendEvent stores e and returns its sequence number, ignoring e.Seq. A zero
// e.Time is set to the current time. Sequence numbers increase strictly and
// are never reused, even after PruneEvents deletes the newest events.
func (s *Store) AppendEvent(ctx context.Context, e store.Event) (int64, error) {
	if e.Type == "" {
		return 0, errors.New("sqlite: append event: event type is empty")
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	at, err := encodeTime("event time", e.Time)
	if err != nil {
		return 0, fmt.Errorf("sqlite: append event: %w", err)
	}

	result, err := s.write.ExecContext(ctx,
		`INSERT INTO events (type, sandbox_id, time, data) VALUES (?, ?, ?, ?)`,
		e.Type, e.SandboxID, at, e.Data)
	if err != nil {
		return 0, fmt.Errorf("sqlite: append event: %w", err)
	}
	seq, err := result.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("sqlite: append event: %w", err)
	}
	return seq, nil
}

// EventsAfter returns up to limit events with Seq greater than after, oldest
// first. A limit of zero or less returns all of them.
func (s *Store) EventsAfter(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	query := `SELECT seq, type, sandbox_id, time, data FROM events WHERE seq > ? ORDER BY seq`
	args := []any{after}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}

	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: events after %d: %w", after, err)
	}
	defer rows.Close()

	events := []store.Event{}
	for rows.Next() {
		var e store.Event
		var at sql.NullInt64
		if err := rows.Scan(&e.Seq, &e.Type, &e.SandboxID, &at, &e.Data); err != nil {
			return nil, fmt.Errorf("sqlite: events after %d: %w", after, err)
		}
		e.Time = decodeTime(at)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: events after %d: %w", after, err)
	}
	return events, nil
}

// PruneEvents deletes the events whose Time is before the given time, then
// all but the keep events with the highest Seq, and returns how many it
// deleted. A zero before deletes nothing by age, and a keep of zero or less
// deletes nothing by count.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, keep int) (_ int64, err error) {
	cutoff, err := encodeTime("prune time", before)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune events: %w", err)
	}

	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune events: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()

	var deleted int64
	if cutoff != nil {
		n, err := execCount(ctx, tx, `DELETE FROM events WHERE time < ?`, cutoff)
		if err != nil {
			return 0, fmt.Errorf("sqlite: prune events before %s: %w", before.UTC().Format(time.RFC3339Nano), err)
		}
		deleted += n
	}
	if keep > 0 {
		// The subquery finds the newest event beyond the keep newest. When
		// there is none it yields NULL and the comparison deletes nothing.
		n, err := execCount(ctx, tx,
			`DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
			keep)
		if err != nil {
			return 0, fmt.Errorf("sqlite: prune events to the newest %d: %w", keep, err)
		}
		deleted += n
	}

	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: prune events: %w", err)
	}
	return deleted, nil
}

// execCount runs a statement and returns how many rows it changed.
func execCount(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	result, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return result.RowsAffected()
}
