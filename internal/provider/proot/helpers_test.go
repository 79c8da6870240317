//go:build linux

package proot

import (
	"archive/tar"
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// minimalImage is the image of the tests, imported from the OCI layout
// that scripts/images/build.sh writes.
const minimalImage = "stacyvm/minimal"

// imageDirs are searched, in order, for the image layouts when
// STACYVM_IMAGE_DIR is not set: where CI builds them, then the build
// directory of the development host.
var imageDirs = []string{"/var/cache/stacyvm-images", "/work/imgbuild"}

// skipOrFail skips the test with reason, or fails it when
// STACYVM_REQUIRE_HOST_FEATURES=1, as CI sets.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("STACYVM_REQUIRE_HOST_FEATURES") == "1" {
		t.Fatalf("%s, and STACYVM_REQUIRE_HOST_FEATURES=1 makes that a failure", reason)
	}
	t.Skip(reason)
}

// requireHost skips the test unless this host can run PRoot sandboxes:
// the proot binary and root, which the provider needs to run commands as
// users of their own.
func requireHost(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		skipOrFail(t, "proot is not installed (apt-get install proot)")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "the proot provider needs root to run commands as sandbox users")
	}
}

// layoutDir returns the directory of the minimal image's OCI layout, or
// skips the test.
func layoutDir(t testing.TB) string {
	t.Helper()
	dirs := imageDirs
	if dir := os.Getenv("STACYVM_IMAGE_DIR"); dir != "" {
		dirs = []string{dir}
	}
	for _, dir := range dirs {
		layout := filepath.Join(dir, "minimal")
		if _, err := os.Stat(filepath.Join(layout, "index.json")); err == nil {
			return layout
		}
	}
	skipOrFail(t, "the image layout minimal is missing from "+strings.Join(dirs, " and ")+
		"; build it with scripts/images/build.sh DIR and set STACYVM_IMAGE_DIR=DIR")
	return ""
}

// searchableTempDir returns a new temporary directory that every user may
// pass through, as the sandbox users must.
func searchableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newImageStore returns an image store in a temporary directory with the
// minimal image imported.
func newImageStore(t testing.TB) *image.Store {
	t.Helper()
	layout := layoutDir(t)
	store, err := image.Open(searchableTempDir(t), nil)
	if err != nil {
		t.Fatalf("open image store: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if _, err := store.ImportLayout(t.Context(), minimalImage, layout); err != nil {
		t.Fatalf("import %s: %v", layout, err)
	}
	return store
}

// testWriter sends log records to t.Log, so they show only for failures.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testUIDRanges counts the user ID ranges handed to test providers.
var testUIDRanges atomic.Int32

// testUIDCount is the size of the user ID range of each test provider.
const testUIDCount = 100

// testConfig returns the configuration of a test provider over stateDir
// and images. Every call gets a user ID range of its own, because the
// providers of parallel tests must not share sandbox users.
func testConfig(t testing.TB, stateDir string, images *image.Store) Config {
	t.Helper()
	return Config{
		StateDir:  stateDir,
		Images:    images,
		AgentPath: agenttest.Build(t),
		UIDStart:  DefaultUIDStart + int(testUIDRanges.Add(1))*testUIDCount,
		UIDCount:  testUIDCount,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// newTestProvider returns a provider with cfg whose sandboxes are all
// destroyed when the test ends.
func newTestProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { destroyAll(t, p) })
	return p
}

// destroyAll destroys every sandbox recorded under p's state directory.
func destroyAll(t testing.TB, p *Provider) {
	t.Helper()
	runtimes, err := p.ListRuntimes(context.Background())
	if err != nil {
		t.Errorf("ListRuntimes in cleanup: %v", err)
		return
	}
	for _, r := range runtimes {
		if err := p.Destroy(context.Background(), r.ID); err != nil {
			t.Errorf("Destroy(%s) in cleanup: %v", r.ID, err)
		}
	}
}

// spawn creates a sandbox of the minimal image and destroys it when the
// test ends.
func spawn(t testing.TB, p *Provider, spec provider.SpawnSpec) {
	t.Helper()
	if spec.Image == "" {
		spec.Image = minimalImage
	}
	if err := p.Spawn(t.Context(), spec); err != nil {
		t.Fatalf("Spawn(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() {
		if err := p.Destroy(context.Background(), spec.ID); err != nil {
			t.Errorf("Destroy(%s) in cleanup: %v", spec.ID, err)
		}
	})
}

// tarOf returns a tar archive with one regular file, without entries for
// its parent directories.
func tarOf(t testing.TB, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
