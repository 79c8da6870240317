package image

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestImportDockerWithoutCLI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	s := newStore(t, t.TempDir())
	_, err := s.ImportDocker(t.Context(), "test/app", "busybox:latest")
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("ImportDocker without a docker CLI: error = %v, want provider.ErrUnavailable", err)
	}
}

// dockerReachable reports whether the docker CLI reaches an engine.
func dockerReachable(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").Run() == nil
}

// TestImportDocker loads a test image into the local Docker engine and
// imports it back. Without a reachable engine it checks that ImportDocker
// reports the engine as unavailable, and skips the rest.
func TestImportDocker(t *testing.T) {
	_, cliErr := exec.LookPath("docker")
	if cliErr != nil {
		t.Skip("no docker CLI in PATH")
	}
	s := newStore(t, t.TempDir())
	if !dockerReachable(t) {
		_, err := s.ImportDocker(t.Context(), "test/app", "stacyvm-test/rich:v1")
		if !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("ImportDocker with no engine: error = %v, want provider.ErrUnavailable", err)
		}
		t.Skip("docker info fails: no Docker engine to import from")
	}

	img := richImage(t)
	archive := writeDockerSave(t, filepath.Join(t.TempDir(), "rich.tar"), "stacyvm-test/rich:v1", img)
	if out, err := exec.CommandContext(t.Context(), "docker", "load", "-i", archive).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "stacyvm-test/rich:v1").Run() })

	if _, err := s.ImportDocker(t.Context(), "test/fromdocker", "stacyvm-test/rich:v1"); err != nil {
		t.Fatal(err)
	}
	fromDocker := scan(t, rootFS(t, s, "test/fromdocker"))

	reference := newStore(t, t.TempDir())
	if _, err := reference.ImportLayout(t.Context(), "test/rich", writeLayout(t, t.TempDir(), "x", img)); err != nil {
		t.Fatal(err)
	}
	if diff := scan(t, rootFS(t, reference, "test/rich")).Diff(fromDocker); diff != nil {
		t.Errorf("tree imported from Docker differs from the layout's:\n%s", strings.Join(diff, "\n"))
	}

	_, err := s.ImportDocker(t.Context(), "test/absent", "stacyvm-test/absent:v1")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("ImportDocker of a missing image: error = %v, want ErrNotFound", err)
	}
}
