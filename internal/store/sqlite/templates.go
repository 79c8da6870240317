package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/stacyvm/stacyvm/internal/store"
)

// templateColumns lists the templates columns in the order that
// templateValues writes them and scanTemplate reads them.
const templateColumns = `name, description, image, provider, runtime, memory_mb, vcpus, ttl,
	network, env, setup, setup_timeout, metadata, created_at, updated_at`

// CreateTemplate inserts t. It returns an error wrapping store.ErrConflict
// when a template named t.Name exists, and rejects an empty name.
func (s *Store) CreateTemplate(ctx context.Context, t store.Template) error {
	values, err := templateValues(t)
	if err != nil {
		return fmt.Errorf("sqlite: create template %q: %w", t.Name, err)
	}

	query := `INSERT INTO templates (` + templateColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO NOTHING`
	result, err := s.write.ExecContext(ctx, query, values...)
	if err != nil {
		return fmt.Errorf("sqlite: create template %q: %w", t.Name, err)
	}

	inserted, err := result.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: create template %q: %w", t.Name, err)
	}
	if inserted == 0 {
		return fmt.Errorf("template %q already exists: %w", t.Name, store.ErrConflict)
	}
	return nil
}

// GetTemplate returns the template named name, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetTemplate(ctx context.Context, name string) (store.Template, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+templateColumns+` FROM templates WHERE name = ?`, name)
	t, err := scanTemplate(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Template{}, fmt.Errorf("template %q does not exist: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.Template{}, fmt.Errorf("sqlite: get template %q: %w", name, err)
	}
	return t, nil
}

// ListTemplates returns every template sorted by name.
func (s *Store) ListTemplates(ctx context.Context) ([]store.Template, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+templateColumns+` FROM templates ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list templates: %w", err)
	}
	defer rows.Close()

	templates := []store.Template{}
	for rows.Next() {
		t, err := scanTemplate(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list templates: %w", err)
		}
		templates = append(templates, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list templates: %w", err)
	}
	return templates, nil
}

// UpdateTemplate replaces every field of the template named t.Name except
// CreatedAt, which keeps its stored value, and sets UpdatedAt to the current
// time, ignoring t.CreatedAt and t.UpdatedAt. It returns an error wrapping
// store.ErrNotFound when no template has the name.
func (s *Store) UpdateTemplate(ctx context.Context, t store.Template) error {
	t.UpdatedAt = time.Now()
	values, err := templateValues(t)
	if err != nil {
		return fmt.Errorf("sqlite: update template %q: %w", t.Name, err)
	}

	// values starts with the name, which goes last for the WHERE clause,
	// and ends with created_at and updated_at, of which only updated_at is
	// written.
	last := len(values) - 1
	args := append(slices.Clone(values[1:last-1]), values[last], values[0])
	query := `UPDATE templates SET description = ?, image = ?, provider = ?, runtime = ?,
		memory_mb = ?, vcpus = ?, ttl = ?, network = ?, env = ?, setup = ?,
		setup_timeout = ?, metadata = ?, updated_at = ?
		WHERE name = ?`
	result, err := s.write.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlite: update template %q: %w", t.Name, err)
	}

	updated, err := result.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: update template %q: %w", t.Name, err)
	}
	if updated == 0 {
		return fmt.Errorf("template %q does not exist: %w", t.Name, store.ErrNotFound)
	}
	return nil
}

// DeleteTemplate deletes the template named name, or returns an error
// wrapping store.ErrNotFound when there is none.
func (s *Store) DeleteTemplate(ctx context.Context, name string) error {
	result, err := s.write.ExecContext(ctx, `DELETE FROM templates WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("sqlite: delete template %q: %w", name, err)
	}
	deleted, err := result.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: delete template %q: %w", name, err)
	}
	if deleted == 0 {
		return fmt.Errorf("template %q does not exist: %w", name, store.ErrNotFound)
	}
	return nil
}

// templateValues validates t and returns its column values in the order of
// templateColumns.
func templateValues(t store.Template) ([]any, error) {
	if t.Name == "" {
		return nil, errors.New("template name is empty")
	}

	env, err := encodeMap("env", t.Env)
	if err != nil {
		return nil, err
	}
	metadata, err := encodeMap("metadata", t.Metadata)
	if err != nil {
		return nil, err
	}
	setup, err := encodeList("setup", t.Setup)
	if err != nil {
		return nil, err
	}
	created, err := encodeTime("created_at", t.CreatedAt)
	if err != nil {
		return nil, err
	}
	updated, err := encodeTime("updated_at", t.UpdatedAt)
	if err != nil {
		return nil, err
	}

	return []any{
		t.Name, t.Description, t.Image, t.Provider, t.Runtime,
		t.MemoryMB, t.VCPUs, int64(t.TTL), encodeBool(t.Network),
		env, setup, int64(t.SetupTimeout), metadata, created, updated,
	}, nil
}

// scanTemplate reads one row selected with templateColumns.
func scanTemplate(row interface{ Scan(dest ...any) error }) (store.Template, error) {
	var (
		t                    store.Template
		ttl, setupTimeout    int64
		network              int
		env, setup, metadata string
		created, updated     sql.NullInt64
	)
	err := row.Scan(&t.Name, &t.Description, &t.Image, &t.Provider, &t.Runtime,
		&t.MemoryMB, &t.VCPUs, &ttl, &network,
		&env, &setup, &setupTimeout, &metadata, &created, &updated)
	if err != nil {
		return store.Template{}, err
	}

	t.TTL = time.Duration(ttl)
	t.SetupTimeout = time.Duration(setupTimeout)
	t.Network = network != 0
	if t.Env, err = decodeMap("env", env); err != nil {
		return store.Template{}, fmt.Errorf("template %q: %w", t.Name, err)
	}
	if t.Metadata, err = decodeMap("metadata", metadata); err != nil {
		return store.Template{}, fmt.Errorf("template %q: %w", t.Name, err)
	}
	if t.Setup, err = decodeList("setup", setup); err != nil {
		return store.Template{}, fmt.Errorf("template %q: %w", t.Name, err)
	}
	t.CreatedAt = decodeTime(created)
	t.UpdatedAt = decodeTime(updated)
	return t, nil
}

// encodeList returns list as a JSON array, [] when list is nil. Like
// encodeMap it rejects strings that are not valid UTF-8.
func encodeList(field string, list []string) (string, error) {
	if len(list) == 0 {
		return "[]", nil
	}
	for i, item := range list {
		if !utf8.ValidString(item) {
			return "", fmt.Errorf("%s item %d is not valid UTF-8", field, i)
		}
	}
	text, err := json.Marshal(list)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", field, err)
	}
	return string(text), nil
}

// decodeList is the inverse of encodeList and never returns nil.
func decodeList(field, text string) ([]string, error) {
	list := []string{}
	if err := json.Unmarshal([]byte(text), &list); err != nil {
		return nil, fmt.Errorf("decode %s: %w", field, err)
	}
	if list == nil {
		list = []string{}
	}
	return list, nil
}
