package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// initLayout creates oci/oci-layout and an empty oci/index.json when they do
// not exist.
func (s *Store) initLayout() error {
	marker := filepath.Join(s.layoutDir(), "oci-layout")
	if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
		if err := writeFileAtomic(marker, []byte(`{"imageLayoutVersion":"1.0.0"}`), s.tmpDir()); err != nil {
			return err
		}
	}

	index := filepath.Join(s.layoutDir(), "index.json")
	if _, err := os.Stat(index); errors.Is(err, os.ErrNotExist) {
		return s.writeIndex(&v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex})
	}
	return nil
}

// readIndex reads oci/index.json. It needs no lock because writeIndex
// replaces the file atomically.
func (s *Store) readIndex() (*v1.IndexManifest, error) {
	data, err := os.ReadFile(filepath.Join(s.layoutDir(), "index.json"))
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse image index %s: %w", filepath.Join(s.layoutDir(), "index.json"), err)
	}
	return im, nil
}

func (s *Store) writeIndex(im *v1.IndexManifest) error {
	sort.SliceStable(im.Manifests, func(i, j int) bool {
		return im.Manifests[i].Annotations[refNameAnnotation] < im.Manifests[j].Annotations[refNameAnnotation]
	})
	data, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.layoutDir(), "index.json"), data, s.tmpDir())
}

// updateIndex applies change to index.json under the index lock, so
// concurrent updates from this and other processes are not lost.
func (s *Store) updateIndex(ctx context.Context, change func(*v1.IndexManifest) error) error {
	l, err := lock(ctx, s.indexLockPath(), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer l.unlock()

	im, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := change(im); err != nil {
		return err
	}
	return s.writeIndex(im)
}

// lookup returns the index entry of the image with the normalized name n.
func (s *Store) lookup(n string) (v1.Descriptor, error) {
	im, err := s.readIndex()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range im.Manifests {
		if d.Annotations[refNameAnnotation] == n {
			return d, nil
		}
	}
	return v1.Descriptor{}, &NotFoundError{Name: n}
}

// loadImage opens a stored image by its manifest digest.
func (s *Store) loadImage(digest v1.Hash) (v1.Image, error) {
	img, err := layout.Path(s.layoutDir()).Image(digest)
	if err != nil {
		return nil, fmt.Errorf("load image %s from the store: %w", digest, err)
	}
	return img, nil
}

// writeFileAtomic writes data to a temporary file in tmpDir, syncs it and
// renames it to path, so readers see the old or the new content, never a
// part. tmpDir must be on the same filesystem as path.
func writeFileAtomic(path string, data []byte, tmpDir string) error {
	f, err := os.CreateTemp(tmpDir, "write-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)

	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
