package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
	"github.com/stacyvm/stacyvm/internal/store/storetest"
)

// openTestStore opens a store on a new file in a temporary directory and
// returns it with the file's path. The caller closes the store.
func openTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stacyvm.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s, path
}

// closeOnCleanup closes s when the test ends.
func closeOnCleanup(t *testing.T, s *Store) {
	t.Helper()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTestStore(t)
		return s
	})
}

func TestPragmasOnEveryConnection(t *testing.T) {
	s, _ := openTestStore(t)
	closeOnCleanup(t, s)

	want := map[string]string{
		"journal_mode": "wal",
		"busy_timeout": strconv.Itoa(busyTimeoutMS),
		"foreign_keys": "1",
		"synchronous":  "1", // NORMAL
	}
	pools := []struct {
		name  string
		db    *sql.DB
		conns int
	}{
		{"write", s.write, 1},
		{"read", s.read, minReadConns},
	}
	for _, pool := range pools {
		// Hold several connections at once so the pool has to open new ones.
		var conns []*sql.Conn
		for range pool.conns {
			conn, err := pool.db.Conn(t.Context())
			if err != nil {
				t.Fatalf("%s pool: Conn: %v", pool.name, err)
			}
			conns = append(conns, conn)
		}
		for i, conn := range conns {
			for pragma, value := range want {
				var got string
				if err := conn.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
					t.Fatalf("%s pool connection %d: PRAGMA %s: %v", pool.name, i, pragma, err)
				}
				if got != value {
					t.Errorf("%s pool connection %d: PRAGMA %s = %q, want %q", pool.name, i, pragma, got, value)
				}
			}
		}
		for _, conn := range conns {
			conn.Close()
		}
	}
}

func TestReadPoolRejectsWrites(t *testing.T) {
	s, _ := openTestStore(t)
	closeOnCleanup(t, s)

	_, err := s.read.ExecContext(t.Context(), `DELETE FROM events`)
	if err == nil {
		t.Errorf("DELETE on the read pool succeeded, want a read-only error")
	}
}

