package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
)

// Images the tests run. CI builds them with scripts/images/build.sh and
// loads them into the engine.
const (
	testImage   = "stacyvm/minimal:latest"
	pythonImage = "stacyvm/python:latest"
)

func TestMain(m *testing.M) {
	agenttest.Main(m)
}

// requireHostFeature skips the test with reason, or fails it when
// STACYVM_REQUIRE_HOST_FEATURES=1, as CI sets.
func requireHostFeature(t testing.TB, reason string) {
	t.Helper()
	if reason == "" {
		return
	}
	if os.Getenv("STACYVM_REQUIRE_HOST_FEATURES") == "1" {
		t.Fatalf("%s, and STACYVM_REQUIRE_HOST_FEATURES=1 makes that a failure", reason)
	}
	t.Skip(reason)
}

var engineCheck struct {
	once       sync.Once
	reason     string
	runtimes   []string
	haveImages map[string]bool
}

// checkEngine queries the engine at DOCKER_HOST, or the default socket, for
// its runtimes and the test images, once per test binary.
func checkEngine() {
	engineCheck.once.Do(func() {
		engine, err := client.NewClientWithOpts(client.WithHostFromEnv(), client.WithAPIVersionNegotiation())
		if err != nil {
			engineCheck.reason = fmt.Sprintf("docker: engine client: %v", err)
			return
		}
		defer engine.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		info, err := engine.Info(ctx)
		if err != nil {
			engineCheck.reason = fmt.Sprintf("docker: no engine responded at %s (%v); start dockerd", engine.DaemonHost(), err)
			return
		}
		for name := range info.Runtimes {
			engineCheck.runtimes = append(engineCheck.runtimes, name)
		}
		engineCheck.haveImages = make(map[string]bool)
		for _, ref := range []string{testImage, pythonImage} {
			_, err := engine.ImageInspect(ctx, ref)
			engineCheck.haveImages[ref] = err == nil
		}
	})
}

// requireDocker skips the test unless an engine responds and has testImage.
func requireDocker(t testing.TB) {
	t.Helper()
	requireImage(t, testImage)
}

// requireImage skips the test unless an engine responds and has ref.
func requireImage(t testing.TB, ref string) {
	t.Helper()
	checkEngine()
	requireHostFeature(t, engineCheck.reason)
	if !engineCheck.haveImages[ref] {
		requireHostFeature(t, fmt.Sprintf("docker: image %s is not loaded; run `make images` or "+
			"scripts/images/build.sh DIR and docker load -i DIR/*.tar", ref))
	}
}

// requireRuntime skips the test unless the engine has the runtime name
// registered.
func requireRuntime(t testing.TB, name string) {
	t.Helper()
	requireDocker(t)
	if !slices.Contains(engineCheck.runtimes, name) {
		requireHostFeature(t, fmt.Sprintf("docker: runtime %s is not registered in the engine (registered: %s); "+
			"see docs/providers/docker.md", name, strings.Join(engineCheck.runtimes, ", ")))
	}
}

// testLogWriter passes log lines to t.Log until the test ends.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig returns a configuration with a fresh state directory and the
// agent built from this module.
func testConfig(t testing.TB) Config {
	return Config{
		Host:      os.Getenv("DOCKER_HOST"),
		StateDir:  t.TempDir(),
		AgentPath: agenttest.Build(t),
		Logger:    testLogger(t),
	}
}

// newTestProvider returns a provider for cfg that removes the sandboxes
// left in its state directory when the test ends.
func newTestProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if runtimes, err := p.ListRuntimes(ctx); err == nil {
			for _, rt := range runtimes {
				_ = p.Destroy(ctx, rt.ID)
			}
		}
		_ = p.Close()
	})
	return p
}

// spawn creates a sandbox and destroys it when the test ends.
func spawn(t testing.TB, p *Provider, spec provider.SpawnSpec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Spawn(ctx, spec); err != nil {
		t.Fatalf("Spawn(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Destroy(ctx, spec.ID); err != nil {
			t.Errorf("Destroy(%s): %v", spec.ID, err)
		}
	})
}

