//go:build linux

package native

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// Environment of the rootless child test, which the parent test starts
// as an unprivileged user.
const (
	rootlessChildEnv = "STACYVM_NATIVE_ROOTLESS_CHILD" // "1" in the child
	rootlessDirEnv   = "STACYVM_NATIVE_ROOTLESS_DIR"   // directory of the agent, the state directory and the image store
)

// nobodyID is the uid and gid of the user nobody, as which the child runs.
const nobodyID = 65534

// TestRootlessSandbox runs TestRootlessChild as uid and gid 65534, so that
// the provider spawns a sandbox in a user namespace without root.
func TestRootlessSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the test switches to uid 65534, which needs root")
	}
	requireUserNamespaces(t)

	dir, err := os.MkdirTemp("", "stacyvm-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The Go build directory of the test binary and the agent is private
	// to root, so both are copied where uid 65534 can execute them.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	testBinary := filepath.Join(dir, "native.test")
	copyExecutable(t, self, testBinary)
	copyExecutable(t, agenttest.Build(t), filepath.Join(dir, "stacyvm-agent"))
	for _, sub := range []string{"state", "images"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, sub), nobodyID, nobodyID); err != nil {
			t.Fatal(err)
		}
	}
	imageDir := os.Getenv("STACYVM_IMAGE_DIR")
	if imageDir == "" {
		imageDir = defaultImageDir
	}
	if _, err := os.Stat(filepath.Join(imageDir, "minimal", "index.json")); err != nil {
		skipOrFail(t, "the image layout "+filepath.Join(imageDir, "minimal")+" is missing; build the images with "+
			"scripts/images/build.sh DIR and set STACYVM_IMAGE_DIR=DIR")
	}
	// The layout's blobs may be private to root, so uid 65534 imports a
	// copy of its own.
	layout := filepath.Join(dir, "minimal-layout")
	if err := os.CopyFS(layout, os.DirFS(filepath.Join(imageDir, "minimal"))); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(layout, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, nobodyID, nobodyID)
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testBinary, "-test.run=^TestRootlessChild$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), rootlessChildEnv+"=1", rootlessDirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID, Groups: []uint32{}},
	}
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("rootless child test failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestRootlessChild")) {
		t.Fatal("the rootless child test did not run or did not pass")
	}
}

// requireUserNamespaces skips the test, or fails it when
// STACYVM_REQUIRE_HOST_FEATURES=1, unless uid 65534 can create a user
// namespace.
func requireUserNamespaces(t *testing.T) {
	t.Helper()
	if err := checkUserNamespaces(); err != nil {
		skipOrFail(t, "unprivileged user namespaces are unavailable: "+err.Error())
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return // checkUserNamespaces is the only check then
	}
	cmd := exec.Command(unshare, "--user", "--map-root-user", "true")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: nobodyID, Gid: nobodyID, Groups: []uint32{}},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		skipOrFail(t, "unprivileged user namespaces are unavailable: unshare --user as uid 65534: "+
			err.Error()+": "+strings.TrimSpace(string(out)))
	}
}

