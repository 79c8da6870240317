package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// imageJSON is the wire form of a stored image. Created is RFC 3339 in UTC,
// or "" when the image config records no creation time.
type imageJSON struct {
	Name         string `json:"name"`   // normalized: ":latest" is added to a name without tag or digest
	Digest       string `json:"digest"` // manifest digest, "sha256:..."
	Size         int64  `json:"size"`   // bytes of manifest, config and compressed layers
	Created      string `json:"created"`
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func toImageJSON(img image.Image) imageJSON {
	platform := strings.SplitN(img.Platform, "/", 3)
	for len(platform) < 3 {
		platform = append(platform, "")
	}
	return imageJSON{
		Name:         img.Name,
		Digest:       img.Digest,
		Size:         img.Size,
		Created:      formatTime(img.Created),
		OS:           platform[0],
		Architecture: platform[1],
		Variant:      platform[2],
	}
}

// Lines of a pull stream. Every stream that the server ends normally ends
// with exactly one done or error line.
type (
	pullProgressJSON struct {
		Status   string `json:"status"` // always "progress"
		Name     string `json:"name"`
		Complete int64  `json:"complete"` // bytes stored so far
		Total    int64  `json:"total"`    // bytes of the config and all layers, compressed
	}
	pullDoneJSON struct {
		Status string    `json:"status"` // always "done"
		Image  imageJSON `json:"image"`
	}
	pullErrorJSON struct {
		Status    string `json:"status"` // always "error"
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}
)

// pullRequest is the body of POST /images/pull.
type pullRequest struct {
	Ref string `json:"ref"` // image reference, such as "registry.lan:5000/team/app:v1"
}

// errNoImageStore is returned by the image routes of a server started
// without an image store.
var errNoImageStore = fmt.Errorf("%w: this server has no image store", provider.ErrNotImplemented)

// imageStore returns the store, or errNoImageStore when there is none.
func (s *server) imageStore() (*image.Store, error) {
	if s.images == nil {
		return nil, errNoImageStore
	}
	return s.images, nil
}

// imageName returns the image name of the {name...} wildcard, which keeps
// the slashes, colons and "@" of names such as "localhost:5000/team/app:v1".
func imageName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if name == "" {
		return "", invalidf("image name is missing from the path; use /api/v1/images/NAME, such as /api/v1/images/stacyvm/minimal:latest")
	}
	return name, nil
}

// listImages returns every stored image, sorted by name.
func (s *server) listImages(w http.ResponseWriter, r *http.Request) error {
	store, err := s.imageStore()
	if err != nil {
		return err
	}
	images, err := store.List(r.Context())
	if err != nil {
		return err
	}
	list := make([]imageJSON, len(images))
	for i, img := range images {
		list[i] = toImageJSON(img)
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// inspectImage returns one stored image, or 404 naming the commands that
// add it.
func (s *server) inspectImage(w http.ResponseWriter, r *http.Request) error {
	store, err := s.imageStore()
	if err != nil {
		return err
	}
	name, err := imageName(r)
	if err != nil {
		return err
	}
	img, err := store.Inspect(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toImageJSON(img))
	return nil
}

// removeImage deletes an image's name. Its blobs and unpacked tree stay
// until a prune finds nothing else refers to them, so running sandboxes are
// not affected.
func (s *server) removeImage(w http.ResponseWriter, r *http.Request) error {
	store, err := s.imageStore()
	if err != nil {
		return err
	}
	name, err := imageName(r)
	if err != nil {
		return err
	}
	if err := store.Remove(r.Context(), name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "deleted"})
	return nil
}

// pruneImages deletes the blobs and unpacked trees that no stored image
// refers to, except trees that a provider still holds for a sandbox.
func (s *server) pruneImages(w http.ResponseWriter, r *http.Request) error {
	store, err := s.imageStore()
	if err != nil {
		return err
	}
	removed, err := store.GC(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"removed": removed})
	return nil
}

// pullImage pulls an image from its registry and streams NDJSON progress
// lines, then a done line with the stored image. A failure before the
// first line gets a normal error response. After it, the stream ends with
// an error line. A client that disconnects cancels the pull, and blobs
// stored until then stay for the next pull.
func (s *server) pullImage(w http.ResponseWriter, r *http.Request) error {
	store, err := s.imageStore()
	if err != nil {
		return err
	}
	var req pullRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Ref == "" {
		return invalidf("ref is required: send the image reference to pull, such as {\"ref\": \"registry.lan:5000/team/app:v1\"}")
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	out := newNDJSONWriter(w, func(err error) {
		cancel(fmt.Errorf("write pull progress to the client: %w", err))
	})
	defer out.close()

	img, err := store.Pull(ctx, req.Ref, func(p image.Progress) {
		out.writeLine(pullProgressJSON{Status: "progress", Name: p.Name, Complete: p.Complete, Total: p.Total})
	})
	if err != nil {
		err = registryError(err)
	}
	if err != nil && !out.started {
		return err
	}

	if out.err != nil || clientGone(r) {
		info := requestInfoFrom(r.Context())
		s.log.Info("image pull ended early: the client went away",
			"request_id", info.id, "image", req.Ref, "cause", context.Cause(ctx), "error", err)
		return nil
	}
	if err != nil {
		_, body := s.logError(r, err)
		out.writeLine(pullErrorJSON{Status: "error", Code: body.Code, Message: body.Message, RequestID: body.RequestID})
		return nil
	}
	out.writeLine(pullDoneJSON{Status: "done", Image: toImageJSON(img)})
	return nil
}

// registryError marks a failure to reach or use the registry as
// provider.ErrUnavailable, so the client gets 503 with the registry's
// message instead of a generic internal error. Missing images, invalid
// references and local failures keep their own mapping.
func registryError(err error) error {
	if errors.Is(err, image.ErrNotFound) || errors.Is(err, provider.ErrInvalidArgument) {
		return err
	}
	var (
		terr   *transport.Error
		urlErr *url.Error
	)
	if errors.As(err, &terr) || errors.As(err, &urlErr) {
		return fmt.Errorf("%w: %w", provider.ErrUnavailable, err)
	}
	return err
}
