package client_test

import (
	"errors"
	"log"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stacyvm/stacyvm/internal/api"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/pkg/client"
)

var testCreated = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// newImageClient serves the API with a real image store in a temporary
// directory and returns a client for it, and an in-memory registry on
// loopback, as host:port, that holds the image host/team/app:v1.
func newImageClient(t *testing.T) (c *client.Client, registryHost string, img v1.Image) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := image.Open(filepath.Join(t.TempDir(), "images"), logger)
	if err != nil {
		t.Fatalf("open image store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	srv := httptest.NewServer(api.New(api.Options{Logger: logger, Version: "test", Images: store}))
	t.Cleanup(srv.Close)

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(testLogWriter{t}, "registry: ", 0))))
	t.Cleanup(reg.Close)
	registryHost = strings.TrimPrefix(reg.URL, "http://")

	img = randomImage(t)
	ref, err := name.ParseReference(registryHost + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	c, err = client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, registryHost, img
}

// randomImage returns a linux/arm64/v8 image with two random layers.
func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = "linux", "arm64", "v8"
	cfg.Created = v1.Time{Time: testCreated}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImagePullInspectRemove(t *testing.T) {
	c, host, img := newImageClient(t)
	ctx := t.Context()
	ref := host + "/team/app:v1"
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	var updates []client.PullProgress
	pulled, err := c.PullImage(ctx, ref, func(p client.PullProgress) { updates = append(updates, p) })
	if err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	if pulled.Name != ref || pulled.Digest != want.String() {
		t.Errorf("PullImage = %s %s, want %s %s", pulled.Name, pulled.Digest, ref, want)
	}
	if len(updates) == 0 {
		t.Fatalf("progress was never called")
	}
	if last := updates[len(updates)-1]; last.Total == 0 || last.Complete != last.Total {
		t.Errorf("last progress = %+v, want complete = total > 0", last)
	}

	got, err := c.InspectImage(ctx, ref)
	if err != nil {
		t.Fatalf("InspectImage: %v", err)
	}
	if got != pulled {
		t.Errorf("InspectImage = %+v, want the pulled %+v", got, pulled)
	}
	if got.Platform() != "linux/arm64/v8" {
		t.Errorf("Platform = %q, want linux/arm64/v8", got.Platform())
	}
	if !got.Created.Equal(testCreated) {
		t.Errorf("Created = %v, want %v", got.Created, testCreated)
	}

	list, err := c.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if len(list) != 1 || list[0] != pulled {
		t.Errorf("ListImages = %+v, want only %+v", list, pulled)
	}

	if err := c.RemoveImage(ctx, ref); err != nil {
		t.Fatalf("RemoveImage: %v", err)
	}
	if _, err := c.InspectImage(ctx, ref); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("InspectImage after RemoveImage: error = %v, want ErrNotFound", err)
	}
	removed, err := c.PruneImages(ctx)
	if err != nil {
		t.Fatalf("PruneImages: %v", err)
	}
	if removed != 4 {
		t.Errorf("PruneImages removed %d, want 4: manifest, config and two layers", removed)
	}
}

func TestImageNotFoundErrors(t *testing.T) {
	c, host, _ := newImageClient(t)
	ctx := t.Context()

	_, err := c.InspectImage(ctx, "team/missing:v2")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("InspectImage of a missing image: error = %v, want an *APIError matching ErrNotFound", err)
	}
	if !strings.Contains(apiErr.Message, "stacyvm image import team/missing:v2") {
		t.Errorf("message %q does not name the import command", apiErr.Message)
	}

	if err := c.RemoveImage(ctx, "team/missing:v2"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("RemoveImage of a missing image: error = %v, want ErrNotFound", err)
	}
	if _, err := c.PullImage(ctx, host+"/team/absent:v1", nil); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("PullImage of a missing image: error = %v, want ErrNotFound", err)
	}
	if _, err := c.PullImage(ctx, "Not Valid", nil); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("PullImage of an invalid reference: error = %v, want ErrBadRequest", err)
	}
	if _, err := c.InspectImage(ctx, ""); err == nil {
		t.Errorf("InspectImage with an empty name: got no error")
	}
}

func TestImageListEmpty(t *testing.T) {
	c, _, _ := newImageClient(t)
	list, err := c.ListImages(t.Context())
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("ListImages = %+v, want none", list)
	}
}

func TestImageNameWithDigest(t *testing.T) {
	c, host, img := newImageClient(t)
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/team/app@" + digest.String()

	pulled, err := c.PullImage(t.Context(), ref, nil)
	if err != nil {
		t.Fatalf("PullImage by digest: %v", err)
	}
	if pulled.Name != ref {
		t.Errorf("pulled name = %q, want %q", pulled.Name, ref)
	}
	if _, err := c.InspectImage(t.Context(), ref); err != nil {
		t.Errorf("InspectImage by digest: %v", err)
	}
}
