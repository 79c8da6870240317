package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testTime is the modification time of test entries that set none.
var testTime = time.Unix(1700000000, 0)

// entry is one tar entry of a test layer.
type entry struct {
	hdr  tar.Header
	body string
}

func dirEntry(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func fileEntry(name, body string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body: body}
}

func symlinkEntry(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlinkEntry(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func whiteoutEntry(name string) entry { return fileEntry(name, "", 0o600) }

// tarBytes writes entries as an uncompressed tar stream.
func tarBytes(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.ModTime.IsZero() {
			hdr.ModTime = testTime
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if len(hdr.PAXRecords) > 0 {
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("write tar header %s: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("write tar body %s: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testLayer returns a gzip-compressed layer of entries.
func testLayer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	data := tarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage builds a linux image of this machine's architecture from layers.
func testImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = runtime.GOARCH
	cfg.Created = v1.Time{Time: testTime.UTC()}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// simpleImage builds a one-layer image with a file whose content is body, so
// distinct bodies give distinct images.
func simpleImage(t *testing.T, body string) v1.Image {
	t.Helper()
	return testImage(t, testLayer(t, dirEntry("etc/", 0o755), fileEntry("etc/id", body, 0o644)))
}

func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(dir, log)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeLayout writes img as an OCI image layout annotated with refName.
func writeLayout(t *testing.T, dir, refName string, img v1.Image) string {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: refName}))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeDockerSave writes img in the format of `docker save`: manifest.json,
// the config as JSON and one uncompressed layer.tar per layer.
func writeDockerSave(t *testing.T, path, tag string, img v1.Image) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)

	add := func(name string, data []byte) {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: testTime}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}

	rawConfig, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	add("config.json", rawConfig)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var layerNames []string
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		n := fmt.Sprintf("layer%d/layer.tar", i)
		add(n, data)
		layerNames = append(layerNames, n)
	}
	manifest, err := json.Marshal([]map[string]any{{
		"Config": "config.json", "RepoTags": []string{tag}, "Layers": layerNames,
	}})
	if err != nil {
		t.Fatal(err)
	}
	add("manifest.json", manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeGzipDockerSave writes img with tarball.Write, whose layers are
// gzip-compressed, as another producer of docker-save archives.
func writeGzipDockerSave(t *testing.T, path, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		t.Fatal(err)
	}
	return path
}

// rootFS calls RootFS and registers the release with t.Cleanup.
func rootFS(t *testing.T, s *Store, name string) string {
	t.Helper()
	path, release, err := s.RootFS(t.Context(), name)
	if err != nil {
		t.Fatalf("RootFS(%s): %v", name, err)
	}
	t.Cleanup(release)
	return path
}

func scan(t *testing.T, dir string) Tree {
	t.Helper()
	tree, err := ScanTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to set owners and create device nodes")
	}
}

func mutateConfig(img v1.Image, cfg *v1.ConfigFile) (v1.Image, error) {
	return mutate.ConfigFile(img, cfg)
}
