package docker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/pkg/client"
)

// e2eSandboxes is how many sandboxes the restart test keeps across a
// SIGKILL of the server.
const e2eSandboxes = 20

// TestServeRestartKeepsSandboxes runs the real server with the docker
// provider and kills it with SIGKILL while sandboxes run. A new server on
// the same data directory must list them as running, run commands in them,
// and destroy them without a trace.
func TestServeRestartKeepsSandboxes(t *testing.T) {
	requireDocker(t)
	if testing.Short() {
		t.Skip("builds and runs the server; skipped with -short")
	}
	bin := buildServer(t)
	dataDir := t.TempDir()
	srv := startServer(t, bin, dataDir)
	c := srv.client(t)

	ids := make([]string, e2eSandboxes)
	forEach(t, ids, func(i int, _ string) error {
		sb, err := c.Spawn(t.Context(), client.SpawnRequest{Provider: Name, Image: testImage, MemoryMB: 128})
		if err != nil {
			return fmt.Errorf("spawn %d: %w", i, err)
		}
		ids[i] = sb.ID
		_, err = c.Exec(t.Context(), sb.ID, client.ExecRequest{Command: "echo " + sb.ID + " > marker.txt", Shell: true})
		return err
	})

	srv.kill(syscall.SIGKILL)
	srv = startServer(t, bin, dataDir)
	c = srv.client(t)

	list, err := c.List(t.Context(), client.ListOptions{State: client.StateRunning})
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	for _, sb := range list {
		running = append(running, sb.ID)
	}
	slices.Sort(running)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(running, want) {
		t.Fatalf("running after the restart: got %v, want %v", running, want)
	}
	forEach(t, ids, func(_ int, id string) error {
		res, err := c.Exec(t.Context(), id, client.ExecRequest{Command: "cat", Args: []string{"marker.txt"}})
		if err != nil {
			return fmt.Errorf("exec in %s after the restart: %w", id, err)
		}
		if res.Stdout != id+"\n" {
			return fmt.Errorf("exec in %s after the restart printed %q, want %q", id, res.Stdout, id+"\n")
		}
		return nil
	})

	forEach(t, ids, func(_ int, id string) error { return c.Destroy(t.Context(), id) })
	assertNoSandboxesLeft(t, filepath.Join(dataDir, "providers", Name))
}

// forEach runs fn for every element of ids, four at a time, and fails the
// test with every error.
func forEach(t *testing.T, ids []string, fn func(i int, id string) error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	slots := make(chan struct{}, 4)
	for i, id := range ids {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := fn(i, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
}

// assertNoSandboxesLeft checks that no container is labelled with
// stateDir and that stateDir has no sandbox directory.
func assertNoSandboxesLeft(t *testing.T, stateDir string) {
	t.Helper()
	list, err := testEngine(t).ContainerList(t.Context(), container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", labelStateDir+"="+stateDir)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		t.Errorf("container %v (%s) remains after destroy", c.Names, c.State)
	}
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("host directory %s remains under %s after destroy", e.Name(), stateDir)
	}
}

// buildServer builds stacyvm into a temporary directory, with the agent
// next to it where the server looks first.
func buildServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "stacyvm")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/stacyvm/stacyvm/cmd/stacyvm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stacyvm: %v\n%s", err, out)
	}
	agentBin, err := os.ReadFile(agenttest.Build(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, agent.BinaryName), agentBin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// serverProcess is a running stacyvm serve.
type serverProcess struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
	logs *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer starts bin serve on a free loopback port with dataDir and
// docker as the default provider, and waits until it is ready.
func startServer(t *testing.T, bin, dataDir string) *serverProcess {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--default-provider", Name, "--log-level", "debug")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STACYVM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Dir = t.TempDir()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv := &serverProcess{cmd: cmd, done: make(chan struct{}), logs: &lockedBuffer{}}
	cmd.Stderr = srv.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(srv.done)
	}()
	t.Cleanup(func() {
		srv.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("serve log:\n%s", srv.logs.String())
		}
	})

	srv.url = readReadyURL(t, srv, stdout)
	return srv
}

// readReadyURL returns the URL from the line serve prints once it is
// ready, and drains stdout afterwards.
func readReadyURL(t *testing.T, srv *serverProcess, stdout io.Reader) string {
	t.Helper()
	lines := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		if scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		_, url, found := strings.Cut(line, " ready on ")
		if !found {
			t.Fatalf("serve printed %q, want a ready line; log:\n%s", line, srv.logs.String())
		}
		return url
	case <-time.After(2 * time.Minute):
		t.Fatalf("serve did not print a ready line within 2 minutes; log:\n%s", srv.logs.String())
	}
	return ""
}

func (srv *serverProcess) client(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(srv.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		err := c.Ready(ctx)
		if err == nil {
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("server not ready: %v; log:\n%s", err, srv.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends sig and waits for the server to exit.
func (srv *serverProcess) kill(sig syscall.Signal) {
	select {
	case <-srv.done:
		return
	default:
	}
	_ = srv.cmd.Process.Signal(sig)
	<-srv.done
}