func TestDataPersistsAcrossReopen(t *testing.T) {
	s, path := openTestStore(t)

	sb := store.Sandbox{
		ID:        "sb-persist",
		State:     store.StateRunning,
		Image:     "alpine:3",
		Metadata:  map[string]string{"kept": "yes ✓"},
		CreatedAt: time.Date(2025, time.June, 1, 12, 0, 0, 123456789, time.UTC),
	}
	if err := s.CreateSandbox(t.Context(), sb); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	seq, err := s.AppendEvent(t.Context(), store.Event{Type: "sandbox.created", SandboxID: sb.ID, Data: []byte(`{}`)})
	if err != nil {
		t.Fatalf("AppendEvent: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	reopened, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	closeOnCleanup(t, reopened)

	got, err := reopened.GetSandbox(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("GetSandbox after reopen: %v", err)
	}
	if got.Image != sb.Image || got.Metadata["kept"] != "yes ✓" || !got.CreatedAt.Equal(sb.CreatedAt) {
		t.Errorf("sandbox after reopen = %+v, want %+v", got, sb)
	}

	events, err := reopened.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("EventsAfter after reopen: %v", err)
	}
	if len(events) != 1 || events[0].Seq != seq {
		t.Errorf("events after reopen = %+v, want one with seq %d", events, seq)
	}
}

// appliedMigrations returns the rows of schema_migrations as version to
// applied_at.
func appliedMigrations(t *testing.T, db *sql.DB) map[int]int64 {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	defer rows.Close()

	applied := map[int]int64{}
	for rows.Next() {
		var version int
		var appliedAt int64
		if err := rows.Scan(&version, &appliedAt); err != nil {
			t.Fatalf("scan schema_migrations: %v", err)
		}
		applied[version] = appliedAt
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return applied
}

func TestMigrationsRecorded(t *testing.T) {
	migrations, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	if len(migrations) == 0 {
		t.Fatal("no embedded migrations")
	}

	s, path := openTestStore(t)
	first := appliedMigrations(t, s.read)
	if len(first) != len(migrations) {
		t.Errorf("schema_migrations has %d rows, want %d", len(first), len(migrations))
	}
	for _, m := range migrations {
		if first[m.version] == 0 {
			t.Errorf("migration %d is not recorded with an applied_at time", m.version)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	reopened, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	closeOnCleanup(t, reopened)

	second := appliedMigrations(t, reopened.read)
	if fmt.Sprint(second) != fmt.Sprint(first) {
		t.Errorf("schema_migrations after reopen = %v, want unchanged %v", second, first)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	s, path := openTestStore(t)
	latest := len(appliedMigrations(t, s.read))
	future := latest + 7
	_, err := s.write.ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, future, time.Now().UnixNano())
	if err != nil {
		t.Fatalf("insert future version: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	reopened, err := Open(t.Context(), path)
	if err == nil {
		reopened.Close()
		t.Fatalf("Open on a database at version %d succeeded, want an error", future)
	}
	for _, version := range []int{future, latest} {
		if !strings.Contains(err.Error(), fmt.Sprintf("version %d", version)) {
			t.Errorf("Open error %q does not name version %d", err, version)
		}
	}
}

// appliedFiles returns migration files for the versions that a new store
// has applied already. Each creates a table named after its version, so a
// test can tell whether migrate ran it again.
func appliedFiles(t *testing.T) (fstest.MapFS, int) {
	t.Helper()
	embedded, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	files := fstest.MapFS{}
	for _, m := range embedded {
		name := fmt.Sprintf("migrations/%04d_applied.sql", m.version)
		files[name] = &fstest.MapFile{Data: []byte(fmt.Sprintf("CREATE TABLE applied_%d (id INTEGER);", m.version))}
	}
	return files, len(embedded)
}

func TestMigrateAppliesNewVersions(t *testing.T) {
	s, _ := openTestStore(t)
	closeOnCleanup(t, s)

	// The store's own migrations are recorded already, so only the version
	// after them runs here.
	files, latest := appliedFiles(t)
	next := latest + 1
	files[fmt.Sprintf("migrations/%04d_more.sql", next)] = &fstest.MapFile{
		Data: []byte(`CREATE TABLE second (id INTEGER); CREATE TABLE third (id INTEGER);`)}
	files["migrations/README.txt"] = &fstest.MapFile{Data: []byte(`not a migration`)}
	files[fmt.Sprintf("other/%04d_ignored.sql", next+1)] = &fstest.MapFile{Data: []byte(`this is not SQL`)}
	files[fmt.Sprintf("migrations/sub/%04d_x.sql", next+2)] = &fstest.MapFile{Data: []byte(`this is not SQL either`)}

	if err := migrate(t.Context(), s.write, files); err != nil {
		t.Fatalf("migrate: %v", err)
	}

	for _, table := range []string{"second", "third"} {
		if _, err := s.write.ExecContext(t.Context(), "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
			t.Errorf("table %s from migration %d: %v", table, next, err)
		}
	}
	if _, err := s.write.ExecContext(t.Context(), "SELECT * FROM applied_1"); err == nil {
		t.Errorf("table applied_1 exists, want migration 1 skipped as already applied")
	}
	if applied := appliedMigrations(t, s.read); len(applied) != next {
		t.Errorf("schema_migrations = %v, want versions 1 to %d", applied, next)
	}
}

func TestMigrateRollsBackFailedMigration(t *testing.T) {
	s, _ := openTestStore(t)
	closeOnCleanup(t, s)

	files, latest := appliedFiles(t)
	broken := fmt.Sprintf("%04d_broken.sql", latest+1)
	files["migrations/"+broken] = &fstest.MapFile{Data: []byte(`CREATE TABLE half (id INTEGER); NOT VALID SQL;`)}
	err := migrate(t.Context(), s.write, files)
	if err == nil {
		t.Fatal("migrate with a broken migration succeeded, want an error")
	}
	if !strings.Contains(err.Error(), broken) {
		t.Errorf("migrate error %q does not name the failed file", err)
	}

	if _, err := s.write.ExecContext(t.Context(), "SELECT * FROM half"); err == nil {
		t.Errorf("table half exists, want the failed migration rolled back")
	}
	if applied := appliedMigrations(t, s.read); len(applied) != latest {
		t.Errorf("schema_migrations = %v, want only versions 1 to %d", applied, latest)
	}
}

func TestLoadMigrationsRejectsBadFiles(t *testing.T) {
	tests := []struct {
		name  string
		files []string
	}{
		{"gap", []string{"0001_init.sql", "0003_later.sql"}},
		{"duplicate", []string{"0001_init.sql", "0001_again.sql"}},
		{"starts at 2", []string{"0002_init.sql"}},
		{"version zero", []string{"0000_init.sql", "0001_next.sql"}},
		{"no description", []string{"0001.sql"}},
		{"empty description", []string{"0001_.sql"}},
		{"short version", []string{"1_init.sql"}},
		{"not a number", []string{"abcd_init.sql"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := fstest.MapFS{}
			for _, name := range tt.files {
				files["migrations/"+name] = &fstest.MapFile{Data: []byte(`SELECT 1;`)}
			}
			if _, err := loadMigrations(files); err == nil {
				t.Errorf("loadMigrations(%v) succeeded, want an error", tt.files)
			}
		})
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "stacyvm.db")
	s, err := Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded, want an error", path)
	}
	if !strings.Contains(err.Error(), filepath.Dir(path)) {
		t.Errorf("Open error %q does not name the directory", err)
	}
	if _, statErr := os.Stat(filepath.Dir(path)); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("Open created the directory, want it left to the caller")
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#query%chars")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "stacyvm.db")

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	closeOnCleanup(t, s)

	if _, err := os.Stat(path); err != nil {
		t.Errorf("database file not created at %s: %v", path, err)
	}
}

func TestOpenRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())

	s, err := Open(t.Context(), "stacyvm.db")
	if err != nil {
		t.Fatalf("Open(stacyvm.db): %v", err)
	}
	closeOnCleanup(t, s)

	if _, err := os.Stat("stacyvm.db"); err != nil {
		t.Errorf("database file not created in the working directory: %v", err)
	}
}

func TestOpenCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	path := filepath.Join(t.TempDir(), "stacyvm.db")
	s, err := Open(ctx, path)
	if err == nil {
		s.Close()
		t.Fatal("Open with a canceled context succeeded, want an error")
	}
}

// TestTwoStoresShareFile opens the same file twice, as two processes would,
// and writes from both at once. The writers of different pools contend for
// the file lock, which the busy timeout must absorb.
func TestTwoStoresShareFile(t *testing.T) {
	first, path := openTestStore(t)
	closeOnCleanup(t, first)
	second, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	closeOnCleanup(t, second)

	const perStore = 25
	var wg sync.WaitGroup
	for i, s := range []*Store{first, second} {
		for n := range perStore {
			wg.Go(func() {
				id := fmt.Sprintf("store%d-sb%02d", i, n)
				sb := store.Sandbox{ID: id, State: store.StateCreating}
				if err := s.CreateSandbox(t.Context(), sb); err != nil {
					t.Errorf("CreateSandbox(%s): %v", id, err)
					return
				}
				sb.State = store.StateRunning
				if err := s.UpdateSandbox(t.Context(), sb); err != nil {
					t.Errorf("UpdateSandbox(%s): %v", id, err)
				}
				if _, err := s.AppendEvent(t.Context(), store.Event{Type: "sandbox.created", SandboxID: id}); err != nil {
					t.Errorf("AppendEvent(%s): %v", id, err)
				}
				if _, err := s.PruneEvents(t.Context(), time.Time{}, 1000); err != nil {
					t.Errorf("PruneEvents: %v", err)
				}
			})
		}
	}
	wg.Wait()

	count, err := first.CountLive(t.Context(), "")
	if err != nil {
		t.Fatalf("CountLive: %v", err)
	}
	if count != 2*perStore {
		t.Errorf("CountLive = %d, want %d", count, 2*perStore)
	}
}

func TestInvalidValuesRejected(t *testing.T) {
	s, _ := openTestStore(t)
	closeOnCleanup(t, s)

	tests := []struct {
		name string
		sb   store.Sandbox
	}{
		{"env value not UTF-8", store.Sandbox{ID: "sb-1", State: store.StateRunning, Env: map[string]string{"K": "\xff"}}},
		{"metadata key not UTF-8", store.Sandbox{ID: "sb-2", State: store.StateRunning, Metadata: map[string]string{"\xfe": "v"}}},
		{"time after 2262", store.Sandbox{ID: "sb-3", State: store.StateRunning, ExpiresAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"time before 1678", store.Sandbox{ID: "sb-4", State: store.StateRunning, CreatedAt: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateSandbox(t.Context(), tt.sb); err == nil {
				t.Errorf("CreateSandbox succeeded, want an error")
			}
			if _, err := s.GetSandbox(t.Context(), tt.sb.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetSandbox after rejected create error = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestCloseTwice(t *testing.T) {
	s, _ := openTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.GetSandbox(t.Context(), "sb-1"); err == nil {
		t.Errorf("GetSandbox after Close succeeded, want an error")
	}
}
