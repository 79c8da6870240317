//go:build linux

package native

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// The tests in this file are containment checks that a user can run from
// inside a sandbox with ordinary tools: each checks one documented
// boundary of a native sandbox.

// imageModes are the two root file systems a sandbox can have.
var imageModes = []struct {
	name  string
	image string
}{
	{"image", minimalImage},
	{"host_view", HostImage},
}

func TestEscapeHostProcesses(t *testing.T) {
	for _, mode := range imageModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newTestProvider(t, testOptions{images: mode.image != HostImage})
			id := spawn(t, p, provider.SpawnSpec{Image: mode.image})

			out := shell(t, p, id, `for d in /proc/[0-9]*; do echo "${d#/proc/} $(tr '\0' ' ' < $d/cmdline)"; done`)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) > 5 {
				t.Errorf("the sandbox sees %d processes, want only the agent and the shell:\n%s", len(lines), out)
			}
			if !strings.HasPrefix(lines[0], "1 stacyvm-agent") {
				t.Errorf("first process = %q, want pid 1 to be stacyvm-agent", lines[0])
			}
			self := filepath.Base(os.Args[0])
			if strings.Contains(out, self) {
				t.Errorf("the sandbox sees the test process %s:\n%s", self, out)
			}
		})
	}
}

func TestEscapeWriteOutsideRoot(t *testing.T) {
	hostDir := t.TempDir()
	hostFile := filepath.Join(hostDir, "host.txt")
	if err := os.WriteFile(hostFile, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, mode := range imageModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newTestProvider(t, testOptions{images: mode.image != HostImage})
			id := spawn(t, p, provider.SpawnSpec{Image: mode.image})

			script := `echo sandbox > ` + hostFile + `; echo sandbox > /usr/bin/stacyvm-escape-check; true`
			shell(t, p, id, script)

			if got, err := os.ReadFile(hostFile); err != nil || string(got) != "host" {
				t.Errorf("host file after the sandbox wrote its path = %q, %v; want %q", got, err, "host")
			}
			if _, err := os.Stat("/usr/bin/stacyvm-escape-check"); !errors.Is(err, os.ErrNotExist) {
				_ = os.Remove("/usr/bin/stacyvm-escape-check")
				t.Errorf("the sandbox created /usr/bin/stacyvm-escape-check on the host (stat error %v)", err)
			}
			if mode.image == HostImage {
				res, _, _ := run(t, p, id, 10*time.Second, "sh", "-c", "echo x > /usr/bin/stacyvm-escape-check")
				if res.ExitCode == 0 {
					t.Error("writing to the host view's /usr succeeded, want a read-only file system")
				}
			}
		})
	}
}

func TestEscapeHostLoopback(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()
	port := strconv.Itoa(listener.Addr().(*net.TCPAddr).Port)

	p := newTestProvider(t, testOptions{images: true})
	id := spawn(t, p, provider.SpawnSpec{Image: minimalImage})
	res, _, stderr := run(t, p, id, 10*time.Second, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port)
	if res.ExitCode == 0 {
		t.Errorf("connecting to the host's 127.0.0.1:%s from the sandbox succeeded", port)
	}
	if !strings.Contains(stderr, "Connection refused") {
		t.Errorf("connect stderr = %q, want the sandbox's own loopback to refuse it", stderr)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host listener accepted %d connections from the sandbox, want 0", n)
	}
}

func TestEscapeOtherSandboxFiles(t *testing.T) {
	for _, mode := range imageModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newTestProvider(t, testOptions{images: mode.image != HostImage})
			owner := spawn(t, p, provider.SpawnSpec{Image: mode.image})
			other := spawn(t, p, provider.SpawnSpec{Image: mode.image})

			secret := "secret-" + randomName()
			shell(t, p, owner, "echo "+secret+" > /workspace/"+secret+"; echo "+secret+" > /tmp/"+secret)

			checks := []struct {
				name string
				argv []string
			}{
				{"same_path", []string{"cat", "/workspace/" + secret, "/tmp/" + secret}},
				{"owner_host_dir", []string{"ls", p.sandboxDir(owner)}},
				{"search", []string{"grep", "-rl", secret, "/workspace", "/tmp", "/home", "/root", "/run"}},
			}
			for _, c := range checks {
				res, stdout, _ := run(t, p, other, 10*time.Second, c.argv...)
				if res.ExitCode == 0 || strings.Contains(stdout, secret) {
					t.Errorf("%s: %q in the other sandbox exited %d with %q, want a failure without the secret",
						c.name, c.argv, res.ExitCode, stdout)
				}
			}
		})
	}
}

