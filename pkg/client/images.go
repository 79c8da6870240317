package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Image is an image in the server's image store.
type Image struct {
	Name         string    // normalized: ":latest" is added to a name without tag or digest
	Digest       string    // manifest digest, "sha256:..."
	Size         int64     // bytes of manifest, config and compressed layers
	Created      time.Time // zero when the image records no creation time
	OS           string
	Architecture string
	Variant      string // such as "v8" for arm64; usually empty
}

// Platform returns "os/architecture", or "os/architecture/variant".
func (img Image) Platform() string {
	p := img.OS + "/" + img.Architecture
	if img.Variant != "" {
		p += "/" + img.Variant
	}
	return p
}

// imageJSON is the wire form of Image.
type imageJSON struct {
	Name         string `json:"name"`
	Digest       string `json:"digest"`
	Size         int64  `json:"size"`
	Created      string `json:"created"`
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// UnmarshalJSON decodes the wire form of an image.
func (img *Image) UnmarshalJSON(b []byte) error {
	var w imageJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*img = Image{
		Name:         w.Name,
		Digest:       w.Digest,
		Size:         w.Size,
		OS:           w.OS,
		Architecture: w.Architecture,
		Variant:      w.Variant,
	}
	created, err := parseTime(w.Created)
	if err != nil {
		return fmt.Errorf("image %s: created: %w", w.Name, err)
	}
	img.Created = created
	return nil
}

// MarshalJSON encodes the wire form, so that printed images read like the
// server's responses.
func (img Image) MarshalJSON() ([]byte, error) {
	return json.Marshal(imageJSON{
		Name:         img.Name,
		Digest:       img.Digest,
		Size:         img.Size,
		Created:      formatTime(img.Created),
		OS:           img.OS,
		Architecture: img.Architecture,
		Variant:      img.Variant,
	})
}

// imagePath returns the API path of an image. Each segment of the name is
// escaped, and the slashes between them are kept, because the server takes
// the rest of the path as the name.
func imagePath(name string) string {
	segments := strings.Split(name, "/")
	for i, s := range segments {
		segments[i] = url.PathEscape(s)
	}
	return "/images/" + strings.Join(segments, "/")
}

// ListImages returns every image in the server's store, sorted by name.
func (c *Client) ListImages(ctx context.Context) ([]Image, error) {
	var list []Image
	err := c.doJSON(ctx, http.MethodGet, "/images", nil, nil, &list)
	return list, err
}

// InspectImage returns the stored image with the given name. A name without
// tag or digest means the ":latest" tag. It returns an error matching
// ErrNotFound when the store has no such image.
func (c *Client) InspectImage(ctx context.Context, name string) (Image, error) {
	if name == "" {
		return Image{}, errors.New("image name is empty")
	}
	var img Image
	err := c.doJSON(ctx, http.MethodGet, imagePath(name), nil, nil, &img)
	return img, err
}

// RemoveImage deletes the name of a stored image. Sandboxes running from
// it are not affected, and its data stays until PruneImages. It returns an
// error matching ErrNotFound when the store has no such image.
func (c *Client) RemoveImage(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("image name is empty")
	}
	return c.doJSON(ctx, http.MethodDelete, imagePath(name), nil, nil, nil)
}

// PruneImages deletes the image data that no stored image refers to, except
// root filesystems that a provider still holds for a sandbox. It returns how
// many blobs and root filesystems it deleted.
func (c *Client) PruneImages(ctx context.Context) (int, error) {
	var out struct {
		Removed int `json:"removed"`
	}
	err := c.doJSON(ctx, http.MethodPost, "/images/prune", nil, nil, &out)
	return out.Removed, err
}

// PullProgress reports how much of an image the server has stored during a
// pull.
type PullProgress struct {
	Name     string // normalized image name
	Complete int64  // bytes stored so far
	Total    int64  // bytes of the config and all layers, compressed
}

// pullLine is one NDJSON line of a pull stream.
type pullLine struct {
	Status    string          `json:"status"` // "progress", "done" or "error"
	Name      string          `json:"name"`
	Complete  int64           `json:"complete"`
	Total     int64           `json:"total"`
	Image     json.RawMessage `json:"image"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	RequestID string          `json:"request_id"`
}

// ErrPullEnded is returned by PullImage when the progress stream ends
// without a done or error line, such as when the server stopped or the
// connection dropped. Whether the image was stored is unknown.
var ErrPullEnded = errors.New("image pull stream ended without a result")

// PullImage makes the server pull ref from its registry into its image
// store, with the server's credentials and network. progress, when not
// nil, is called as the server reports stored bytes. The image is stored
// under ref, normalized. It returns an error matching ErrNotFound when the
// registry has no such image, and one matching ErrUnavailable when the
// server cannot reach or use the registry. Canceling ctx cancels the pull.
func (c *Client) PullImage(ctx context.Context, ref string, progress func(PullProgress)) (Image, error) {
	body, err := jsonBody(map[string]string{"ref": ref})
	if err != nil {
		return Image{}, err
	}
	resp, err := c.send(ctx, http.MethodPost, "/images/pull", nil, body, "application/json")
	if err != nil {
		return Image{}, err
	}
	defer resp.Body.Close()

	dec := json.NewDecoder(resp.Body)
	for {
		var line pullLine
		if err := dec.Decode(&line); err != nil {
			return Image{}, pullStreamError(ctx, err)
		}
		switch line.Status {
		case "progress":
			if progress != nil {
				progress(PullProgress{Name: line.Name, Complete: line.Complete, Total: line.Total})
			}
		case "done":
			var img Image
			if err := json.Unmarshal(line.Image, &img); err != nil {
				return Image{}, fmt.Errorf("decode pulled image: %w", err)
			}
			return img, nil
		case "error":
			apiErr := &APIError{
				StatusCode: resp.StatusCode,
				Code:       line.Code,
				Message:    line.Message,
				RequestID:  line.RequestID,
			}
			if apiErr.RequestID == "" {
				apiErr.RequestID = resp.Header.Get("X-Request-Id")
			}
			return Image{}, apiErr
		}
		// Lines of other kinds come from newer servers, and this client
		// skips them.
	}
}

func pullStreamError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, io.EOF) {
		return ErrPullEnded
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the last line was cut off", ErrPullEnded)
	}
	return fmt.Errorf("read image pull stream: %w", err)
}
