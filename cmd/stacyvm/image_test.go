package main

import (
	"context"
	"encoding/json"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageJSON is the form in which the image commands print an image.
type imageJSON struct {
	Name         string `json:"name"`
	Digest       string `json:"digest"`
	Size         int64  `json:"size"`
	Created      string `json:"created"`
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
}

// randomImage returns a linux/amd64 image with two random layers, created
// 2024-01-02T03:04:05Z.
func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(300, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeImageLayout writes img as an OCI image layout and returns its
// directory.
func writeImageLayout(t *testing.T, img v1.Image) string {
	t.Helper()
	p, err := layout.Write(filepath.Join(t.TempDir(), "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// writeImageArchive writes img as a docker-save archive tagged tag.
func writeImageArchive(t *testing.T, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		t.Fatal(err)
	}
	return path
}

func imageDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// serveImageRegistry runs an in-memory registry on loopback, which the
// image store reaches over plain HTTP, and returns its host:port.
func serveImageRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(t.Output(), "registry: ", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func pushImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func decodeImage(t *testing.T, out string) imageJSON {
	t.Helper()
	var img imageJSON
	if err := json.Unmarshal([]byte(out), &img); err != nil {
		t.Fatalf("decode image from %q: %v", out, err)
	}
	return img
}

func TestImageImportThroughServer(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServe(t, dataDir)
	fromLayout, fromArchive := randomImage(t), randomImage(t)

	out := mustCLI(t, srv.url, "image", "import", "--data-dir", dataDir, "team/app:v1", writeImageLayout(t, fromLayout))
	if out != "team/app:v1\n" {
		t.Errorf("import of a layout printed %q, want the stored name", out)
	}
	out = mustCLI(t, srv.url, "image", "import", "--data-dir", dataDir, "-o", "json",
		"team/other", writeImageArchive(t, "team/other:latest", fromArchive))
	if got := decodeImage(t, out); got.Name != "team/other:latest" {
		t.Errorf("import of an archive stored %q, want team/other:latest", got.Name)
	}

	// The running server lists images that another process imported.
	table := mustCLI(t, srv.url, "image", "ls")
	layoutDigest := imageDigest(t, fromLayout)
	for _, want := range []string{"NAME", "DIGEST", "SIZE", "CREATED", "PLATFORM",
		"team/app:v1", "team/other:latest", layoutDigest[:len("sha256:")+12], "linux/amd64", " ago"} {
		if !strings.Contains(table, want) {
			t.Errorf("image ls output lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, layoutDigest) {
		t.Errorf("image ls shows the whole digest %s, want it shortened:\n%s", layoutDigest, table)
	}
	if wide := mustCLI(t, srv.url, "image", "ls", "-o", "wide"); !strings.Contains(wide, layoutDigest) {
		t.Errorf("image ls -o wide lacks the whole digest %s:\n%s", layoutDigest, wide)
	}
	if got := mustCLI(t, srv.url, "image", "ls", "-q"); got != "team/app:v1\nteam/other:latest\n" {
		t.Errorf("image ls -q = %q, want both names sorted", got)
	}

	var listed []imageJSON
	if err := json.Unmarshal([]byte(mustCLI(t, srv.url, "image", "ls", "-o", "json")), &listed); err != nil {
		t.Fatalf("image ls -o json printed invalid JSON: %v", err)
	}
	if len(listed) != 2 || listed[0].Digest != layoutDigest {
		t.Errorf("image ls -o json = %+v, want 2 images, the first with digest %s", listed, layoutDigest)
	}

	inspected := decodeImage(t, mustCLI(t, srv.url, "image", "inspect", "team/app:v1"))
	if inspected.Digest != layoutDigest || inspected.Created != "2024-01-02T03:04:05Z" || inspected.OS != "linux" {
		t.Errorf("image inspect = %+v, want digest %s, created 2024-01-02T03:04:05Z, os linux", inspected, layoutDigest)
	}

	if got := mustCLI(t, srv.url, "image", "rm", "team/app:v1"); got != "team/app:v1\n" {
		t.Errorf("image rm printed %q, want the name", got)
	}
	r := cli(t, srv.url, nil, "image", "inspect", "team/app:v1")
	if r.code != 1 || !strings.Contains(r.stderr, "stacyvm image import team/app:v1") || !strings.Contains(r.stderr, "request_id") {
		t.Errorf("inspect of a removed image: code %d stderr %q, want 1 naming the import command and the request_id", r.code, r.stderr)
	}
	r = cli(t, srv.url, nil, "image", "rm", "team/app:v1", "team/other")
	if r.code != 1 || r.stdout != "team/other\n" || !strings.Contains(r.stderr, "team/app:v1 not found") {
		t.Errorf("image rm of a missing and a present image: code %d stdout %q stderr %q, want 1, the removed name and the missing one",
			r.code, r.stdout, r.stderr)
	}

	out = mustCLI(t, srv.url, "image", "prune")
	if out != "removed 8 blobs and root filesystems\n" {
		t.Errorf("image prune printed %q, want 8 removed: two manifests, two configs, four layers", out)
	}
}

func TestImagePullThroughServer(t *testing.T) {
	srv := startServe(t, t.TempDir())
	host := serveImageRegistry(t)
	img := randomImage(t)
	ref := host + "/team/app:v1"
	pushImage(t, ref, img)

	r := cli(t, srv.url, nil, "image", "pull", ref)
	if r.code != 0 {
		t.Fatalf("image pull: code %d stderr %q", r.code, r.stderr)
	}
	if r.stdout != ref+"\n" {
		t.Errorf("image pull printed %q, want the stored name", r.stdout)
	}
	for _, want := range []string{"Pulling " + ref + ": ", "100%", "Digest: " + imageDigest(t, img)} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("image pull stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("image pull wrote carriage returns to a stderr that is not a terminal:\n%q", r.stderr)
	}

	if got := mustCLI(t, srv.url, "image", "ls", "-q"); got != ref+"\n" {
		t.Errorf("image ls -q after pull = %q, want %q", got, ref+"\n")
	}

	r = cli(t, srv.url, nil, "image", "pull", host+"/team/absent:v1")
	if r.code != 1 || !strings.Contains(r.stderr, "team/absent:v1") {
		t.Errorf("pull of a missing image: code %d stderr %q, want 1 naming the image", r.code, r.stderr)
	}
}

// TestImageLocalStore works on the store without a server, then checks
// that a server started on the same data directory serves the image.
func TestImageLocalStore(t *testing.T) {
	dataDir := t.TempDir()
	host := serveImageRegistry(t)
	img := randomImage(t)
	ref := host + "/team/app:v1"
	pushImage(t, ref, img)

	// No server listens at this URL, so the commands below must not use it.
	const noServer = "http://127.0.0.1:1"
	out := mustCLI(t, noServer, "image", "pull", "--local", "--data-dir", dataDir, "-o", "json", ref)
	if got := decodeImage(t, out); got.Digest != imageDigest(t, img) {
		t.Errorf("local pull stored digest %s, want %s", got.Digest, imageDigest(t, img))
	}
	if got := mustCLI(t, noServer, "image", "ls", "--local", "--data-dir", dataDir, "-q"); got != ref+"\n" {
		t.Errorf("local image ls -q = %q, want %q", got, ref+"\n")
	}
	if info, err := os.Stat(filepath.Join(dataDir, "images", "oci", "index.json")); err != nil || info.Size() == 0 {
		t.Errorf("the local store is not at data_dir/images: %v", err)
	}

	srv := startServe(t, dataDir)
	if got := decodeImage(t, mustCLI(t, srv.url, "image", "inspect", ref)); got.Digest != imageDigest(t, img) {
		t.Errorf("server inspect of the locally pulled image: digest %s, want %s", got.Digest, imageDigest(t, img))
	}

	if got := mustCLI(t, noServer, "image", "rm", "--local", "--data-dir", dataDir, ref); got != ref+"\n" {
		t.Errorf("local image rm printed %q, want the name", got)
	}
	if got := mustCLI(t, srv.url, "image", "ls", "-q"); got != "" {
		t.Errorf("server image ls after a local rm = %q, want nothing", got)
	}
	if got := mustCLI(t, noServer, "image", "prune", "--local", "--data-dir", dataDir); got != "removed 4 blobs and root filesystems\n" {
		t.Errorf("local image prune printed %q, want 4 removed", got)
	}
}

func TestImageImportErrors(t *testing.T) {
	dataDir := t.TempDir()
	emptyDir := t.TempDir()
	notAnImage := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notAnImage, []byte("not a tar file\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"missing source", []string{"team/app"}, 2, "missing PATH"},
		{"too many arguments", []string{"team/app", "a", "b"}, 2, "accepts between 1 and 2 arg(s)"},
		{"source does not exist", []string{"team/app", filepath.Join(emptyDir, "nothing")}, 2, "no such file"},
		{"directory without a layout", []string{"team/app", emptyDir}, 1, "is not an OCI image layout"},
		{"file that is no archive", []string{"team/app", notAnImage}, 1, "notes.txt"},
		{"invalid name", []string{"Team/App", emptyDir}, 1, "Team/App"},
		{"invalid output", []string{"-o", "yaml", "team/app", emptyDir}, 2, "invalid --output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"image", "import", "--data-dir", dataDir}, tt.args...)
			r := cli(t, "", nil, args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", r.code, tt.wantCode, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.wantStderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

func TestImageInvalidConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stacyvm.yaml")
	if err := os.WriteFile(file, []byte("images:\n  insecure_registries: [\"https://registry.lan\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "", nil, "image", "ls", "--local", "--config", file, "--data-dir", t.TempDir())
	if r.code != 2 || !strings.Contains(r.stderr, `images.insecure_registries entry "https://registry.lan" is invalid`) {
		t.Errorf("image ls with an invalid config: code %d stderr %q, want 2 naming the entry", r.code, r.stderr)
	}
}

// dockerAnswers reports whether the docker CLI reaches an engine.
func dockerAnswers(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").Run() == nil
}

// TestImageImportFromDocker loads an image into the local Docker engine
// and imports it with both spellings of a Docker source. It skips without
// an engine, unless STACYVM_REQUIRE_HOST_FEATURES=1 makes that a failure.
func TestImageImportFromDocker(t *testing.T) {
	if !dockerAnswers(t) {
		const reason = "no Docker engine answers docker info"
		if os.Getenv("STACYVM_REQUIRE_HOST_FEATURES") == "1" {
			t.Fatalf("%s, and STACYVM_REQUIRE_HOST_FEATURES=1 makes that a failure", reason)
		}
		t.Skip(reason)
	}
	const tag = "stacyvm-test/cli-import:v1"
	archive := writeImageArchive(t, tag, randomImage(t))
	if out, err := exec.CommandContext(t.Context(), "docker", "load", "-i", archive).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", tag).Run() })

	dataDir := t.TempDir()
	if got := mustCLI(t, "", "image", "import", "--data-dir", dataDir, "team/fromdocker:v1", "docker://"+tag); got != "team/fromdocker:v1\n" {
		t.Errorf("import from docker:// printed %q, want the stored name", got)
	}
	if got := mustCLI(t, "", "image", "import", "--data-dir", dataDir, "--from-docker", tag); got != tag+"\n" {
		t.Errorf("import --from-docker printed %q, want %s", got, tag)
	}
	list := mustCLI(t, "", "image", "ls", "--local", "--data-dir", dataDir, "-q")
	if list != tag+"\nteam/fromdocker:v1\n" {
		t.Errorf("image ls -q = %q, want both imports", list)
	}

	r := cli(t, "", nil, "image", "import", "--data-dir", dataDir, "team/absent", "docker://stacyvm-test/absent:v1")
	if r.code != 1 || !strings.Contains(r.stderr, "stacyvm-test/absent:v1") {
		t.Errorf("import of an image Docker lacks: code %d stderr %q, want 1 naming it", r.code, r.stderr)
	}
}
