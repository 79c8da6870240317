//go:build linux

package native

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Environment of TestServerProcess, which spawns one sandbox in a child
// process of the test, as a server would, and exits without destroying it.
const (
	envServerStateDir = "STACYVM_NATIVE_TEST_STATE_DIR"
	envServerCgroup   = "STACYVM_NATIVE_TEST_CGROUP_PARENT"
	envServerID       = "STACYVM_NATIVE_TEST_ID"
)

// TestServerProcess is the server side of TestRecoverAfterServerRestart.
// It does nothing unless that test starts it.
func TestServerProcess(t *testing.T) {
	dir := os.Getenv(envServerStateDir)
	if dir == "" {
		t.Skip("runs only as the child process of TestRecoverAfterServerRestart")
	}
	p := newTestProvider(t, testOptions{stateDir: dir, cgroupParent: os.Getenv(envServerCgroup), images: true})
	spec := provider.SpawnSpec{
		ID:       os.Getenv(envServerID),
		Image:    minimalImage,
		MemoryMB: 128,
		Env:      map[string]string{"KEPT": "across restarts"},
		OwnerID:  "owner-1",
		Metadata: map[string]string{"k": "v"},
	}
	if err := p.Spawn(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	shell(t, p, spec.ID, "echo kept > /workspace/kept.txt")
}

func TestRecoverAfterServerRestart(t *testing.T) {
	requireHost(t)
	testImages(t)
	dir := t.TempDir()
	parent := newCgroupParent(t)
	id := "restart-" + randomName()

	// The first server is a child process that spawns the sandbox and
	// exits, so the sandbox's init loses its parent as after a crash.
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$", "-test.v")
	cmd.Env = append(os.Environ(), envServerStateDir+"="+dir, envServerCgroup+"="+parent, envServerID+"="+id)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("server process: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Destroys the sandbox when the test failed before doing so.
		p, err := New(Config{StateDir: dir, CgroupParent: parent})
		if err == nil {
			_ = p.Destroy(context.Background(), id)
		}
	})

	p := newTestProvider(t, testOptions{stateDir: dir, cgroupParent: parent, images: true})
	if err := p.Recover(t.Context(), id); err != nil {
		t.Fatalf("Recover after the server exited: %v", err)
	}
	if got := shell(t, p, id, `cat /workspace/kept.txt; echo "$KEPT"`); got != "kept\nacross restarts\n" {
		t.Errorf("exec after the restart printed %q, want the file and the spawn Env", got)
	}

	runtimes, err := p.ListRuntimes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(runtimes) != 1 {
		t.Fatalf("ListRuntimes returned %d runtimes, want 1: %+v", len(runtimes), runtimes)
	}
	got := runtimes[0]
	if got.ID != id || got.Image != minimalImage || got.OwnerID != "owner-1" || got.Metadata["k"] != "v" ||
		got.MemoryMB != 128 || !got.Running || got.CreatedAt.IsZero() {
		t.Errorf("ListRuntimes = %+v, want the spawned sandbox", got)
	}

	if err := p.Destroy(t.Context(), id); err != nil {
		t.Fatalf("Destroy of the recovered sandbox: %v", err)
	}
	if err := p.Recover(t.Context(), id); !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Recover after Destroy: %v, want ErrSandboxNotFound", err)
	}
}

func TestDestroyRemovesEverything(t *testing.T) {
	for _, mode := range imageModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newTestProvider(t, testOptions{images: mode.image != HostImage})
			id := spawn(t, p, provider.SpawnSpec{Image: mode.image, MemoryMB: 64, VCPUs: 1})
			shell(t, p, id, "sleep 600 & setsid sleep 600 & echo data > /workspace/file")
			sb, err := p.lookup(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			st := sb.state

			if err := p.Destroy(t.Context(), id); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			if _, err := os.Stat(p.sandboxDir(id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sandbox directory after Destroy: stat error %v, want not exist", err)
			}
			for _, dir := range st.Cgroups.uniqueDirs() {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("cgroup %s after Destroy: stat error %v, want not exist", dir, err)
				}
			}
			if err := unix.Kill(st.Pid, 0); !errors.Is(err, unix.ESRCH) {
				if started, _ := processStartTime(st.Pid); started == st.StartTime {
					t.Errorf("init %d still exists after Destroy", st.Pid)
				}
			}
			if err := p.Destroy(t.Context(), id); err != nil {
				t.Errorf("second Destroy: %v", err)
			}
		})
	}
}

