package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
)

func TestHardeningApplied(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	p := newTestProvider(t, testConfig(t))
	spawn(t, p, provider.SpawnSpec{ID: "hardened", Image: testImage, MemoryMB: 128, VCPUs: 1})

	host := inspectSandbox(t, "hardened").HostConfig
	if !slices.Equal(host.CapDrop, []string{"ALL"}) {
		t.Errorf("CapDrop = %q, want [ALL]", host.CapDrop)
	}
	if !slices.Equal(host.CapAdd, capabilities) {
		t.Errorf("CapAdd = %q, want %q", host.CapAdd, capabilities)
	}
	if !slices.Contains(host.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("SecurityOpt = %q, want no-new-privileges", host.SecurityOpt)
	}
	if host.Memory != 128<<20 || host.MemorySwap != 128<<20 {
		t.Errorf("Memory, MemorySwap = %d, %d, want both %d (no swap)", host.Memory, host.MemorySwap, 128<<20)
	}
	if host.NanoCPUs != 1e9 {
		t.Errorf("NanoCPUs = %d, want 1e9", host.NanoCPUs)
	}
	if host.PidsLimit == nil || *host.PidsLimit != DefaultPidsLimit {
		t.Errorf("PidsLimit = %v, want %d", host.PidsLimit, DefaultPidsLimit)
	}
	if host.NetworkMode != "none" {
		t.Errorf("NetworkMode = %q, want none", host.NetworkMode)
	}
	if host.Init == nil || *host.Init {
		t.Errorf("Init = %v, want false: the agent is PID 1", host.Init)
	}
	if host.Runtime != "runc" {
		t.Errorf("Runtime = %q, want runc", host.Runtime)
	}

	// Inside: PID 1 is the agent, and the command has exactly the kept
	// capabilities (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
	// SETUID, NET_BIND_SERVICE are bits 0, 1, 3, 4, 5, 6, 7, 10) and no
	// new privileges.
	_, out := conformance.Shell(t, p, "hardened",
		`tr '\0' ' ' < /proc/1/cmdline; echo; grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; ls /sys/class/net`)
	got := out.Stdout()
	for _, want := range []string{
		agentMountPath + " --listen unix:/run/stacyvm/agent.sock",
		"CapEff:\t00000000000004fb",
		"CapBnd:\t00000000000004fb",
		"NoNewPrivs:\t1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("sandbox output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "eth0") {
		t.Errorf("a sandbox without network has eth0:\n%s", got)
	}
}

func TestReadOnlyRootfs(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	cfg.ReadOnlyRootfs = true
	p := newTestProvider(t, cfg)
	spawn(t, p, provider.SpawnSpec{ID: "read-only", Image: testImage, MemoryMB: 128})

	res, _ := conformance.Shell(t, p, "read-only", "touch /etc/new-file")
	if res.ExitCode == 0 {
		t.Error("touch /etc/new-file succeeded on a read-only root file system")
	}
	res, out := conformance.Shell(t, p, "read-only", "echo a > /workspace/a && echo b > /tmp/b && cat /workspace/a /tmp/b")
	if res.ExitCode != 0 || out.Stdout() != "a\nb\n" {
		t.Errorf("writing /workspace and /tmp: exit %d, output %q, stderr %q", res.ExitCode, out.Stdout(), out.Stderr())
	}
	if err := p.WriteFile(t.Context(), "read-only", "/workspace/up.txt", strings.NewReader("up"), 0o644); err != nil {
		t.Errorf("WriteFile into /workspace: %v", err)
	}
}

func TestMemoryHogIsOOMKilled(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	p := newTestProvider(t, testConfig(t))

	tests := []struct {
		name  string
		image string
		argv  []string
	}{
		// The shell exits 137 because its child was killed: only the
		// cgroup counter on the host shows that it was the OOM killer.
		{"shell pipeline", testImage, []string{"sh", "-c", "head -c 600M /dev/zero | tail"}},
		// The killed process is the command itself.
		{"python", pythonImage, []string{"python3", "-c", "b = bytearray(600 << 20); print(len(b))"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			requireImage(t, tc.image)
			t.Parallel()
			id := "hog-" + string(rune('a'+i))
			spawn(t, p, provider.SpawnSpec{ID: id, Image: tc.image, MemoryMB: 64})

			res, out := conformance.Exec(t, p, id, provider.ExecRequest{Argv: tc.argv, Timeout: time.Minute})
			if res.ExitCode != 137 || res.ExitReason != provider.ExitOOM {
				t.Errorf("memory hog: exit %d, reason %q, want 137, %q; stderr %q",
					res.ExitCode, res.ExitReason, provider.ExitOOM, out.Stderr())
			}
			res, out = conformance.Exec(t, p, id, provider.ExecRequest{Argv: []string{"echo", "alive"}})
			if res.ExitCode != 0 || out.Stdout() != "alive\n" || res.ExitReason != "" {
				t.Errorf("exec after the OOM kill: exit %d, reason %q, output %q", res.ExitCode, res.ExitReason, out.Stdout())
			}
		})
	}
}

