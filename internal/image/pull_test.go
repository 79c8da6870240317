package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// requireHostFeature skips a test whose host feature is missing, or fails it
// when STACYVM_REQUIRE_HOST_FEATURES=1, as CI sets where the feature is
// installed.
func requireHostFeature(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("STACYVM_REQUIRE_HOST_FEATURES") == "1" {
		t.Fatalf("%s, and STACYVM_REQUIRE_HOST_FEATURES=1 makes that a failure", reason)
	}
	t.Skip(reason)
}

func TestPullProgress(t *testing.T) {
	host := serveRegistry(t)
	img := richImage(t)
	push(t, host+"/test/rich:v1", img)

	var updates []Progress
	s := newStore(t, t.TempDir())
	got, err := s.Pull(t.Context(), host+"/test/rich:v1", func(p Progress) { updates = append(updates, p) })
	if err != nil {
		t.Fatal(err)
	}

	if len(updates) == 0 {
		t.Fatal("progress was never called")
	}
	last := updates[len(updates)-1]
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	total := m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	if last.Total != total || last.Complete != total {
		t.Errorf("last progress = %+v, want Complete = Total = %d", last, total)
	}
	if last.Name != host+"/test/rich:v1" {
		t.Errorf("progress name = %q, want %s/test/rich:v1", last.Name, host)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want.String() {
		t.Errorf("pulled digest = %s, want %s", got.Digest, want)
	}
}

func TestPullNotFound(t *testing.T) {
	host := serveRegistry(t)
	s := newStore(t, t.TempDir())
	_, err := s.Pull(t.Context(), host+"/missing/image:v1", nil)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Pull of a missing image: error = %v, want ErrNotFound", err)
	}
	images, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != 0 {
		t.Errorf("List after a failed pull = %v, want empty", images)
	}
}

func TestPullPicksPlatform(t *testing.T) {
	host := serveRegistry(t)
	native, foreign := simpleImage(t, "native"), simpleImage(t, "foreign")
	arch := "s390x"
	if runtime.GOARCH == arch {
		arch = "amd64"
	}
	index := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref, err := name.ParseReference(host + "/test/multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, index, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}

	s := newStore(t, t.TempDir())
	if _, err := s.Pull(t.Context(), ref.String(), nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(rootFS(t, s, ref.String()), "etc/id"))
	if err != nil || string(data) != "native" {
		t.Errorf("etc/id = %q, %v; want native", data, err)
	}
}

// TestPullDockerRegistry pushes to and pulls from Debian's docker-registry
// (the CNCF distribution registry) on a loopback port.
func TestPullDockerRegistry(t *testing.T) {
	const binary = "/usr/bin/docker-registry"
	if _, err := os.Stat(binary); err != nil {
		requireHostFeature(t, binary+" is not installed (apt-get install docker-registry)")
	}
	host := startDockerRegistry(t, binary)

	img := richImage(t)
	push(t, host+"/test/rich:v1", img)
	s := newStore(t, t.TempDir())
	if _, err := s.Pull(t.Context(), host+"/test/rich:v1", nil); err != nil {
		t.Fatal(err)
	}
	pulled := scan(t, rootFS(t, s, host+"/test/rich:v1"))

	reference := newStore(t, t.TempDir())
	if _, err := reference.ImportLayout(t.Context(), "test/rich", writeLayout(t, t.TempDir(), "x", img)); err != nil {
		t.Fatal(err)
	}
	if diff := scan(t, rootFS(t, reference, "test/rich")).Diff(pulled); diff != nil {
		t.Errorf("tree pulled from docker-registry differs from the layout's:\n%s", strings.Join(diff, "\n"))
	}

	if _, err := s.Pull(t.Context(), host+"/test/absent:v1", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pull of a missing image: error = %v, want ErrNotFound", err)
	}
}

// startDockerRegistry runs docker-registry with storage in a temporary
// directory on a free loopback port and returns host:port once it serves
// requests.
func startDockerRegistry(t *testing.T, binary string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	dir := t.TempDir()
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "storage"), addr)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(binary, "serve", configPath)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("docker-registry on %s did not answer within 15s: %v", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