// testEngine returns an engine client for checks behind the provider's
// back.
func testEngine(t testing.TB) *client.Client {
	t.Helper()
	engine, err := client.NewClientWithOpts(client.WithHostFromEnv(), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	return engine
}

// inspectSandbox returns the container of sandbox id.
func inspectSandbox(t testing.TB, id string) container.InspectResponse {
	t.Helper()
	info, err := testEngine(t).ContainerInspect(t.Context(), containerName(id))
	if err != nil {
		t.Fatalf("inspect %s: %v", containerName(id), err)
	}
	return info
}

// assertNoTrace checks that sandbox id has no container and no host
// directory under stateDir.
func assertNoTrace(t testing.TB, stateDir, id string) {
	t.Helper()
	_, err := testEngine(t).ContainerInspect(context.Background(), containerName(id))
	if !cerrdefs.IsNotFound(err) {
		t.Errorf("container %s: inspect error = %v, want not found", containerName(id), err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host directory of %s: stat error = %v, want not exist", id, err)
	}
}

func TestConformanceRunc(t *testing.T) {
	requireRuntime(t, "runc")
	conformance.Run(t, conformance.Harness{
		New:     func(t *testing.T) provider.Provider { return newTestProvider(t, testConfig(t)) },
		Image:   testImage,
		Runtime: "runc",
	})
}

func TestConformanceRunsc(t *testing.T) {
	requireRuntime(t, "runsc")
	conformance.Run(t, conformance.Harness{
		New:     func(t *testing.T) provider.Provider { return newTestProvider(t, testConfig(t)) },
		Image:   testImage,
		Runtime: "runsc",
		Slack:   2 * time.Second,
	})
}

func TestEngineDown(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Host = "unix://" + filepath.Join(t.TempDir(), "no-engine.sock")
	p := newTestProvider(t, cfg)
	ctx := t.Context()

	err := p.Health(ctx)
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Health: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "dockerd") || !strings.Contains(err.Error(), "DOCKER_HOST") {
		t.Errorf("Health error %q does not say to start dockerd or set DOCKER_HOST", err)
	}

	_, listErr := p.ListRuntimes(ctx)
	_, execErr := p.Exec(ctx, "sb-1", provider.ExecRequest{Argv: []string{"true"}}, nil)
	_, statErr := p.Stat(ctx, "sb-1", "/workspace")
	calls := []struct {
		name string
		err  error
	}{
		{"Spawn", p.Spawn(ctx, provider.SpawnSpec{ID: "sb-1"})},
		{"Recover", p.Recover(ctx, "sb-1")},
		{"Destroy", p.Destroy(ctx, "sb-1")},
		{"ListRuntimes", listErr},
		{"Exec", execErr},
		{"Stat", statErr},
	}
	for _, c := range calls {
		if !errors.Is(c.err, provider.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", c.name, c.err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "sb-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed spawn left its host directory (stat error %v)", err)
	}
}

func TestSpawnRejects(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	p := newTestProvider(t, cfg)
	spawn(t, p, provider.SpawnSpec{ID: "taken", Image: testImage})

	tests := []struct {
		name     string
		spec     provider.SpawnSpec
		mentions []string
	}{
		{"taken ID", provider.SpawnSpec{ID: "taken"}, []string{"already exists"}},
		{"invalid ID", provider.SpawnSpec{ID: "Upper/case"}, []string{"Upper/case"}},
		{"empty ID", provider.SpawnSpec{}, []string{"must match"}},
		{"unknown runtime", provider.SpawnSpec{ID: "rt", Runtime: "nope"}, []string{`"nope"`, "runc"}},
		{"more CPUs than the host", provider.SpawnSpec{ID: "cpus", Image: testImage, VCPUs: 4096}, []string{"CPUs"}},
		{"memory below the engine's minimum", provider.SpawnSpec{ID: "tiny", Image: testImage, MemoryMB: 1}, []string{"memory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Spawn(t.Context(), tc.spec)
			if !errors.Is(err, provider.ErrInvalidArgument) {
				t.Fatalf("Spawn: %v, want ErrInvalidArgument", err)
			}
			for _, word := range tc.mentions {
				if !strings.Contains(err.Error(), word) {
					t.Errorf("error %q does not mention %s", err, word)
				}
			}
			if validID.MatchString(tc.spec.ID) && tc.spec.ID != "taken" {
				assertNoTrace(t, cfg.StateDir, tc.spec.ID)
			}
		})
	}
	if err := p.Recover(t.Context(), "taken"); err != nil {
		t.Errorf("Recover(taken) after the rejected second spawn: %v", err)
	}
}

func TestNetworkWithRunscRejected(t *testing.T) {
	requireRuntime(t, "runsc")
	t.Parallel()
	cfg := testConfig(t)
	p := newTestProvider(t, cfg)

	err := p.Spawn(t.Context(), provider.SpawnSpec{ID: "net-runsc", Image: testImage, Runtime: "runsc", Network: true})
	if !errors.Is(err, provider.ErrInvalidArgument) {
		t.Fatalf("Spawn with network on runsc: %v, want ErrInvalidArgument", err)
	}
	if !strings.Contains(err.Error(), "runsc") {
		t.Errorf("error %q does not name the runtime", err)
	}
	assertNoTrace(t, cfg.StateDir, "net-runsc")
}

func TestNetworkWithRunc(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	p := newTestProvider(t, testConfig(t))
	spawn(t, p, provider.SpawnSpec{ID: "net-runc", Image: testImage, Network: true})

	info := inspectSandbox(t, "net-runc")
	if got := string(info.HostConfig.NetworkMode); got != DefaultNetworkName {
		t.Errorf("NetworkMode = %q, want %q", got, DefaultNetworkName)
	}
	_, out := conformance.Shell(t, p, "net-runc", "cat /proc/net/dev")
	if !strings.Contains(out.Stdout(), "eth0") {
		t.Errorf("/proc/net/dev lacks eth0 in a sandbox with network:\n%s", out.Stdout())
	}
}

func TestImageMissing(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	p := newTestProvider(t, cfg)

	err := p.Spawn(t.Context(), provider.SpawnSpec{ID: "no-image", Image: "stacyvm-test/absent:latest"})
	if !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("Spawn: %v, want image.ErrNotFound", err)
	}
	for _, hint := range []string{"stacyvm-test/absent:latest", "docker load -i", "make images"} {
		if !strings.Contains(err.Error(), hint) {
			t.Errorf("error %q does not mention %q", err, hint)
		}
	}
	assertNoTrace(t, cfg.StateDir, "no-image")
}

func TestSpawnCleansUpWhenAgentFails(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	cfg.AgentPath = filepath.Join(t.TempDir(), "broken-agent")
	script := "#!/bin/sh\necho broken agent here >&2\nexit 3\n"
	if err := os.WriteFile(cfg.AgentPath, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(t, cfg)

	start := time.Now()
	err := p.Spawn(t.Context(), provider.SpawnSpec{ID: "broken", Image: testImage})
	if err == nil {
		t.Fatal("Spawn with an agent that exits succeeded")
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Spawn took %v to notice the container stopped, want under 10s", elapsed)
	}
	for _, want := range []string{"exit code 3", "broken agent here"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	assertNoTrace(t, cfg.StateDir, "broken")
}

func TestDestroyLeavesNothing(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	p := newTestProvider(t, cfg)
	spawn(t, p, provider.SpawnSpec{ID: "gone", Image: testImage})
	conformance.Shell(t, p, "gone", "echo data > file.txt")

	if err := p.Destroy(t.Context(), "gone"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	assertNoTrace(t, cfg.StateDir, "gone")
	if err := p.Destroy(t.Context(), "gone"); err != nil {
		t.Errorf("second Destroy: %v, want nil", err)
	}
	_, err := p.Exec(t.Context(), "gone", provider.ExecRequest{Argv: []string{"true"}}, nil)
	if !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Exec after Destroy: %v, want ErrSandboxNotFound", err)
	}
}

func TestDestroyStopsRunningExec(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	p := newTestProvider(t, testConfig(t))
	spawn(t, p, provider.SpawnSpec{ID: "busy", Image: testImage})

	errc := make(chan error, 1)
	go func() {
		_, err := p.Exec(context.Background(), "busy", provider.ExecRequest{Argv: []string{"sleep", "30"}}, nil)
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)

	if err := p.Destroy(t.Context(), "busy"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, provider.ErrSandboxDestroyed) {
			t.Errorf("Exec error = %v, want ErrSandboxDestroyed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exec still running 5s after Destroy returned")
	}
}

func TestRecoverAfterRestart(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	first := newTestProvider(t, cfg)
	spec := provider.SpawnSpec{
		ID:       "restart-1",
		Image:    testImage,
		Env:      map[string]string{"KEPT": "across restarts"},
		OwnerID:  "owner-1",
		Metadata: map[string]string{"k": "v"},
	}
	spawn(t, first, spec)
	if err := first.WriteFile(t.Context(), spec.ID, "/workspace/kept.txt", strings.NewReader("kept"), 0o644); err != nil {
		t.Fatal(err)
	}

	second := newTestProvider(t, cfg)
	if err := second.Recover(t.Context(), spec.ID); err != nil {
		t.Fatalf("Recover on a new Provider: %v", err)
	}
	_, out := conformance.Shell(t, second, spec.ID, `cat kept.txt; echo " $KEPT"`)
	if got := out.Stdout(); got != "kept across restarts\n" {
		t.Errorf("exec after restart printed %q, want the file and the spawn Env", got)
	}
	if err := second.Recover(t.Context(), "never-spawned"); !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Recover of an unknown ID: %v, want ErrSandboxNotFound", err)
	}
}

func TestRecoverStartsStoppedContainer(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	first := newTestProvider(t, cfg)
	spawn(t, first, provider.SpawnSpec{ID: "stopped", Image: testImage})
	conformance.Shell(t, first, "stopped", "echo kept > kept.txt")

	engine := testEngine(t)
	if err := engine.ContainerKill(t.Context(), containerName("stopped"), "KILL"); err != nil {
		t.Fatal(err)
	}
	waitState(t, "stopped", container.StateExited)

	second := newTestProvider(t, cfg)
	_, err := second.Exec(t.Context(), "stopped", provider.ExecRequest{Argv: []string{"true"}}, nil)
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Exec in a stopped container: %v, want ErrUnavailable", err)
	}
	if err := second.Recover(t.Context(), "stopped"); err != nil {
		t.Fatalf("Recover of a stopped container: %v", err)
	}
	_, out := conformance.Shell(t, second, "stopped", "cat kept.txt")
	if got := out.Stdout(); got != "kept\n" {
		t.Errorf("after Recover, kept.txt = %q, want %q", got, "kept\n")
	}
}

func TestCallsAfterContainerRemoved(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	p := newTestProvider(t, testConfig(t))
	spawn(t, p, provider.SpawnSpec{ID: "removed", Image: testImage})
	conformance.Shell(t, p, "removed", "true")

	err := testEngine(t).ContainerRemove(t.Context(), containerName("removed"), container.RemoveOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Exec(t.Context(), "removed", provider.ExecRequest{Argv: []string{"true"}}, nil)
	if !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Exec after the container was removed: %v, want ErrSandboxNotFound", err)
	}
	if err := p.Recover(t.Context(), "removed"); !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Recover after the container was removed: %v, want ErrSandboxNotFound", err)
	}
}