func TestRecoverAfterInitKilled(t *testing.T) {
	p := newTestProvider(t, testOptions{})
	id := spawn(t, p, provider.SpawnSpec{})
	sb, err := p.lookup(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(sb.state.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t.Context(), sb.pidfd); err != nil {
		t.Fatal(err)
	}

	if err := p.Recover(t.Context(), id); !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Recover after the init was killed: %v, want ErrSandboxNotFound", err)
	}
	if _, err := os.Stat(p.sandboxDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox directory after Recover found the init gone: stat error %v, want not exist", err)
	}
}

func TestOrphansRemoved(t *testing.T) {
	dir := t.TempDir()
	parent := newCgroupParent(t)
	p := newTestProvider(t, testOptions{stateDir: dir, cgroupParent: parent})
	live := spawn(t, p, provider.SpawnSpec{})

	// An incomplete sandbox directory and a cgroup without a directory,
	// with a process in it, as a crash during a spawn leaves them.
	if err := os.MkdirAll(filepath.Join(dir, "incomplete", runDir), 0o755); err != nil {
		t.Fatal(err)
	}
	orphan, err := p.cgroups.create(parent, "orphan", cgroupLimits{})
	if err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = sleeper.Wait() }()
	if err := orphan.addProcess(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}

	second := newTestProvider(t, testOptions{stateDir: dir, cgroupParent: parent})
	if _, err := os.Stat(filepath.Join(dir, "incomplete")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("incomplete sandbox directory after New: stat error %v, want not exist", err)
	}
	for _, d := range orphan.uniqueDirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("orphaned cgroup %s after New: stat error %v, want not exist", d, err)
		}
	}
	if err := second.Recover(t.Context(), live); err != nil {
		t.Errorf("Recover of a live sandbox after orphan cleanup: %v", err)
	}
}

func TestSpawnRejects(t *testing.T) {
	p := newTestProvider(t, testOptions{images: true})
	taken := spawn(t, p, provider.SpawnSpec{})

	tests := []struct {
		name string
		spec provider.SpawnSpec
		want string
	}{
		{"network", provider.SpawnSpec{ID: "net", Network: true}, "loopback only"},
		{"taken_id", provider.SpawnSpec{ID: taken}, "already exists"},
		{"bad_id", provider.SpawnSpec{ID: "../escape"}, "must match"},
		{"unknown_image", provider.SpawnSpec{ID: "img", Image: "stacyvm/absent"}, "stacyvm image import"},
		{"negative_memory", provider.SpawnSpec{ID: "mem", MemoryMB: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Spawn(t.Context(), tt.spec)
			if !errors.Is(err, provider.ErrInvalidArgument) {
				t.Errorf("Spawn: %v, want ErrInvalidArgument", err)
			}
			if err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Spawn error %q does not mention %q", err, tt.want)
			}
		})
	}
	entries, err := os.ReadDir(p.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state directory has %d entries after rejected spawns, want only the taken sandbox", len(entries))
	}
}

