// Package sqlite implements store.Store on an embedded SQLite database, the
// default store of a single StacyVM host. It uses the pure Go driver
// modernc.org/sqlite, so the binary needs no C toolchain or shared library.
//
// The database runs in WAL mode. Writes go through a pool of exactly one
// connection that starts every transaction with BEGIN IMMEDIATE, so writers
// in one process queue in Go instead of failing with SQLITE_BUSY. Reads use a
// separate read-only pool and run in parallel with the writer. A second
// process writing the same file waits up to the busy timeout (5s) for the
// lock.
//
// Encoding:
//   - Times are INTEGER unix nanoseconds in UTC. A zero time.Time is stored
//     as NULL and read back as the zero time.Time; every other time is read
//     back in UTC. Times outside the int64 nanosecond range (years 1678 to
//     2262) are rejected.
//   - Env and Metadata are JSON objects in TEXT columns. A nil map is stored
//     as {} and every map is read back non-nil, empty when there are no keys.
//     Keys and values must be valid UTF-8.
//
// The schema is versioned by the embedded migrations/NNNN_name.sql files.
// Open applies the ones the database lacks, each in its own transaction, and
// records them in schema_migrations.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/stacyvm/stacyvm/internal/store"
)

// busyTimeoutMS is the maximum time in milliseconds that a connection waits
// for a lock held by another connection or process before it fails with
// SQLITE_BUSY.
const busyTimeoutMS = 5000

// minReadConns is the smallest read pool. WAL readers do not block each
// other, so the pool grows with GOMAXPROCS above this floor.
const minReadConns = 4

// Store is a store.Store backed by one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	write *sql.DB // exactly one connection; transactions begin IMMEDIATE
	read  *sql.DB // read-only connections
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating the file when it does not exist,
// and applies any pending migrations. The parent directory must exist.
//
// Open fails when the database was migrated by a newer StacyVM than this
// binary. The error names the database's schema version and the newest
// version this binary supports.
func Open(ctx context.Context, path string) (_ *Store, err error) {
	dsn, err := dataSourceName(path)
	if err != nil {
		return nil, err
	}

	write, err := openPool(ctx, dsn.write)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			write.Close()
		}
	}()
	write.SetMaxOpenConns(1)

	if err := migrate(ctx, write, migrationFiles); err != nil {
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}

	read, err := openPool(ctx, dsn.read)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
	}
	read.SetMaxOpenConns(max(minReadConns, runtime.GOMAXPROCS(0)))

	return &Store{write: write, read: read}, nil
}

// Close closes both connection pools. Calling it more than once is safe.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// dataSources contains the connection strings of the two pools.
type dataSources struct {
	write string
	read  string
}

// dataSourceName builds the connection strings for the database file at path.
// The settings are DSN parameters, so the driver applies them to every new
// connection in the pool, not only to the first.
func dataSourceName(path string) (dataSources, error) {
	if path == "" {
		return dataSources{}, errors.New("sqlite: database path is empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return dataSources{}, fmt.Errorf("sqlite: database path %q: %w", path, err)
	}

	dir := filepath.Dir(abs)
	info, err := os.Stat(dir)
	if err != nil {
		return dataSources{}, fmt.Errorf("sqlite: database directory %s must exist before Open: %w", dir, err)
	}
	if !info.IsDir() {
		return dataSources{}, fmt.Errorf("sqlite: database directory %s is not a directory", dir)
	}

	params := url.Values{}
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "synchronous(NORMAL)")

	writeParams := cloneValues(params)
	writeParams.Set("_txlock", "immediate")

	readParams := cloneValues(params)
	readParams.Add("_pragma", "query_only(1)")

	// A file: URI escapes characters such as '?' and '#' that would otherwise
	// end the path.
	return dataSources{
		write: (&url.URL{Scheme: "file", Path: abs, RawQuery: writeParams.Encode()}).String(),
		read:  (&url.URL{Scheme: "file", Path: abs, RawQuery: readParams.Encode()}).String(),
	}, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for key, values := range v {
		out[key] = append([]string(nil), values...)
	}
	return out
}

// openPool opens a pool and connects once, so that a bad path or setting
// fails here and not on the first query.
func openPool(ctx context.Context, dsn string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
