package image

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// List returns every stored image, sorted by name.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	im, err := s.readIndex()
	if err != nil {
		return nil, err
	}

	images := make([]Image, 0, len(im.Manifests))
	for _, d := range im.Manifests {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		n := d.Annotations[refNameAnnotation]
		if n == "" {
			continue
		}
		info, err := s.describe(n, d)
		if err != nil {
			return nil, err
		}
		images = append(images, info)
	}
	slices.SortFunc(images, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return images, nil
}

// Inspect returns the stored image with the given name. It returns a
// *NotFoundError when there is none.
func (s *Store) Inspect(ctx context.Context, name string) (Image, error) {
	n, err := normalizeName(name)
	if err != nil {
		return Image{}, err
	}
	d, err := s.lookup(n)
	if err != nil {
		return Image{}, err
	}
	return s.describe(n, d)
}

// Remove deletes the name of a stored image. Its blobs and unpacked tree stay
// until GC finds nothing else refers to them, so sandboxes running from the
// tree are not affected. It returns an error wrapping ErrNotFound when no
// image has that name.
func (s *Store) Remove(ctx context.Context, name string) error {
	n, err := normalizeName(name)
	if err != nil {
		return err
	}
	gcLock, err := s.lockShared(ctx)
	if err != nil {
		return err
	}
	defer gcLock.unlock()

	err = s.updateIndex(ctx, func(im *v1.IndexManifest) error {
		before := len(im.Manifests)
		im.Manifests = withoutName(im.Manifests, n)
		if len(im.Manifests) == before {
			return &NotFoundError{Name: n}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove image %s: %w", n, err)
	}
	s.log.Info("removed image", "image", n)
	return nil
}

// describe reads the manifest and config of an indexed image.
func (s *Store) describe(n string, d v1.Descriptor) (Image, error) {
	img, err := s.loadImage(d.Digest)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", n, err)
	}
	manifest, err := img.Manifest()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: read manifest %s: %w", n, d.Digest, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: read config %s: %w", n, manifest.Config.Digest, err)
	}

	size := d.Size + manifest.Config.Size
	for _, l := range manifest.Layers {
		size += l.Size
	}
	platform := cfg.OS + "/" + cfg.Architecture
	if cfg.Variant != "" {
		platform += "/" + cfg.Variant
	}
	return Image{
		Name:     n,
		Digest:   d.Digest.String(),
		Size:     size,
		Created:  cfg.Created.Time,
		Platform: platform,
	}, nil
}