// copyExecutable copies the file src to dst with mode 0755.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestRootlessChild is the unprivileged half of TestRootlessSandbox and
// skips when run on its own.
func TestRootlessChild(t *testing.T) {
	if os.Getenv(rootlessChildEnv) != "1" {
		t.Skip("runs only as the child of TestRootlessSandbox")
	}
	if os.Geteuid() != nobodyID {
		t.Fatalf("euid = %d, want %d", os.Geteuid(), nobodyID)
	}
	dir := os.Getenv(rootlessDirEnv)
	ctx := context.Background()
	images, err := image.Open(filepath.Join(dir, "images"), nil)
	if err != nil {
		t.Fatalf("open image store: %v", err)
	}
	if _, err := images.ImportLayout(ctx, minimalImage, filepath.Join(dir, "minimal-layout")); err != nil {
		t.Fatalf("import %s as uid %d: %v", minimalImage, nobodyID, err)
	}
	cfg := Config{
		StateDir:  filepath.Join(dir, "state"),
		AgentPath: filepath.Join(dir, "stacyvm-agent"),
		Images:    images,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := p.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	if desc := p.Capabilities().Description; !strings.Contains(desc, "NOT enforced") {
		t.Errorf("Capabilities().Description = %q, want it to say that limits are not enforced", desc)
	}

	const id = "rootless-1"
	if err := p.Spawn(ctx, provider.SpawnSpec{ID: id, Image: HostImage}); err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	defer func() {
		if err := p.Destroy(ctx, id); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}()

	if got := shell(t, p, id, "id -u"); got != "0\n" {
		t.Errorf("id -u inside = %q, want %q", got, "0\n")
	}
	limits := strings.Fields(shell(t, p, id, "grep 'Max processes' /proc/self/limits"))
	if len(limits) < 4 || limits[2] != "1024" || limits[3] != "1024" {
		t.Errorf("Max processes inside = %q, want soft and hard limits of 1024, the default pids_limit", limits)
	}

	const content = "written through the file API\n"
	if err := p.WriteFile(ctx, id, "/workspace/note.txt", strings.NewReader(content), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	r, err := p.ReadFile(ctx, id, "/workspace/note.txt")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	data, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(data) != content {
		t.Errorf("ReadFile = %q, %v; want %q", data, err, content)
	}
	if got := shell(t, p, id, "cat /workspace/note.txt"); got != content {
		t.Errorf("cat inside = %q, want %q", got, content)
	}

	if _, err := p.Stats(ctx, id); !errors.Is(err, provider.ErrNotImplemented) {
		t.Errorf("Stats error = %v, want ErrNotImplemented for a sandbox without cgroups", err)
	}

	// A new Provider over the same state directory, as after a restart of
	// the server, attaches to the running sandbox.
	restarted, err := New(cfg)
	if err != nil {
		t.Fatalf("New after restart: %v", err)
	}
	if err := restarted.Recover(ctx, id); err != nil {
		t.Fatalf("Recover after restart: %v", err)
	}
	if got := shell(t, restarted, id, "cat /workspace/note.txt"); got != content {
		t.Errorf("cat after restart = %q, want %q", got, content)
	}

	// /usr is a read-only mount of the host's /usr.
	res, _, stderr := run(t, p, id, 30*time.Second, "touch", "/usr/stacyvm-rootless-probe")
	if res.ExitCode == 0 {
		t.Error("touch /usr/stacyvm-rootless-probe succeeded inside the sandbox, want a read-only /usr")
	} else if !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("touch /usr/stacyvm-rootless-probe: stderr %q, want a read-only file system error", stderr)
	}
	if _, err := os.Stat("/usr/stacyvm-rootless-probe"); err == nil {
		t.Error("the sandbox created /usr/stacyvm-rootless-probe on the host")
	}
	// uid 65534 may write the image store directory on the host, but
	// the sandbox does not see it.
	outside := filepath.Join(dir, "images", "stacyvm-rootless-probe")
	res, _, _ = run(t, p, id, 30*time.Second, "touch", outside)
	if res.ExitCode == 0 {
		t.Errorf("touch %s succeeded inside the sandbox, want the host path hidden", outside)
	}
	if _, err := os.Stat(outside); err == nil {
		t.Errorf("the sandbox created %s on the host", outside)
	}

	// More processes than RLIMIT_NPROC allows: the shell fails to fork,
	// and the sleeps it started stay until Destroy. The image sandbox
	// below still starts, since the kernel counts per user namespace.
	res, _, stderr = run(t, p, id, 60*time.Second, "sh", "-c",
		"n=0; while [ $n -lt 1100 ]; do sleep 30 & n=$((n+1)); done")
	if res.ExitCode == 0 || !strings.Contains(stderr, "fork") {
		t.Errorf("starting 1100 processes: exit %d, stderr %q; want a failed fork", res.ExitCode, stderr)
	}

	t.Run("image", func(t *testing.T) {
		const id = "rootless-image"
		if err := p.Spawn(ctx, provider.SpawnSpec{ID: id, Image: minimalImage}); err != nil {
			t.Fatalf("Spawn: %v", err)
		}
		defer func() {
			if err := p.Destroy(ctx, id); err != nil {
				t.Errorf("Destroy: %v", err)
			}
		}()
		if got := shell(t, p, id, "id -u"); got != "0\n" {
			t.Errorf("id -u inside = %q, want %q", got, "0\n")
		}
		// Every path of an image root is writable through the overlay, and
		// the write lands in the sandbox's upper layer.
		if got := shell(t, p, id, "echo changed > /etc/motd-probe && cat /etc/motd-probe"); got != "changed\n" {
			t.Errorf("write through the overlay = %q, want %q", got, "changed\n")
		}
		upper := filepath.Join(dir, "state", id, layerDir, "upper", "etc", "motd-probe")
		if _, err := os.Stat(upper); err != nil {
			t.Errorf("the write did not land in the upper layer: %v", err)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, "state", "rootless-image")); err == nil {
		t.Error("the image sandbox's directory is still there after Destroy")
	}
}