func TestLimitsApplied(t *testing.T) {
	p := newTestProvider(t, testOptions{pidsLimit: 100})
	id := spawn(t, p, provider.SpawnSpec{MemoryMB: 96, VCPUs: 1})
	cg := p.sandboxCgroup(t, id, "memory")
	sb, _ := p.lookup(t.Context(), id)

	type limit struct {
		controller, file string
		want             int64
	}
	var limits []limit
	if sb.state.Cgroups.Version == 2 {
		limits = []limit{{"memory", "memory.max", 96 << 20}, {"memory", "memory.swap.max", 0}, {"pids", "pids.max", 100}}
	} else {
		limits = []limit{
			{"memory", "memory.limit_in_bytes", 96 << 20},
			{"memory", "memory.memsw.limit_in_bytes", 96 << 20},
			{"pids", "pids.max", 100},
			{"cpu", "cpu.cfs_quota_us", 100000},
			{"cpu", "cpu.cfs_period_us", 100000},
		}
	}
	for _, l := range limits {
		got, err := readCgroupInt(p.sandboxCgroup(t, id, l.controller), l.file)
		if err != nil || got != l.want {
			t.Errorf("%s = %d, %v; want %d", l.file, got, err, l.want)
		}
	}
	if cg == "" {
		t.Fatal("the sandbox has no memory cgroup")
	}

	// Inside, the agent's cgroup is the root of the mounted hierarchy.
	out := shell(t, p, id, "cat /proc/self/cgroup; ls /sys/fs/cgroup")
	if !strings.Contains(out, ":memory:/\n") && !strings.Contains(out, "0::/\n") {
		t.Errorf("/proc/self/cgroup inside = %q, want the sandbox's group as the namespace root", out)
	}

	stats, err := p.Stats(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if stats.MemoryLimitBytes != 96<<20 || stats.Pids < 1 || stats.MemoryBytes <= 0 {
		t.Errorf("Stats = %+v, want the 96 MiB limit, some memory and at least the agent", stats)
	}
}

func TestHealth(t *testing.T) {
	p := newTestProvider(t, testOptions{})
	if err := p.Health(t.Context()); err != nil {
		t.Fatalf("Health: %v", err)
	}
	p.cfg.AgentPath = filepath.Join(t.TempDir(), "missing-agent")
	err := p.Health(t.Context())
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "missing-agent") {
		t.Errorf("Health with a missing agent: %v, want ErrUnavailable naming the binary", err)
	}
}

func TestHostViewLayout(t *testing.T) {
	p := newTestProvider(t, testOptions{})
	id := spawn(t, p, provider.SpawnSpec{Env: map[string]string{"FROM_SPAWN": "yes"}})

	out := shell(t, p, id, `echo "$HOME $FROM_SPAWN $(hostname)"; stat -c '%a %n' /tmp /workspace; ls /`)
	if !strings.HasPrefix(out, "/root yes "+id+"\n1777 /tmp\n755 /workspace\n") {
		t.Errorf("host view environment and directories = %q", out)
	}
	for _, name := range []string{"usr", "bin", "etc", "proc", "dev", "workspace", "tmp", "home", "root", "run"} {
		if !strings.Contains(out, "\n"+name+"\n") {
			t.Errorf("ls / lacks %s:\n%s", name, out)
		}
	}
	if _, err := os.Stat(filepath.Join(p.sandboxDir(id), privateDir, "workspace")); err != nil {
		t.Errorf("per-sandbox workspace directory: %v", err)
	}
	res, _, _ := run(t, p, id, 10*time.Second, "sh", "-c", "echo x > /etc/passwd")
	if res.ExitCode == 0 {
		t.Error("writing /etc/passwd in the host view succeeded, want a read-only file")
	}
	// The pid of init is recorded with its start time.
	sb, _ := p.lookup(t.Context(), id)
	if started, err := processStartTime(sb.state.Pid); err != nil || started != sb.state.StartTime {
		t.Errorf("start time of init %d = %d, %v; state has %d", sb.state.Pid, started, err, sb.state.StartTime)
	}
	if !strings.Contains(shell(t, p, id, "cat /proc/1/cmdline"), "stacyvm-agent") {
		t.Error("pid 1 is not the agent")
	}
}
