package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// containerdNameAnnotation is the image name annotation that containerd and
// BuildKit write into OCI layouts next to refNameAnnotation.
const containerdNameAnnotation = "io.containerd.image.name"

// ImportLayout stores the image in the OCI image layout directory dir under
// name, replacing any image stored under that name. When the layout contains
// more than one image, it takes the one whose ref name annotation is name,
// its normalized form or its tag. When that entry is a multi-platform index,
// it takes the image for linux on this machine's architecture.
func (s *Store) ImportLayout(ctx context.Context, name, dir string) (Image, error) {
	n, err := normalizeName(name)
	if err != nil {
		return Image{}, err
	}
	gcLock, err := s.lockShared(ctx)
	if err != nil {
		return Image{}, err
	}
	defer gcLock.unlock()

	p, err := layout.FromPath(dir)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %s is not an OCI image layout: %v", ErrInvalid, dir, err)
	}
	img, err := selectLayoutImage(p, name, n)
	if err != nil {
		return Image{}, fmt.Errorf("import %s from %s: %w", n, dir, err)
	}
	return s.add(ctx, n, img, "layout "+dir, nil)
}

// selectLayoutImage picks the image to import from a layout, as described
// at ImportLayout.
func selectLayoutImage(p layout.Path, requested, normalized string) (v1.Image, error) {
	index, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%w: read index.json: %v", ErrInvalid, err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: read index.json: %v", ErrInvalid, err)
	}

	candidates := im.Manifests
	if len(candidates) > 1 {
		candidates = matchRefName(im.Manifests, requested, normalized)
	}
	switch {
	case len(im.Manifests) == 0:
		return nil, fmt.Errorf("%w: the layout contains no image", ErrInvalid)
	case len(candidates) == 0:
		return nil, fmt.Errorf("%w: the layout contains %d images and none is annotated with the name %s (names: %v)",
			ErrInvalid, len(im.Manifests), normalized, refNames(im.Manifests))
	case len(candidates) > 1:
		return nil, fmt.Errorf("%w: the layout contains %d images named %s", ErrInvalid, len(candidates), normalized)
	}

	desc := candidates[0]
	if desc.MediaType.IsIndex() {
		return selectPlatform(index, desc.Digest)
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%w: index.json entry %s has media type %s, not an image", ErrInvalid, desc.Digest, desc.MediaType)
	}
	img, err := index.Image(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: read image %s: %v", ErrInvalid, desc.Digest, err)
	}
	return img, nil
}

// matchRefName returns the descriptors named requested, normalized or the
// tag of normalized, the last being how skopeo names images in a layout.
func matchRefName(descs []v1.Descriptor, requested, normalized string) []v1.Descriptor {
	want := map[string]bool{requested: true, normalized: true}
	if tag, err := name.NewTag(normalized); err == nil {
		want[tag.TagStr()] = true
		want[tag.Name()] = true
	}

	var out []v1.Descriptor
	for _, d := range descs {
		if want[d.Annotations[refNameAnnotation]] || want[d.Annotations[containerdNameAnnotation]] {
			out = append(out, d)
		}
	}
	return out
}

func refNames(descs []v1.Descriptor) []string {
	var names []string
	for _, d := range descs {
		names = append(names, d.Annotations[refNameAnnotation])
	}
	return names
}