// waitState waits until the container of sandbox id has state want.
func waitState(t testing.TB, id string, want container.ContainerState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := inspectSandbox(t, id)
		if info.State.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container of %s is %s after 10s, want %s", id, info.State.Status, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLabelsAndListRuntimes(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	p := newTestProvider(t, cfg)
	other := newTestProvider(t, testConfig(t))
	before := time.Now().Add(-time.Second)
	spec := provider.SpawnSpec{
		ID:       "labelled",
		Image:    testImage,
		MemoryMB: 96,
		VCPUs:    1,
		OwnerID:  "owner-7",
		Metadata: map[string]string{"team": "platform", "purpose": "labels"},
	}
	spawn(t, p, spec)
	spawn(t, other, provider.SpawnSpec{ID: "elsewhere", Image: testImage})

	labels := inspectSandbox(t, spec.ID).Config.Labels
	want := map[string]string{
		"stacyvm.managed":      "true",
		"stacyvm.id":           "labelled",
		"stacyvm.owner":        "owner-7",
		"stacyvm.image":        testImage,
		"stacyvm.memory_mb":    "96",
		"stacyvm.vcpus":        "1",
		"stacyvm.meta.team":    "platform",
		"stacyvm.meta.purpose": "labels",
		"stacyvm.state_dir":    cfg.StateDir,
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}

	runtimes, err := p.ListRuntimes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(runtimes) != 1 {
		t.Fatalf("ListRuntimes returned %d runtimes, want only this server's one: %+v", len(runtimes), runtimes)
	}
	got := runtimes[0]
	if got.ID != spec.ID || got.Image != testImage || got.OwnerID != "owner-7" || !got.Running {
		t.Errorf("ListRuntimes = %+v, want the spawned sandbox, running", got)
	}
	if got.MemoryMB != 96 || got.VCPUs != 1 {
		t.Errorf("MemoryMB, VCPUs = %d, %d, want 96, 1", got.MemoryMB, got.VCPUs)
	}
	if got.Metadata["team"] != "platform" || got.Metadata["purpose"] != "labels" || len(got.Metadata) != 2 {
		t.Errorf("Metadata = %v, want %v", got.Metadata, spec.Metadata)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now()) {
		t.Errorf("CreatedAt = %v, want a time during the test", got.CreatedAt)
	}
	if err := p.Recover(t.Context(), "elsewhere"); !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Recover of another server's sandbox: %v, want ErrSandboxNotFound", err)
	}
}