func TestContainmentForkBomb(t *testing.T) {
	p := newTestProvider(t, testOptions{images: true, pidsLimit: 64})
	bomb := spawn(t, p, provider.SpawnSpec{Image: minimalImage})
	neighbor := spawn(t, p, provider.SpawnSpec{Image: minimalImage})
	pidsDir := p.sandboxCgroup(t, bomb, "pids")

	type result struct {
		res provider.ExecResult
		err error
	}
	bombDone := make(chan result, 1)
	done := make(chan provider.ExecResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req := provider.ExecRequest{Argv: []string{"bash", "-c", "f() { f | f & }; f; sleep 10"}, Timeout: 5 * time.Second}
		res, err := p.Exec(ctx, bomb, req, nil)
		bombDone <- result{res, err}
		done <- res
	}()
	assertNeighborAnswers(t, p, neighbor, done)

	got := <-bombDone
	if max, err := readCgroupInt(pidsDir, "pids.max"); err != nil || max != 64 {
		t.Errorf("pids.max of the fork bomb's sandbox = %d, %v; want 64", max, err)
	}
	if current, err := readCgroupInt(pidsDir, "pids.current"); err == nil && current > 64 {
		t.Errorf("pids.current of the fork bomb's sandbox = %d, over the limit of 64", current)
	}

	// NOTE: the pids limit counts the agent's threads too, and the Go
	// runtime aborts when it cannot create a thread, so a fork bomb can
	// end its own sandbox instead of only its command. The sandbox is
	// then reported gone rather than hanging; see docs/providers/native.md.
	if got.err != nil {
		if !errors.Is(got.err, provider.ErrUnavailable) {
			t.Errorf("fork bomb Exec error = %v, want a result or ErrUnavailable", got.err)
		}
		err := p.Recover(t.Context(), bomb)
		if !errors.Is(err, provider.ErrSandboxNotFound) {
			t.Errorf("Recover after the fork bomb ended the agent: %v, want ErrSandboxNotFound", err)
		}
		t.Logf("the fork bomb ended its sandbox's agent: %v", got.err)
		return
	}
	if !got.res.TimedOut {
		t.Errorf("fork bomb result = %+v, want it stopped by the timeout", got.res)
	}
	if out := shell(t, p, bomb, "echo alive"); out != "alive\n" {
		t.Errorf("the fork bomb's sandbox printed %q after the bomb, want it to answer again", out)
	}
}

func TestContainmentMemoryHog(t *testing.T) {
	p := newTestProvider(t, testOptions{images: true})
	hog := spawn(t, p, provider.SpawnSpec{Image: minimalImage, MemoryMB: 64})
	neighbor := spawn(t, p, provider.SpawnSpec{Image: minimalImage})

	done := make(chan provider.ExecResult, 1)
	go func() {
		// tail keeps the last line of its input in memory, and /dev/zero
		// has no line breaks, so it grows until the limit stops it.
		done <- runInBackground(t, p, hog, 60*time.Second, "tail", "/dev/zero")
	}()
	assertNeighborAnswers(t, p, neighbor, done)

	res := <-done
	if res.ExitCode != 137 || res.ExitReason != provider.ExitOOM {
		t.Errorf("memory hog result = exit %d, reason %q; want 137 and %q", res.ExitCode, res.ExitReason, provider.ExitOOM)
	}
	if out := shell(t, p, hog, "echo alive"); out != "alive\n" {
		t.Errorf("the memory hog's sandbox printed %q afterwards, want it to answer again", out)
	}
}

