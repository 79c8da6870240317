package image

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func blobExists(t *testing.T, s *Store, img v1.Image) bool {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(s.blobDir(), m.Layers[0].Digest.Hex))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestGC(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	other := newStore(t, dir) // a second process sharing the store
	images := map[string]v1.Image{}
	for _, n := range []string{"kept", "in-use", "in-use-elsewhere", "unused"} {
		images[n] = simpleImage(t, n)
		if _, err := s.ImportLayout(t.Context(), n, writeLayout(t, t.TempDir(), "x", images[n])); err != nil {
			t.Fatal(err)
		}
	}

	trees := map[string]string{}
	releases := map[string]func(){}
	for _, n := range []string{"kept", "in-use", "unused"} {
		path, release, err := s.RootFS(t.Context(), n)
		if err != nil {
			t.Fatal(err)
		}
		trees[n], releases[n] = path, release
	}
	path, releaseElsewhere, err := other.RootFS(t.Context(), "in-use-elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	trees["in-use-elsewhere"] = path
	defer releaseElsewhere()
	releases["kept"]()
	releases["unused"]()
	defer releases["in-use"]()

	for _, n := range []string{"in-use", "in-use-elsewhere", "unused"} {
		if err := s.Remove(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(s.tmpDir(), "blob-interrupted")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	removed, err := s.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// "unused" loses its tree and its three blobs (layer, config, manifest).
	if removed != 1+3*3 {
		t.Errorf("GC removed %d, want 10: 1 tree and the 3 blobs of each of 3 removed images", removed)
	}
	wantTree := map[string]bool{"kept": true, "in-use": true, "in-use-elsewhere": true, "unused": false}
	for n, want := range wantTree {
		if got := exists(t, trees[n]); got != want {
			t.Errorf("tree of %s exists = %v, want %v", n, got, want)
		}
	}
	if !blobExists(t, s, images["kept"]) {
		t.Errorf("layer blob of the stored image kept was deleted")
	}
	if blobExists(t, s, images["unused"]) {
		t.Errorf("layer blob of the removed image unused is still there")
	}
	if exists(t, stale) {
		t.Errorf("GC left the stale temporary file %s", stale)
	}
	if data, err := os.ReadFile(filepath.Join(trees["in-use"], "etc/id")); err != nil || string(data) != "in-use" {
		t.Errorf("tree in use was changed: etc/id = %q, %v", data, err)
	}

	// Once released, the trees of removed images go at the next GC.
	releases["in-use"]()
	releaseElsewhere()
	removed, err = s.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if removed != 2 {
		t.Errorf("second GC removed %d, want the 2 released trees", removed)
	}
	for _, n := range []string{"in-use", "in-use-elsewhere"} {
		if exists(t, trees[n]) {
			t.Errorf("tree of %s survived GC after release", n)
		}
	}
	if !exists(t, trees["kept"]) {
		t.Errorf("tree of kept was deleted")
	}
	if data, err := os.ReadFile(filepath.Join(rootFS(t, s, "kept"), "etc/id")); err != nil || string(data) != "kept" {
		t.Errorf("kept after GC: etc/id = %q, %v", data, err)
	}
}

// TestGCThenRootFSUnpacksAgain checks that a name imported again after its
// tree was collected gets a fresh tree.
func TestGCThenRootFSUnpacksAgain(t *testing.T) {
	s := newStore(t, t.TempDir())
	img := simpleImage(t, "again")
	layoutDir := writeLayout(t, t.TempDir(), "x", img)
	if _, err := s.ImportLayout(t.Context(), "test/app", layoutDir); err != nil {
		t.Fatal(err)
	}
	_, release, err := s.RootFS(t.Context(), "test/app")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if err := s.Remove(t.Context(), "test/app"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(t.Context()); err != nil {
		t.Fatal(err)
	}

	if _, err := s.ImportLayout(t.Context(), "test/app", layoutDir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(rootFS(t, s, "test/app"), "etc/id"))
	if err != nil || string(data) != "again" {
		t.Errorf("etc/id = %q, %v; want again", data, err)
	}
	if got := s.unpacks.Load(); got != 2 {
		t.Errorf("unpacks = %d, want 2", got)
	}
}
