package image

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// serveRegistry starts an in-memory registry on loopback and returns its
// host:port.
func serveRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(t.Output(), "registry: ", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// TestImportSourcesUnpackIdentically checks that one image pulled from a
// registry, imported from an OCI layout and imported from a docker-save
// archive unpacks to the same tree, each in a store of its own.
func TestImportSourcesUnpackIdentically(t *testing.T) {
	img := richImage(t)
	host := serveRegistry(t)
	push(t, host+"/test/rich:v1", img)

	imports := map[string]func(s *Store) (Image, error){
		"pull": func(s *Store) (Image, error) {
			return s.Pull(t.Context(), host+"/test/rich:v1", nil)
		},
		"layout": func(s *Store) (Image, error) {
			return s.ImportLayout(t.Context(), "test/rich:v1", writeLayout(t, t.TempDir(), "test/rich:v1", img))
		},
		"docker-save": func(s *Store) (Image, error) {
			path := writeDockerSave(t, filepath.Join(t.TempDir(), "rich.tar"), "test/rich:v1", img)
			return s.ImportArchive(t.Context(), "test/rich:v1", path)
		},
	}

	trees := map[string]Tree{}
	keys := map[string]string{}
	for source, importImage := range imports {
		s := newStore(t, t.TempDir())
		stored, err := importImage(s)
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		root := rootFS(t, s, stored.Name)
		trees[source] = scan(t, root)
		keys[source] = filepath.Base(root)
	}

	for _, source := range []string{"layout", "docker-save"} {
		if diff := trees["pull"].Diff(trees[source]); diff != nil {
			t.Errorf("trees of pull and %s differ:\n%s", source, strings.Join(diff, "\n"))
		}
		if keys[source] != keys["pull"] {
			t.Errorf("tree key of %s = %s, want %s as for pull", source, keys[source], keys["pull"])
		}
	}
	if got := len(trees["pull"]); got < 30 {
		t.Errorf("pulled tree has %d entries, want the rich image's 30 or more", got)
	}
	if trees["pull"].Digest() != trees["layout"].Digest() {
		t.Errorf("Tree.Digest differs between pull and layout")
	}
}

// TestImportSourcesShareOneTree checks that the same image under three names
// and from three sources is unpacked once.
func TestImportSourcesShareOneTree(t *testing.T) {
	img := richImage(t)
	s := newStore(t, t.TempDir())

	if _, err := s.ImportLayout(t.Context(), "a", writeLayout(t, t.TempDir(), "whatever", img)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportArchive(t.Context(), "b", writeDockerSave(t, filepath.Join(t.TempDir(), "b.tar"), "b:latest", img)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportArchive(t.Context(), "c", writeGzipDockerSave(t, filepath.Join(t.TempDir(), "c.tar"), "c:latest", img)); err != nil {
		t.Fatal(err)
	}

	paths := map[string]bool{}
	for _, n := range []string{"a", "b", "c"} {
		paths[rootFS(t, s, n)] = true
	}
	if len(paths) != 1 {
		t.Errorf("RootFS returned %d paths, want 1: %v", len(paths), paths)
	}
	if got := s.unpacks.Load(); got != 1 {
		t.Errorf("unpacks = %d, want 1", got)
	}
}

func TestImportLayoutSelection(t *testing.T) {
	first, second := simpleImage(t, "first"), simpleImage(t, "second")
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(first, layout.WithAnnotations(map[string]string{refNameAnnotation: "v1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(second, layout.WithAnnotations(map[string]string{refNameAnnotation: "example.com/app:v2"})); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		want  v1.Image
		errIs error
	}{
		{name: "app:v1", want: first},              // matched by tag, as skopeo names layouts
		{name: "example.com/app:v2", want: second}, // matched by full name
		{name: "other:v3", errIs: ErrInvalid},      // no such name
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, t.TempDir())
			got, err := s.ImportLayout(t.Context(), tt.name, dir)
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("ImportLayout error = %v, want %v", err, tt.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := tt.want.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != want.String() {
				t.Errorf("imported digest = %s, want %s", got.Digest, want)
			}
		})
	}
}

func TestImportLayoutPicksPlatform(t *testing.T) {
	native := simpleImage(t, "native")
	foreign := simpleImage(t, "foreign")
	arch := "s390x"
	if runtime.GOARCH == arch {
		arch = "amd64"
	}
	index := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(index); err != nil {
		t.Fatal(err)
	}

	s := newStore(t, t.TempDir())
	got, err := s.ImportLayout(t.Context(), "multi", dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := native.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want.String() {
		t.Errorf("imported digest = %s, want the linux/%s image %s", got.Digest, runtime.GOARCH, want)
	}
}

// TestImportArchiveFormats checks an OCI layout packed as a tar file and a
// gzip-compressed docker-save archive.
func TestImportArchiveFormats(t *testing.T) {
	img := simpleImage(t, "archived")
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	ociTar := filepath.Join(t.TempDir(), "oci.tar")
	tarDir(t, writeLayout(t, t.TempDir(), "test/arc:latest", img), ociTar)
	gzTar := filepath.Join(t.TempDir(), "save.tar.gz")
	gzipFile(t, writeDockerSave(t, filepath.Join(t.TempDir(), "save.tar"), "test/arc:latest", img), gzTar)

	for _, path := range []string{ociTar, gzTar} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			s := newStore(t, t.TempDir())
			got, err := s.ImportArchive(t.Context(), "test/arc", path)
			if err != nil {
				t.Fatal(err)
			}
			root := rootFS(t, s, "test/arc")
			data, err := os.ReadFile(filepath.Join(root, "etc/id"))
			if err != nil || string(data) != "archived" {
				t.Errorf("etc/id = %q, %v; want archived", data, err)
			}
			if path == ociTar && got.Digest != want.String() {
				t.Errorf("digest = %s, want %s as in the layout", got.Digest, want)
			}
		})
	}

	notArchive := filepath.Join(t.TempDir(), "plain.tar")
	tarDir(t, t.TempDir(), notArchive)
	s := newStore(t, t.TempDir())
	if _, err := s.ImportArchive(t.Context(), "test/arc", notArchive); !errors.Is(err, ErrInvalid) {
		t.Errorf("ImportArchive of a tar without images: error = %v, want ErrInvalid", err)
	}
}

func tarDir(t *testing.T, dir, dest string) {
	t.Helper()
	f, err := os.Create(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func gzipFile(t *testing.T, src, dest string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestListAndInspect(t *testing.T) {
	s := newStore(t, t.TempDir())
	img := simpleImage(t, "listed")
	if _, err := s.ImportLayout(t.Context(), "test/b", writeLayout(t, t.TempDir(), "x", img)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportLayout(t.Context(), "test/a:v1", writeLayout(t, t.TempDir(), "x", img)); err != nil {
		t.Fatal(err)
	}

	images, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != 2 || images[0].Name != "test/a:v1" || images[1].Name != "test/b:latest" {
		t.Fatalf("List = %+v, want test/a:v1 then test/b:latest", images)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	got := images[1]
	if got.Digest != digest.String() {
		t.Errorf("Digest = %s, want %s", got.Digest, digest)
	}
	if want := "linux/" + runtime.GOARCH; got.Platform != want {
		t.Errorf("Platform = %q, want %q", got.Platform, want)
	}
	if !got.Created.Equal(testTime) {
		t.Errorf("Created = %v, want %v", got.Created, testTime)
	}
	if got.Size <= 0 {
		t.Errorf("Size = %d, want > 0", got.Size)
	}

	inspected, err := s.Inspect(t.Context(), "test/b")
	if err != nil {
		t.Fatal(err)
	}
	if inspected != got {
		t.Errorf("Inspect = %+v, want %+v as listed", inspected, got)
	}
}

func TestImportReplacesName(t *testing.T) {
	s := newStore(t, t.TempDir())
	for _, body := range []string{"old", "new"} {
		if _, err := s.ImportLayout(t.Context(), "test/app", writeLayout(t, t.TempDir(), "x", simpleImage(t, body))); err != nil {
			t.Fatal(err)
		}
	}
	images, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != 1 {
		t.Fatalf("List has %d images, want 1", len(images))
	}
	data, err := os.ReadFile(filepath.Join(rootFS(t, s, "test/app:latest"), "etc/id"))
	if err != nil || string(data) != "new" {
		t.Errorf("etc/id = %q, %v; want new", data, err)
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t, t.TempDir())
	if _, err := s.ImportLayout(t.Context(), "test/app", writeLayout(t, t.TempDir(), "x", simpleImage(t, "x"))); err != nil {
		t.Fatal(err)
	}

	if err := s.Remove(t.Context(), "test/app:latest"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := s.Inspect(t.Context(), "test/app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Inspect after Remove: error = %v, want ErrNotFound", err)
	}
	if err := s.Remove(t.Context(), "test/app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: error = %v, want ErrNotFound", err)
	}
	if err := s.Remove(t.Context(), "never/imported"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove of an unknown name: error = %v, want ErrNotFound", err)
	}
}

func TestInvalidNames(t *testing.T) {
	s := newStore(t, t.TempDir())
	for _, n := range []string{"", " padded", "UPPER/case", "a b", "name:bad tag"} {
		_, _, err := s.RootFS(t.Context(), n)
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, provider.ErrInvalidArgument) {
			t.Errorf("RootFS(%q) error = %v, want ErrInvalid and provider.ErrInvalidArgument", n, err)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	tests := map[string]string{
		"stacyvm/minimal":                       "stacyvm/minimal:latest",
		"stacyvm/minimal:latest":                "stacyvm/minimal:latest",
		"localhost:5000/app":                    "localhost:5000/app:latest",
		"localhost:5000/app:v2":                 "localhost:5000/app:v2",
		"app@sha256:" + strings.Repeat("a", 64): "app@sha256:" + strings.Repeat("a", 64),
	}
	for in, want := range tests {
		got, err := normalizeName(in)
		if err != nil || got != want {
			t.Errorf("normalizeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestReopenKeepsImages(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	if _, err := s.ImportLayout(t.Context(), "test/app", writeLayout(t, t.TempDir(), "x", simpleImage(t, "kept"))); err != nil {
		t.Fatal(err)
	}
	first := rootFS(t, s, "test/app")
	s.Close()

	reopened := newStore(t, dir)
	if got := rootFS(t, reopened, "test/app"); got != first {
		t.Errorf("RootFS after reopening = %s, want %s", got, first)
	}
	if got := reopened.unpacks.Load(); got != 0 {
		t.Errorf("unpacks after reopening = %d, want 0 (tree reused)", got)
	}

	// The store directory is an OCI layout that go-containerregistry reads.
	index, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[refNameAnnotation] != "test/app:latest" {
		t.Errorf("oci/index.json = %+v, want one image named test/app:latest", im.Manifests)
	}
}