func TestMemoryHogOnRunsc(t *testing.T) {
	requireRuntime(t, "runsc")
	t.Parallel()
	p := newTestProvider(t, testConfig(t))
	spawn(t, p, provider.SpawnSpec{ID: "hog-runsc", Image: testImage, Runtime: "runsc", MemoryMB: 64})
	conformance.Shell(t, p, "hog-runsc", "echo kept > kept.txt")

	res, _ := conformance.Shell(t, p, "hog-runsc", "head -c 600M /dev/zero | tail")
	if res.ExitCode != 137 || res.ExitReason != provider.ExitOOM {
		t.Errorf("memory hog on runsc: exit %d, reason %q, want 137, %q", res.ExitCode, res.ExitReason, provider.ExitOOM)
	}
	res, out := conformance.Shell(t, p, "hog-runsc", "cat kept.txt")
	if res.ExitCode != 0 || out.Stdout() != "kept\n" {
		t.Errorf("exec after the OOM kill: exit %d, output %q, want the kept file", res.ExitCode, out.Stdout())
	}
}

func TestPidsLimitReason(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	cfg.PidsLimit = 32
	p := newTestProvider(t, cfg)
	spawn(t, p, provider.SpawnSpec{ID: "pids", Image: testImage})

	res, out := conformance.Exec(t, p, "pids", provider.ExecRequest{
		Argv:    []string{"sh", "-c", "for i in $(seq 64); do sleep 30 & done; wait"},
		Timeout: 20 * time.Second,
	})
	if res.TimedOut || res.ExitCode == 0 || res.ExitReason != provider.ExitPids {
		t.Errorf("64 forks under a limit of 32: exit %d, reason %q, timed out %v, want a failure with reason %q; stderr %q",
			res.ExitCode, res.ExitReason, res.TimedOut, provider.ExitPids, out.Stderr())
	}
	waitQuiet(t, p, "pids")
}

func TestForkBombContained(t *testing.T) {
	requireDocker(t)
	t.Parallel()
	cfg := testConfig(t)
	cfg.PidsLimit = 128
	p := newTestProvider(t, cfg)
	spawn(t, p, provider.SpawnSpec{ID: "bomb", Image: testImage, MemoryMB: 256, VCPUs: 1})
	spawn(t, p, provider.SpawnSpec{ID: "neighbour", Image: testImage})

	type outcome struct {
		res provider.ExecResult
		err error
	}
	bomb := make(chan outcome, 1)
	go func() {
		req := provider.ExecRequest{Argv: []string{"bash", "-c", "b() { b | b; }; b"}, Timeout: 5 * time.Second}
		res, err := p.Exec(context.Background(), "bomb", req, nil)
		bomb <- outcome{res, err}
	}()
	time.Sleep(time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out conformance.Output
	res, err := p.Exec(ctx, "neighbour", provider.ExecRequest{Argv: []string{"echo", "alive"}}, out.Func)
	if err != nil || res.ExitCode != 0 || out.Stdout() != "alive\n" {
		t.Errorf("exec in another sandbox during the fork bomb: %v, exit %d, output %q", err, res.ExitCode, out.Stdout())
	}
	if stats, err := p.Stats(ctx, "bomb"); err == nil && int64(stats.Pids) > cfg.PidsLimit {
		t.Errorf("Pids during the fork bomb = %d, want at most the limit %d", stats.Pids, cfg.PidsLimit)
	}

	// The bomb either runs into its timeout, or leaves the agent no thread,
	// so that the sandbox is started again and the result reports "pids".
	select {
	case o := <-bomb:
		if o.err != nil {
			t.Fatalf("fork bomb exec: %v, want a result", o.err)
		}
		timedOut := o.res.TimedOut && o.res.ExitReason == provider.ExitTimeout
		restarted := o.res.ExitCode == 137 && o.res.ExitReason == provider.ExitPids
		if !timedOut && !restarted {
			t.Errorf("fork bomb result %+v, want the 5s timeout or exit 137 with reason pids", o.res)
		}
		t.Logf("fork bomb result: %+v", o.res)
	case <-time.After(30 * time.Second):
		t.Fatal("the fork bomb's exec did not return within 30s of its 5s timeout")
	}
	waitQuiet(t, p, "bomb")
	res, out2 := conformance.Exec(t, p, "bomb", provider.ExecRequest{Argv: []string{"echo", "alive"}})
	if res.ExitCode != 0 || out2.Stdout() != "alive\n" {
		t.Errorf("exec in the bombed sandbox afterwards: exit %d, output %q", res.ExitCode, out2.Stdout())
	}
}

// waitQuiet waits until sandbox id runs only its agent, so a killed
// process tree is gone.
func waitQuiet(t *testing.T, p *Provider, id string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		stats, err := p.Stats(t.Context(), id)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		// The agent's threads count too: 16 kept idle from its start for
		// when the pids limit is exhausted, plus up to about 10 more.
		if stats.Pids <= 28 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s still has %d processes and threads 15s after its command ended", id, stats.Pids)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// importEmptyImage imports an image whose file system has only /etc and
// removes it when the test ends.
func importEmptyImage(t *testing.T, engine *client.Client, ref string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	rc, err := engine.ImageImport(t.Context(), image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{})
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	_, _ = io.Copy(io.Discard, rc)
	_ = rc.Close()
	t.Cleanup(func() {
		_, err := engine.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("remove image %s: %v", ref, err)
		}
	})
}