// runInBackground runs argv from a goroutine other than the test's, so it
// reports an Exec error with t.Errorf and returns a zero result.
func runInBackground(t *testing.T, p *Provider, id string, timeout time.Duration, argv ...string) provider.ExecResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	res, err := p.Exec(ctx, id, provider.ExecRequest{Argv: argv, Timeout: timeout}, nil)
	if err != nil {
		t.Errorf("Exec(%s, %q): %v; console log ends with:\n%s", id, argv, err, consoleTail(p.sandboxDir(id), 20))
	}
	return res
}

// assertNeighborAnswers runs exec round trips in neighbor until done
// receives, failing the test when one takes longer than a second.
func assertNeighborAnswers(t *testing.T, p *Provider, neighbor string, done chan provider.ExecResult) {
	t.Helper()
	rounds := 0
	for {
		select {
		case res := <-done:
			done <- res
			if rounds == 0 {
				t.Error("the neighbor sandbox ran no command while the other one was busy")
			}
			return
		default:
		}
		start := time.Now()
		if out := shell(t, p, neighbor, "echo ok"); out != "ok\n" {
			t.Fatalf("neighbor printed %q, want ok", out)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("neighbor exec took %v while the other sandbox was busy, want under 1s", elapsed)
		}
		rounds++
		time.Sleep(100 * time.Millisecond)
	}
}

// sandboxCgroup returns the host directory of the sandbox's cgroup for
// controller.
func (p *Provider) sandboxCgroup(t *testing.T, id, controller string) string {
	t.Helper()
	sb, err := p.lookup(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sb.state.Cgroups.dir(controller)
}

func TestSeccompDeniesNamespacesAndMounts(t *testing.T) {
	p := newTestProvider(t, testOptions{images: true})
	id := spawn(t, p, provider.SpawnSpec{Image: minimalImage})

	tests := []struct {
		name string
		argv []string
	}{
		{"unshare_user", []string{"unshare", "--user", "true"}},
		{"unshare_mount", []string{"unshare", "--mount", "true"}},
		{"mount_tmpfs", []string{"mount", "-t", "tmpfs", "tmpfs", "/mnt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, stdout, stderr := run(t, p, id, 10*time.Second, tt.argv...)
			if res.ExitCode == 0 {
				t.Errorf("%q succeeded inside the sandbox", tt.argv)
			}
			out := stdout + stderr
			if !strings.Contains(out, "Operation not permitted") && !strings.Contains(out, "permission denied") {
				t.Errorf("%q printed %q, want EPERM", tt.argv, out)
			}
		})
	}
}

func TestSeccompFilterInstalled(t *testing.T) {
	p := newTestProvider(t, testOptions{images: true})
	id := spawn(t, p, provider.SpawnSpec{Image: pythonImage})

	status := shell(t, p, id, "cat /proc/self/status")
	for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/self/status lacks %q", want)
		}
	}
	var keep uint64
	for _, c := range keptCapabilities {
		keep |= 1 << c
	}
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, "CapBnd:\t"); ok {
			got, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			if err != nil || got != keep {
				t.Errorf("CapBnd = %s, want %016x", strings.TrimSpace(rest), keep)
			}
		}
	}

	// Each call is made directly through libc, so the check is the errno
	// of the system call itself, not a tool's message.
	script := `
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def check(name, result):
    print(name, result, ctypes.get_errno())
check("unshare", libc.unshare(0x10000000))
check("mount", libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None))
check("umount2", libc.umount2(b"/proc", 2))
check("ptrace", libc.ptrace(0, 0, None, None))
fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
check("setns", libc.setns(fd, 0))
`
	out := shell(t, p, id, "python3 -c '"+script+"'")
	for _, name := range []string{"unshare", "mount", "umount2", "ptrace", "setns"} {
		if !strings.Contains(out, name+" -1 1\n") {
			t.Errorf("%s: output %q, want it to fail with errno 1 (EPERM)", name, out)
		}
	}
}

func TestConsoleLogHasAgent(t *testing.T) {
	p := newTestProvider(t, testOptions{})
	id := spawn(t, p, provider.SpawnSpec{})
	data, err := os.ReadFile(filepath.Join(p.sandboxDir(id), consoleFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("agent started")) {
		t.Errorf("console log = %q, want the agent's start line", data)
	}
}
