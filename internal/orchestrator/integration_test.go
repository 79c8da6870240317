package orchestrator

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
	"github.com/stacyvm/stacyvm/internal/store"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
)

// mockServer is one server process: a store, a mock provider and a
// started Manager over shared directories.
type mockServer struct {
	m     *Manager
	store *sqlite.Store
	mock  *mock.Provider
}

// startMockServer opens the store at dbPath and a mock provider over root,
// and starts a Manager over them. prepare, when not nil, runs before Start.
func startMockServer(t *testing.T, dbPath, root string, prepare func(*mock.Provider)) *mockServer {
	t.Helper()
	st, err := sqlite.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	p, err := mock.New(mock.Config{Root: root})
	if err != nil {
		t.Fatalf("mock.New: %v", err)
	}
	if prepare != nil {
		prepare(p)
	}

	registry := NewRegistry(mock.Name)
	registry.Register(p)
	m, err := New(Options{
		Store:    st,
		Registry: registry,
		Limits:   config.Default().Limits,
		Manager:  config.Default().Manager,
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return &mockServer{m: m, store: st, mock: p}
}

// stop closes the Manager and the store, as a server shutdown does.
func (s *mockServer) stop(t *testing.T) {
	t.Helper()
	if err := s.m.Close(); err != nil {
		t.Errorf("Close manager: %v", err)
	}
	if err := s.store.Close(); err != nil {
		t.Errorf("Close store: %v", err)
	}
}

// run executes a shell command and returns its stdout, failing the test on
// an error or a non-zero exit.
func (s *mockServer) run(t *testing.T, id, command string) string {
	t.Helper()
	var out bytes.Buffer
	res, err := s.m.Exec(t.Context(), id, ExecRequest{Command: command, Shell: true}, collect(&out))
	if err != nil {
		t.Fatalf("Exec %q: %v", command, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("Exec %q: exit code %d, output %q", command, res.ExitCode, out.String())
	}
	return out.String()
}

func TestMockProviderAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "stacyvm.db")
	root := filepath.Join(dir, "sandboxes")

	// First server: spawn, exec, write and read a file.
	first := startMockServer(t, dbPath, root, nil)
	sb, err := first.m.Spawn(t.Context(), SpawnRequest{Env: map[string]string{"GREETING": "hello"}})
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	if got := first.run(t, sb.ID, "echo $GREETING"); got != "hello\n" {
		t.Errorf("echo output = %q, want %q", got, "hello\n")
	}

	files, err := first.m.Files(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	content := "line one\nbinary \x00\xff bytes\n"
	if err := files.WriteFile(t.Context(), "notes/a.txt", strings.NewReader(content), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	rc, err := files.ReadFile(t.Context(), "/workspace/notes/a.txt")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != content {
		t.Errorf("ReadFile = %q, %v; want %q", got, err, content)
	}
	if got := first.run(t, sb.ID, "cat notes/a.txt"); got != content {
		t.Errorf("cat in /workspace = %q, want the written content", got)
	}
	first.stop(t)

	// Second server over the same store and directories. A runtime created
	// while no server ran is adopted by the startup reconcile.
	const strayID = "sb-strayruntime1"
	second := startMockServer(t, dbPath, root, func(p *mock.Provider) {
		if err := p.Spawn(t.Context(), provider.SpawnSpec{ID: strayID, OwnerID: "bob"}); err != nil {
			t.Fatalf("spawn a runtime without a record: %v", err)
		}
	})
	defer second.stop(t)

	after, err := second.m.Get(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if after.State != store.StateRunning {
		t.Fatalf("state after restart = %s (%s), want running", after.State, after.Error)
	}
	if got := second.run(t, sb.ID, "cat notes/a.txt; echo $GREETING"); got != content+"hello\n" {
		t.Errorf("exec after restart = %q, want the file and the sandbox env", got)
	}

	stray, err := second.m.Get(t.Context(), strayID)
	if err != nil {
		t.Fatalf("Get adopted runtime: %v", err)
	}
	if stray.State != store.StateRunning || stray.OwnerID != "bob" || stray.Provider != mock.Name {
		t.Errorf("adopted record = %+v, want running, owner bob, provider mock", stray)
	}

	// Destroy removes the runtime's directory.
	if err := second.m.Destroy(t.Context(), sb.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, sb.ID)); !os.IsNotExist(err) {
		t.Errorf("sandbox directory after Destroy: stat error %v, want not exist", err)
	}
	final, err := second.m.Get(t.Context(), sb.ID)
	if err != nil || final.State != store.StateDestroyed {
		t.Errorf("record after Destroy = %s, %v; want destroyed", final.State, err)
	}
}