func TestStatsAndLogs(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	p := newTestProvider(t, testConfig(t))
	spawn(t, p, provider.SpawnSpec{ID: "measured", Image: testImage, MemoryMB: 128, VCPUs: 1})

	busy := make(chan struct{})
	go func() {
		defer close(busy)
		req := provider.ExecRequest{Argv: []string{"sh", "-c", "while :; do :; done"}, Timeout: 3 * time.Second}
		_, _ = p.Exec(context.Background(), "measured", req, nil)
	}()
	time.Sleep(500 * time.Millisecond)
	stats, err := p.Stats(t.Context(), "measured")
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	<-busy

	if stats.MemoryLimitBytes != 128<<20 {
		t.Errorf("MemoryLimitBytes = %d, want %d", stats.MemoryLimitBytes, 128<<20)
	}
	if stats.MemoryBytes <= 0 || stats.MemoryBytes > 128<<20 {
		t.Errorf("MemoryBytes = %d, want between 0 and the limit", stats.MemoryBytes)
	}
	if stats.Pids < 2 {
		t.Errorf("Pids = %d while a command runs, want at least 2", stats.Pids)
	}
	// The loop competes with whatever else the host runs, so the lower
	// bound only separates a measured loop from none.
	if stats.CPUPercent < 5 || stats.CPUPercent > 130 {
		t.Errorf("CPUPercent = %.1f during a busy loop in a 1-CPU sandbox, want 5 to 130", stats.CPUPercent)
	}

	lines, err := p.Logs(t.Context(), "measured", 0)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if len(lines) == 0 || !strings.Contains(lines[0], "agent started") {
		t.Errorf("Logs = %q, want the agent's start first", lines)
	}
}