// selectPlatform returns the image for linux on this machine's architecture
// from the nested index with the given digest.
func selectPlatform(parent v1.ImageIndex, digest v1.Hash) (v1.Image, error) {
	index, err := parent.ImageIndex(digest)
	if err != nil {
		return nil, fmt.Errorf("%w: read index %s: %v", ErrInvalid, digest, err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: read index %s: %v", ErrInvalid, digest, err)
	}

	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.MediaType.IsImage() && d.Platform.Satisfies(want) {
			return index.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%w: index %s has no image for %s/%s", ErrInvalid, digest, want.OS, want.Architecture)
}

// ImportArchive stores the image in the archive at path under name,
// replacing any image stored under that name. The archive is either the
// output of `docker save`, optionally gzip-compressed, or an OCI image layout
// packed as a tar file. A docker-save archive of several images must list
// name among its tags.
func (s *Store) ImportArchive(ctx context.Context, name, path string) (Image, error) {
	n, err := normalizeName(name)
	if err != nil {
		return Image{}, err
	}

	gcLock, err := s.lockShared(ctx)
	if err != nil {
		return Image{}, err
	}
	defer gcLock.unlock()
	arc, err := s.openArchive(path)
	if err != nil {
		return Image{}, fmt.Errorf("import %s from %s: %w", n, path, err)
	}
	defer arc.cleanup()

	if arc.format == formatOCILayout {
		img, err := s.importExtractedLayout(ctx, name, n, arc.path)
		if err != nil {
			return Image{}, fmt.Errorf("import %s from %s: %w", n, path, err)
		}
		return img, nil
	}

	img, err := dockerArchiveImage(arc.path, n)
	if err != nil {
		return Image{}, fmt.Errorf("import %s from %s: %w", n, path, err)
	}
	return s.add(ctx, n, img, "archive "+path, nil)
}

// importExtractedLayout unpacks a tar file of an OCI layout into the store's
// temporary directory and imports it from there.
func (s *Store) importExtractedLayout(ctx context.Context, requested, n, tarPath string) (Image, error) {
	dir, err := os.MkdirTemp(s.tmpDir(), "layout-*")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(dir)

	if err := extractLayoutArchive(ctx, tarPath, dir); err != nil {
		return Image{}, err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return Image{}, fmt.Errorf("%w: not an OCI image layout: %v", ErrInvalid, err)
	}
	img, err := selectLayoutImage(p, requested, n)
	if err != nil {
		return Image{}, err
	}
	return s.add(ctx, n, img, "archive", nil)
}

// dockerArchiveImage opens the image of a docker-save archive: its only image,
// or the one tagged n.
func dockerArchiveImage(path, n string) (v1.Image, error) {
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		return nil, fmt.Errorf("%w: read manifest.json: %v", ErrInvalid, err)
	}
	if len(manifest) == 0 {
		return nil, fmt.Errorf("%w: the archive contains no image", ErrInvalid)
	}

	var tag *name.Tag
	if len(manifest) > 1 {
		t, err := name.NewTag(n)
		if err != nil {
			return nil, fmt.Errorf("%w: the archive contains %d images, so the name must be one of their tags: %v", ErrInvalid, len(manifest), err)
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(path, tag)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return img, nil
}

// ImportDocker stores the image ref of the local Docker engine under name,
// through `docker save`. It returns an error wrapping
// provider.ErrUnavailable when the docker CLI or engine is missing, and one
// wrapping ErrNotFound when the engine has no image ref.
func (s *Store) ImportDocker(ctx context.Context, name, ref string) (Image, error) {
	n, err := normalizeName(name)
	if err != nil {
		return Image{}, err
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		return Image{}, fmt.Errorf("import %s from Docker: %w: docker CLI not found in PATH", n, provider.ErrUnavailable)
	}

	gcLock, err := s.lockShared(ctx)
	if err != nil {
		return Image{}, err
	}
	defer gcLock.unlock()
	f, err := os.CreateTemp(s.tmpDir(), "docker-save-*.tar")
	if err != nil {
		return Image{}, err
	}
	f.Close()
	defer os.Remove(f.Name())

	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, docker, "save", "-o", f.Name(), ref)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Image{}, s.dockerSaveError(ctx, docker, n, ref, err, stderr.String())
	}

	img, err := dockerArchiveImage(f.Name(), n)
	if err != nil {
		return Image{}, fmt.Errorf("import %s from Docker image %s: %w", n, ref, err)
	}
	return s.add(ctx, n, img, "docker "+ref, nil)
}

// dockerSaveError distinguishes a missing engine from a missing image by
// running further docker commands, instead of parsing the CLI's messages.
func (s *Store) dockerSaveError(ctx context.Context, docker, n, ref string, err error, stderr string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("import %s from Docker image %s: %w", n, ref, context.Cause(ctx))
	}
	probe, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()

	if exec.CommandContext(probe, docker, "info", "--format", "{{.ServerVersion}}").Run() != nil {
		return fmt.Errorf("import %s from Docker image %s: %w: the Docker engine is not reachable: %s",
			n, ref, provider.ErrUnavailable, stderr)
	}
	if exec.CommandContext(probe, docker, "image", "inspect", ref).Run() != nil {
		return fmt.Errorf("import %s: Docker image %s: %w", n, ref, ErrNotFound)
	}
	return fmt.Errorf("import %s: docker save %s: %w: %s", n, ref, err, stderr)
}
