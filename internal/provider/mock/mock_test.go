package mock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
)

func newProvider(t *testing.T, root string) *Provider {
	t.Helper()
	p, err := New(Config{Root: root})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func spawn(t *testing.T, p *Provider, spec provider.SpawnSpec) {
	t.Helper()
	if err := p.Spawn(t.Context(), spec); err != nil {
		t.Fatalf("Spawn(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() { _ = p.Destroy(context.Background(), spec.ID) })
}

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		New:       func(t *testing.T) provider.Provider { return newProvider(t, t.TempDir()) },
		HostPaths: true,
	})
}

func TestRecoverAfterRestart(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	first := newProvider(t, root)
	spec := provider.SpawnSpec{
		ID:       "restart-1",
		Image:    "debian",
		Env:      map[string]string{"KEPT": "across restarts"},
		OwnerID:  "owner-1",
		Metadata: map[string]string{"k": "v"},
	}
	spawn(t, first, spec)
	if err := first.WriteFile(t.Context(), spec.ID, "/workspace/kept.txt", strings.NewReader("kept"), 0o644); err != nil {
		t.Fatal(err)
	}

	second := newProvider(t, root)
	if err := second.Recover(t.Context(), spec.ID); err != nil {
		t.Fatalf("Recover on a new Provider: %v", err)
	}
	runtimes, err := second.ListRuntimes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(runtimes) != 1 {
		t.Fatalf("ListRuntimes returned %d runtimes, want 1", len(runtimes))
	}
	got := runtimes[0]
	if got.ID != spec.ID || got.Image != "debian" || got.OwnerID != "owner-1" || got.Metadata["k"] != "v" || !got.Running {
		t.Errorf("ListRuntimes = %+v, want the spawned sandbox", got)
	}

	_, out := conformance.Shell(t, second, spec.ID, `cat kept.txt; echo " $KEPT"`)
	if got := out.Stdout(); got != "kept across restarts\n" {
		t.Errorf("exec after restart printed %q, want the file and the spawn Env", got)
	}
}

func TestDestroyRemovesDirectory(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	p := newProvider(t, root)
	spawn(t, p, provider.SpawnSpec{ID: "gone"})
	conformance.Shell(t, p, "gone", "echo data > file.txt")

	if err := p.Destroy(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox directory still exists after Destroy (stat error %v)", err)
	}
}

func TestLayout(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	p := newProvider(t, root)
	spawn(t, p, provider.SpawnSpec{ID: "layout"})

	for _, name := range []string{"state.json", "console.log", "rootfs/workspace", "rootfs/tmp", "rootfs/home"} {
		if _, err := os.Stat(filepath.Join(root, "layout", name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestServerEnvDoesNotLeak(t *testing.T) {
	t.Setenv("STACYVM_SERVER_SECRET", "do-not-leak")
	root := t.TempDir()
	p := newProvider(t, root)
	spawn(t, p, provider.SpawnSpec{ID: "env", Env: map[string]string{"FROM_SPAWN": "yes"}})

	_, out := conformance.Exec(t, p, "env", provider.ExecRequest{Argv: []string{"env"}})
	vars := map[string]string{}
	for line := range strings.Lines(out.Stdout()) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		vars[k] = v
	}
	if _, ok := vars["STACYVM_SERVER_SECRET"]; ok {
		t.Error("the server's environment reached the command")
	}
	want := map[string]string{
		"PATH":       defaultPath,
		"HOME":       filepath.Join(root, "env", "rootfs", "home"),
		"TMPDIR":     filepath.Join(root, "env", "rootfs", "tmp"),
		"LANG":       "C.UTF-8",
		"FROM_SPAWN": "yes",
	}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("%s = %q, want %q", k, vars[k], v)
		}
	}
}

func TestSpawnRejectsIDs(t *testing.T) {
	t.Parallel()
	p := newProvider(t, t.TempDir())
	spawn(t, p, provider.SpawnSpec{ID: "taken"})

	for _, id := range []string{"taken", "", "Upper", "dot.dot", "../escape", "a/b", strings.Repeat("a", 65)} {
		err := p.Spawn(t.Context(), provider.SpawnSpec{ID: id})
		if !errors.Is(err, provider.ErrInvalidArgument) {
			t.Errorf("Spawn(%q): error = %v, want ErrInvalidArgument", id, err)
		}
	}
	if err := p.Recover(t.Context(), "taken"); err != nil {
		t.Errorf("Recover(taken) after the rejected second Spawn: %v", err)
	}
}

func TestDestroyStopsRunningExec(t *testing.T) {
	t.Parallel()
	p := newProvider(t, t.TempDir())
	spawn(t, p, provider.SpawnSpec{ID: "busy"})

	errc := make(chan error, 1)
	go func() {
		req := provider.ExecRequest{Argv: []string{"sleep", "30"}, Workdir: "/workspace"}
		_, err := p.Exec(context.Background(), "busy", req, nil)
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	if err := p.Destroy(t.Context(), "busy"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Destroy took %v with a running command, want under 2s", elapsed)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, provider.ErrSandboxDestroyed) {
			t.Errorf("Exec error = %v, want ErrSandboxDestroyed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Exec still running after Destroy returned")
	}
}

func TestConsoleLog(t *testing.T) {
	t.Parallel()
	p := newProvider(t, t.TempDir())
	spawn(t, p, provider.SpawnSpec{ID: "logged", Image: "img"})
	conformance.Shell(t, p, "logged", "exit 3")

	lines, err := p.Logs(t.Context(), "logged", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 {
		t.Fatalf("Logs = %q, want a spawn line and an exec line", lines)
	}
	if !strings.Contains(lines[0], "spawned") || !strings.Contains(lines[0], `image="img"`) {
		t.Errorf("first line = %q, want the spawn with its image", lines[0])
	}
	if !strings.Contains(lines[1], `"exit 3"`) || !strings.Contains(lines[1], "exit=3") {
		t.Errorf("second line = %q, want the exec with its argv and exit code", lines[1])
	}
	if _, err := time.Parse(time.RFC3339, strings.Fields(lines[1])[0]); err != nil {
		t.Errorf("line does not start with a time: %v", err)
	}

	last, err := p.Logs(t.Context(), "logged", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(last, lines[1:]) {
		t.Errorf("Logs(1) = %q, want %q", last, lines[1:])
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "root")
	p := newProvider(t, root)
	if err := p.Health(t.Context()); err != nil {
		t.Fatalf("Health: %v", err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := p.Health(t.Context()); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Health with Root removed: %v, want ErrUnavailable", err)
	}
}

func TestWorkdirIsFile(t *testing.T) {
	t.Parallel()
	p := newProvider(t, t.TempDir())
	spawn(t, p, provider.SpawnSpec{ID: "wd"})
	if err := p.WriteFile(t.Context(), "wd", "/workspace/file", strings.NewReader("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	req := provider.ExecRequest{Argv: []string{"true"}, Workdir: "/workspace/file"}
	_, err := p.Exec(t.Context(), "wd", req, nil)
	if !errors.Is(err, provider.ErrPathExists) && !errors.Is(err, provider.ErrNotDirectory) {
		t.Errorf("Exec with a file as workdir: %v, want ErrPathExists or ErrNotDirectory", err)
	}
}
