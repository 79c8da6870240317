package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServeRestartAfterSIGKILL(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServe(t, dataDir)

	ids := []string{spawnID(t, srv.url), spawnID(t, srv.url), spawnID(t, srv.url)}
	for _, id := range ids {
		mustCLI(t, srv.url, "exec", id, "--", "sh", "-c", "echo "+id+" > marker.txt")
	}

	srv.kill(syscall.SIGKILL)
	srv = startServe(t, dataDir)

	running := strings.Fields(mustCLI(t, srv.url, "ls", "-q", "--state", "running"))
	slices.Sort(running)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(running, want) {
		t.Fatalf("running after restart: got %v, want %v", running, want)
	}
	for _, id := range ids {
		if got := mustCLI(t, srv.url, "exec", id, "--", "cat", "marker.txt"); got != id+"\n" {
			t.Errorf("exec in %s after restart: got %q, want %q", id, got, id+"\n")
		}
	}

	mustCLI(t, srv.url, append([]string{"kill"}, ids...)...)
	mockRoot := filepath.Join(dataDir, "providers", "mock")
	entries, err := os.ReadDir(mockRoot)
	if err != nil {
		t.Fatalf("read mock root: %v", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("sandbox directory %s remains under %s after kill", e.Name(), mockRoot)
		}
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServe(t, dataDir)
	id := spawnID(t, srv.url)
	mustCLI(t, srv.url, "exec", id, "--", "sh", "-c", "echo kept > kept.txt")

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.exitCode(t, 30*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	logs := srv.stderr.String()
	for _, step := range []string{"shutdown requested", "HTTP server stopped", "manager stopped", "store closed"} {
		if !strings.Contains(logs, step) {
			t.Errorf("shutdown log lacks %q:\n%s", step, logs)
		}
	}

	srv = startServe(t, dataDir)
	if got := mustCLI(t, srv.url, "ls", "-q"); got != id+"\n" {
		t.Errorf("ls after restart: got %q, want %q", got, id+"\n")
	}
	if got := mustCLI(t, srv.url, "exec", id, "--", "cat", "kept.txt"); got != "kept\n" {
		t.Errorf("exec after restart: got %q, want %q", got, "kept\n")
	}
}

func TestServeRejectsExposedListen(t *testing.T) {
	r := cli(t, "", nil, "serve", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir())
	if r.code != 2 {
		t.Errorf("exit code: got %d, want 2", r.code)
	}
	for _, want := range []string{`listen "0.0.0.0:0"`, "--api-key", "--insecure-no-auth"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestServeUnknownConfigKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stacyvm.yaml")
	content := "listen: 127.0.0.1:0\nlimits:\n  max_memroy_mb: 1024\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", nil, "serve", "--config", file, "--data-dir", t.TempDir())
	if r.code != 2 {
		t.Errorf("exit code: got %d, want 2", r.code)
	}
	if want := file + `:3: unknown key "limits.max_memroy_mb"`; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
}

func TestServeAPIKey(t *testing.T) {
	srv := startServe(t, t.TempDir(), "--api-key", "s3cret")

	r := cli(t, srv.url, nil, "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "API key") {
		t.Errorf("ls without a key: got code %d stderr %q, want 1 and a message about the API key", r.code, r.stderr)
	}
	for _, want := range []string{"--api-key", "STACYVM_API_KEY"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("ls without a key: stderr %q lacks the hint %q", r.stderr, want)
		}
	}
	r = cli(t, srv.url, nil, "--api-key", "wrong", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "--api-key") {
		t.Errorf("ls with a wrong key: got code %d stderr %q, want 1 and the --api-key hint", r.code, r.stderr)
	}
	if r := cli(t, srv.url, nil, "--api-key", "s3cret", "ls"); r.code != 0 {
		t.Errorf("ls with --api-key: got code %d stderr %q, want 0", r.code, r.stderr)
	}
}
