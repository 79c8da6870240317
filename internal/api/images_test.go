package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log"
	"net/http"
	"net/http/httptest"
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

	"github.com/stacyvm/stacyvm/internal/image"
)

// newImageStack serves the API with a real image store in a temporary
// directory. The image routes use no manager, so none is built.
func newImageStack(t *testing.T) (*stack, *image.Store) {
	t.Helper()
	logger := testLogger(t)
	store, err := image.Open(filepath.Join(t.TempDir(), "images"), logger)
	if err != nil {
		t.Fatalf("open image store: %v", err)
	}
	t.Cleanup(func() { store.Close() })

	srv := httptest.NewServer(New(Options{Logger: logger, Version: "test", Images: store}))
	t.Cleanup(srv.Close)
	return &stack{t: t, srv: srv}, store
}

// testImage returns a random linux/arm64/v8 image with two small layers,
// created 2024-01-02T03:04:05Z. The platform differs from any default.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = "linux", "arm64", "v8"
	cfg.Created = v1.Time{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// importImage stores img under ref through an OCI layout on disk.
func importImage(t *testing.T, store *image.Store, ref string, img v1.Image) image.Image {
	t.Helper()
	p, err := layout.Write(t.TempDir(), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	stored, err := store.ImportLayout(t.Context(), ref, string(p))
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	return stored
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestImageListAndInspect(t *testing.T) {
	s, store := newImageStack(t)
	img := testImage(t)
	importImage(t, store, "localhost:5000/team/app:v1", img)
	importImage(t, store, "stacyvm/minimal", testImage(t))

	resp := s.do("GET", "/api/v1/images", nil)
	resp.wantStatus(t, http.StatusOK)
	list := decodeBody[[]imageJSON](t, resp)
	if len(list) != 2 {
		t.Fatalf("listed %d images, want 2: %s", len(list), resp.body)
	}
	if list[0].Name != "localhost:5000/team/app:v1" || list[1].Name != "stacyvm/minimal:latest" {
		t.Errorf("names = %q, %q; want localhost:5000/team/app:v1 and stacyvm/minimal:latest, sorted",
			list[0].Name, list[1].Name)
	}

	resp = s.do("GET", "/api/v1/images/localhost:5000/team/app:v1", nil)
	resp.wantStatus(t, http.StatusOK)
	got := decodeBody[imageJSON](t, resp)
	if got != list[0] {
		t.Errorf("inspect = %+v, want the listed %+v", got, list[0])
	}
	if want := digestOf(t, img); got.Digest != want {
		t.Errorf("digest = %s, want %s", got.Digest, want)
	}
	if got.OS != "linux" || got.Architecture != "arm64" || got.Variant != "v8" {
		t.Errorf("platform = %s/%s/%s, want linux/arm64/v8", got.OS, got.Architecture, got.Variant)
	}
	if got.Size <= 1024 {
		t.Errorf("size = %d, want more than the 1024 bytes of layer content", got.Size)
	}
	if want := "2024-01-02T03:04:05Z"; got.Created != want {
		t.Errorf("created = %q, want %q", got.Created, want)
	}
}

func TestImageInspectEscapedName(t *testing.T) {
	s, store := newImageStack(t)
	importImage(t, store, "team/app:v1", testImage(t))

	// A client that escapes the slash and colon reaches the same image.
	resp := s.do("GET", "/api/v1/images/team%2Fapp%3Av1", nil)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[imageJSON](t, resp).Name; got != "team/app:v1" {
		t.Errorf("name = %q, want team/app:v1", got)
	}
}

func TestImageEmptyList(t *testing.T) {
	s, _ := newImageStack(t)
	resp := s.do("GET", "/api/v1/images", nil)
	resp.wantStatus(t, http.StatusOK)
	if got := strings.TrimSpace(string(resp.body)); got != "[]" {
		t.Errorf("body = %s, want []", got)
	}
}

func TestImageRemove(t *testing.T) {
	s, store := newImageStack(t)
	importImage(t, store, "team/app:v1", testImage(t))

	resp := s.do("DELETE", "/api/v1/images/team/app:v1", nil)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[map[string]string](t, resp)["status"]; got != "deleted" {
		t.Errorf("status = %q, want deleted", got)
	}
	s.do("GET", "/api/v1/images/team/app:v1", nil).
		wantError(t, http.StatusNotFound, codeNotFound, "team/app:v1")
	s.do("DELETE", "/api/v1/images/team/app:v1", nil).
		wantError(t, http.StatusNotFound, codeNotFound, "team/app:v1")
}

func TestImageErrors(t *testing.T) {
	s, _ := newImageStack(t)
	tests := []struct {
		name      string
		method    string
		path      string
		body      any
		status    int
		code      string
		fragments []string
	}{
		{"unknown image", "GET", "/api/v1/images/team/missing:v2", nil,
			404, codeNotFound, []string{"team/missing:v2", "stacyvm image import team/missing:v2", "stacyvm image pull team/missing:v2"}},
		{"unknown image without tag", "GET", "/api/v1/images/team/missing", nil,
			404, codeNotFound, []string{"team/missing:latest"}},
		{"remove unknown image", "DELETE", "/api/v1/images/team/missing:v2", nil,
			404, codeNotFound, []string{"team/missing:v2", "stacyvm image import"}},
		{"invalid name", "GET", "/api/v1/images/Team/UPPER", nil,
			400, codeBadRequest, []string{"Team/UPPER"}},
		{"missing name", "GET", "/api/v1/images/", nil,
			400, codeBadRequest, []string{"image name"}},
		{"pull without ref", "POST", "/api/v1/images/pull", `{}`,
			400, codeBadRequest, []string{"ref"}},
		{"pull unknown field", "POST", "/api/v1/images/pull", `{"image":"x"}`,
			400, codeBadRequest, []string{`"image"`}},
		{"pull invalid ref", "POST", "/api/v1/images/pull", `{"ref":"a b"}`,
			400, codeBadRequest, []string{"a b"}},
		{"post on an image", "POST", "/api/v1/images/team/app:v1", `{}`,
			405, codeMethodNotAllowed, []string{"GET", "DELETE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.do(tt.method, tt.path, tt.body).wantError(t, tt.status, tt.code, tt.fragments...)
		})
	}
}

func TestImageRoutesWithoutStore(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, rt := range []struct{ method, path string }{
		{"GET", "/api/v1/images"},
		{"GET", "/api/v1/images/stacyvm/minimal"},
		{"DELETE", "/api/v1/images/stacyvm/minimal"},
		{"POST", "/api/v1/images/pull"},
		{"POST", "/api/v1/images/prune"},
	} {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			s.do(rt.method, rt.path, `{"ref":"stacyvm/minimal"}`).
				wantError(t, http.StatusNotImplemented, codeNotImplemented, "image store")
		})
	}
}

// serveRegistry runs an in-memory registry on loopback and returns its
// host:port. The store pulls from loopback registries over plain HTTP.
func serveRegistry(t *testing.T) string {
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

// pullLine is any line of a pull stream.
type pullLine struct {
	Status    string    `json:"status"`
	Name      string    `json:"name"`
	Complete  int64     `json:"complete"`
	Total     int64     `json:"total"`
	Image     imageJSON `json:"image"`
	Code      string    `json:"code"`
	Message   string    `json:"message"`
	RequestID string    `json:"request_id"`
}

func decodePullStream(t *testing.T, body []byte) []pullLine {
	t.Helper()
	var lines []pullLine
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var l pullLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("pull stream line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		t.Fatalf("pull stream is empty")
	}
	return lines
}

func TestImagePullStream(t *testing.T) {
	s, store := newImageStack(t)
	host := serveRegistry(t)
	img := testImage(t)
	ref := host + "/team/app:v1"
	pushImage(t, ref, img)

	resp := s.do("POST", "/api/v1/images/pull", map[string]string{"ref": ref})
	resp.wantStatus(t, http.StatusOK)
	if ct := resp.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
	}
	lines := decodePullStream(t, resp.body)

	last := lines[len(lines)-1]
	if last.Status != "done" {
		t.Fatalf("last line = %+v, want status done", last)
	}
	if last.Image.Name != ref || last.Image.Digest != digestOf(t, img) {
		t.Errorf("done image = %s %s, want %s %s", last.Image.Name, last.Image.Digest, ref, digestOf(t, img))
	}
	progress := lines[len(lines)-2]
	if progress.Status != "progress" || progress.Total == 0 || progress.Complete != progress.Total {
		t.Errorf("last progress line = %+v, want complete = total > 0", progress)
	}
	if progress.Name != ref {
		t.Errorf("progress name = %q, want %q", progress.Name, ref)
	}

	stored, err := store.Inspect(t.Context(), ref)
	if err != nil {
		t.Fatalf("the pulled image is not in the store: %v", err)
	}
	if stored.Digest != last.Image.Digest {
		t.Errorf("stored digest = %s, want %s", stored.Digest, last.Image.Digest)
	}
}

func TestImagePullMissing(t *testing.T) {
	s, _ := newImageStack(t)
	host := serveRegistry(t)
	ref := host + "/team/absent:v1"

	s.do("POST", "/api/v1/images/pull", map[string]string{"ref": ref}).
		wantError(t, http.StatusNotFound, codeNotFound, ref)
}

func TestImagePullUnreachableRegistry(t *testing.T) {
	s, _ := newImageStack(t)
	// A closed loopback port: the connection is refused.
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()

	s.do("POST", "/api/v1/images/pull", map[string]string{"ref": host + "/team/app:v1"}).
		wantError(t, http.StatusServiceUnavailable, codeUnavailable, host)
}

func TestImagePrune(t *testing.T) {
	s, store := newImageStack(t)
	importImage(t, store, "team/kept:v1", testImage(t))
	importImage(t, store, "team/dropped:v1", testImage(t))
	s.do("DELETE", "/api/v1/images/team/dropped:v1", nil).wantStatus(t, http.StatusOK)

	resp := s.do("POST", "/api/v1/images/prune", nil)
	resp.wantStatus(t, http.StatusOK)
	// The dropped image's manifest, config and two layers are garbage.
	if got := decodeBody[map[string]int](t, resp)["removed"]; got != 4 {
		t.Errorf("removed = %d, want 4; body %s", got, resp.body)
	}
	if _, err := store.Inspect(t.Context(), "team/kept:v1"); err != nil {
		t.Errorf("prune removed the kept image: %v", err)
	}

	resp = s.do("POST", "/api/v1/images/prune", nil)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[map[string]int](t, resp)["removed"]; got != 0 {
		t.Errorf("second prune removed %d, want 0", got)
	}
}