func TestImageWithoutShell(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	const ref = "stacyvm-test/empty:latest"
	engine := testEngine(t)
	importEmptyImage(t, engine, ref)
	p := newTestProvider(t, testConfig(t))
	spawn(t, p, provider.SpawnSpec{ID: "no-shell", Image: ref})

	res, out := conformance.Exec(t, p, "no-shell", provider.ExecRequest{Argv: []string{agentMountPath, "--version"}})
	if res.ExitCode != 0 || !strings.HasPrefix(out.Stdout(), "stacyvm-agent ") {
		t.Errorf("agent --version in an empty image: exit %d, output %q", res.ExitCode, out.Stdout())
	}
	res, _ = conformance.Exec(t, p, "no-shell", provider.ExecRequest{Argv: []string{"sh", "-c", "true"}})
	if res.ExitCode != 127 {
		t.Errorf("sh in an image without a shell: exit %d, want 127", res.ExitCode)
	}
	if err := p.WriteFile(t.Context(), "no-shell", "/workspace/a.txt", strings.NewReader("data"), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	info, err := p.Stat(t.Context(), "no-shell", "/workspace/a.txt")
	if err != nil || info.Size != 4 {
		t.Errorf("Stat = %+v, %v, want a 4-byte file", info, err)
	}
}

func TestSettings(t *testing.T) {
	t.Parallel()
	cfg, err := Settings(map[string]any{
		"host":             "unix:///run/docker.sock",
		"runtimes":         "runc, runsc",
		"offline_runtimes": []any{"runsc"},
		"pids_limit":       "256",
		"read_only_rootfs": true,
		"agent_timeout":    "5s",
	}, "/var/lib/stacyvm")
	if err != nil {
		t.Fatalf("Settings: %v", err)
	}
	if cfg.Host != "unix:///run/docker.sock" || cfg.PidsLimit != 256 || !cfg.ReadOnlyRootfs || cfg.AgentTimeout != 5*time.Second {
		t.Errorf("Settings = %+v, want the given values", cfg)
	}
	if !slices.Equal(cfg.Runtimes, []string{"runc", "runsc"}) || !slices.Equal(cfg.OfflineRuntimes, []string{"runsc"}) {
		t.Errorf("Runtimes, OfflineRuntimes = %q, %q, want [runc runsc], [runsc]", cfg.Runtimes, cfg.OfflineRuntimes)
	}
	if cfg.StateDir != "/var/lib/stacyvm/providers/docker" || cfg.Runtime != "runc" || cfg.DefaultImage != DefaultImage {
		t.Errorf("defaults not filled in: %+v", cfg)
	}

	_, err = Settings(map[string]any{"pids_limit": "many", "runtime": "kata", "colour": "blue", "read_only_rootfs": 3}, "/data")
	if err == nil {
		t.Fatal("Settings accepted invalid values")
	}
	for _, key := range []string{"pids_limit", "colour", "read_only_rootfs"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not report %s", err, key)
		}
	}

	_, err = Settings(map[string]any{"runtime": "kata"}, "/data")
	if err == nil || !strings.Contains(err.Error(), `"kata"`) {
		t.Errorf("Settings with a runtime missing from runtimes: %v, want an error naming it", err)
	}
}
