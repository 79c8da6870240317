package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationFiles contains the schema, one file per version. A file is named
// NNNN_description.sql, and versions start at 1 without gaps. A released file
// never changes, so every schema change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema version.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the migrations/*.sql files of fsys, ordered by version.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}

	var migrations []migration
	for _, name := range names {
		version, err := parseMigrationName(path.Base(name))
		if err != nil {
			return nil, err
		}
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		migrations = append(migrations, migration{version: version, name: name, sql: string(text)})
	}
	sort.Slice(migrations, func(i, j int) bool { return migrations[i].version < migrations[j].version })

	for i, m := range migrations {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s has version %d, want %d: versions must start at 1 without gaps or duplicates", m.name, m.version, i+1)
		}
	}
	return migrations, nil
}

// parseMigrationName returns the version of a file named NNNN_description.sql.
func parseMigrationName(name string) (int, error) {
	prefix, rest, found := strings.Cut(name, "_")
	if !found || len(prefix) != 4 || rest == ".sql" {
		return 0, fmt.Errorf("migration file name %q is invalid: want NNNN_description.sql", name)
	}
	version, err := strconv.Atoi(prefix)
	if err != nil || version < 1 {
		return 0, fmt.Errorf("migration file name %q is invalid: want a version from 0001 to 9999", name)
	}
	return version, nil
}

// migrate brings the database on db up to the newest version in fsys. It
// fails without changing anything when the database is newer than fsys.
func migrate(ctx context.Context, db *sql.DB, fsys fs.FS) error {
	migrations, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	latest := len(migrations)

	const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	) STRICT`
	if _, err := db.ExecContext(ctx, createTable); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}

	current, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("database schema version %d is newer than version %d, the newest this binary supports: upgrade StacyVM or open a database it created", current, latest)
	}

	for _, m := range migrations[current:] {
		if err := applyMigration(ctx, db, m); err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
	}
	return nil
}

// rowQuerier is the query method that *sql.DB and *sql.Tx share.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion returns the highest applied version, 0 for a new database.
func schemaVersion(ctx context.Context, q rowQuerier) (int, error) {
	var version int
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&version)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return version, nil
}

// applyMigration runs m and records it in one transaction. It skips m when
// another process applied it after migrate read the version.
func applyMigration(ctx context.Context, db *sql.DB, m migration) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()

	current, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if current >= m.version {
		return tx.Commit()
	}

	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.version, time.Now().UnixNano())
	if err != nil {
		return err
	}
	return tx.Commit()
}
