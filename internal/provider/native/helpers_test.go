//go:build linux

package native

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// Images of the tests, imported from the OCI layouts that
// scripts/images/build.sh writes.
const (
	minimalImage = "stacyvm/minimal"
	pythonImage  = "stacyvm/python"
)

// defaultImageDir is where the image layouts are looked for when
// STACYVM_IMAGE_DIR is not set.
const defaultImageDir = "/var/cache/stacyvm-images"

// skipOrFail skips the test with reason, or fails it when
// STACYVM_REQUIRE_HOST_FEATURES=1, as CI sets.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("STACYVM_REQUIRE_HOST_FEATURES") == "1" {
		t.Fatalf("%s, and STACYVM_REQUIRE_HOST_FEATURES=1 makes that a failure", reason)
	}
	t.Skip(reason)
}

// requireHost skips the test unless this host can run native sandboxes:
// root, the overlay file system and mounted cgroups.
func requireHost(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "native sandboxes need root")
	}
	if err := checkFilesystem("overlay"); err != nil {
		skipOrFail(t, err.Error())
	}
	if _, err := detectCgroups(); err != nil {
		skipOrFail(t, "cgroups: "+err.Error())
	}
}

// sharedImages is the image store of the test binary. Importing and
// unpacking an image takes seconds, so the store lives in a fixed
// directory under the system's temporary directory and is reused by later
// runs, like a build cache.
var sharedImages struct {
	once  sync.Once
	store *image.Store
	err   error
}

// testImages returns the shared image store with the minimal and python
// images, skipping the test when their layouts are not found.
func testImages(t testing.TB) *image.Store {
	t.Helper()
	dir := os.Getenv("STACYVM_IMAGE_DIR")
	if dir == "" {
		dir = defaultImageDir
	}
	for _, name := range []string{"minimal", "python"} {
		if _, err := os.Stat(filepath.Join(dir, name, "index.json")); err != nil {
			skipOrFail(t, "the image layout "+filepath.Join(dir, name)+" is missing; build the images with "+
				"scripts/images/build.sh DIR and set STACYVM_IMAGE_DIR=DIR")
		}
	}
	sharedImages.once.Do(func() {
		storeDir := filepath.Join(os.TempDir(), "stacyvm-native-test-images")
		s, err := image.Open(storeDir, nil)
		if err != nil {
			sharedImages.err = err
			return
		}
		for _, name := range []string{"minimal", "python"} {
			if _, err := s.ImportLayout(context.Background(), "stacyvm/"+name, filepath.Join(dir, name)); err != nil {
				sharedImages.err = err
				return
			}
		}
		sharedImages.store = s
	})
	if sharedImages.err != nil {
		t.Fatalf("prepare test images: %v", sharedImages.err)
	}
	return sharedImages.store
}

// testOptions adjust newTestProvider.
type testOptions struct {
	stateDir     string // default: a new temporary directory
	cgroupParent string // default: a new group under stacyvm-test
	pidsLimit    int
	images       bool // open the image store
}

// newTestProvider returns a provider over a fresh state directory and
// cgroup parent, whose logs go to t. The cgroup parent is removed when the
// test ends, after the sandboxes.
func newTestProvider(t testing.TB, opts testOptions) *Provider {
	t.Helper()
	requireHost(t)
	if opts.stateDir == "" {
		opts.stateDir = t.TempDir()
	}
	if opts.cgroupParent == "" {
		opts.cgroupParent = newCgroupParent(t)
	}
	cfg := Config{
		StateDir:     opts.stateDir,
		AgentPath:    agenttest.Build(t),
		CgroupParent: opts.cgroupParent,
		PidsLimit:    opts.pidsLimit,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if opts.images {
		cfg.Images = testImages(t)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// newCgroupParent returns a new cgroup parent for one test and removes it
// when the test ends.
func newCgroupParent(t testing.TB) string {
	t.Helper()
	parent := "stacyvm-test/" + randomName()
	t.Cleanup(func() {
		host, err := detectCgroups()
		if err != nil {
			return
		}
		for _, dir := range host.parentDirs(parent) {
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remove test cgroup parent: %v", err)
			}
			// The common parent goes once no other test uses it.
			_ = os.Remove(filepath.Dir(dir))
		}
	})
	return parent
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testWriter sends log lines to t.Log, so they show only for failures.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// spawn creates a sandbox and destroys it when the test ends.
func spawn(t testing.TB, p *Provider, spec provider.SpawnSpec) string {
	t.Helper()
	if spec.ID == "" {
		spec.ID = "nt-" + randomName()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
	return spec.ID
}

// run executes argv in the sandbox with a timeout and returns the result,
// stdout and stderr. It fails the test when Exec returns an error.
func run(t testing.TB, p *Provider, id string, timeout time.Duration, argv ...string) (provider.ExecResult, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	var stdout, stderr strings.Builder
	res, err := p.Exec(ctx, id, provider.ExecRequest{Argv: argv, Timeout: timeout}, func(s provider.Stream, b []byte) {
		if s == provider.Stdout {
			stdout.Write(b)
		} else {
			stderr.Write(b)
		}
	})
	if err != nil {
		t.Fatalf("Exec(%s, %q): %v", id, argv, err)
	}
	return res, stdout.String(), stderr.String()
}

// shell runs script with sh -c and fails the test unless it exits 0.
func shell(t testing.TB, p *Provider, id, script string) string {
	t.Helper()
	res, stdout, stderr := run(t, p, id, 30*time.Second, "sh", "-c", script)
	if res.ExitCode != 0 {
		t.Fatalf("sh -c %q: exit %d, stderr %q", script, res.ExitCode, stderr)
	}
	return stdout
}
