package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Progress reports how much of an image Pull has stored.
type Progress struct {
	Name     string // normalized image name
	Complete int64  // bytes stored so far, of all blobs together
	Total    int64  // bytes of the config and all layers, compressed
}

// lockShared takes the GC lock shared for an import or a removal, so GC
// cannot delete their temporary files, or blobs that are written but not yet
// referenced by index.json.
func (s *Store) lockShared(ctx context.Context) (*fileLock, error) {
	return lock(ctx, s.gcLockPath(), unix.LOCK_SH)
}

// add writes the blobs of img into the store and points name n at its
// manifest. source names where the image came from, for the log. The
// caller holds the GC lock shared.
func (s *Store) add(ctx context.Context, n string, img v1.Image, source string, progress func(Progress)) (Image, error) {
	start := time.Now()
	desc, err := s.writeImage(ctx, n, img, progress)
	if err != nil {
		return Image{}, fmt.Errorf("store image %s: %w", n, err)
	}
	err = s.updateIndex(ctx, func(im *v1.IndexManifest) error {
		im.Manifests = withoutName(im.Manifests, n)
		im.Manifests = append(im.Manifests, desc)
		return nil
	})
	if err != nil {
		return Image{}, fmt.Errorf("store image %s: %w", n, err)
	}

	info, err := s.describe(n, desc)
	if err != nil {
		return Image{}, err
	}
	s.log.Info("stored image", "image", n, "digest", info.Digest, "source", source,
		"size", info.Size, "duration_ms", time.Since(start).Milliseconds())
	return info, nil
}

// writeImage writes the layers, config and manifest of img as blobs and
// returns the index entry for it.
func (s *Store) writeImage(ctx context.Context, n string, img v1.Image, progress func(Progress)) (v1.Descriptor, error) {
	manifest, err := img.Manifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read manifest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return v1.Descriptor{}, fmt.Errorf("%w: the config lists %d layer diff IDs but the manifest %d layers",
			ErrInvalid, len(cfg.RootFS.DiffIDs), len(manifest.Layers))
	}

	meter := newMeter(n, manifest, progress)
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read layers: %w", err)
	}
	for i, layer := range layers {
		digest := manifest.Layers[i].Digest
		if err := s.writeBlob(ctx, digest, layer.Compressed, meter); err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %d (%s): %w", i+1, digest, err)
		}
	}

	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read config: %w", err)
	}
	if err := s.writeBlobBytes(ctx, manifest.Config.Digest, rawConfig, meter); err != nil {
		return v1.Descriptor{}, fmt.Errorf("config: %w", err)
	}
	meter.finish()

	rawManifest, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read manifest: %w", err)
	}
	digest, size, err := v1.SHA256(bytes.NewReader(rawManifest))
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := s.writeBlobBytes(ctx, digest, rawManifest, nil); err != nil {
		return v1.Descriptor{}, fmt.Errorf("manifest: %w", err)
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}

	return v1.Descriptor{
		MediaType:   mediaType,
		Size:        size,
		Digest:      digest,
		Annotations: map[string]string{refNameAnnotation: n},
	}, nil
}

func withoutName(descs []v1.Descriptor, n string) []v1.Descriptor {
	out := descs[:0]
	for _, d := range descs {
		if d.Annotations[refNameAnnotation] != n {
			out = append(out, d)
		}
	}
	return out
}

func (s *Store) blobPath(h v1.Hash) string { return filepath.Join(s.blobDir(), h.Hex) }

func (s *Store) writeBlobBytes(ctx context.Context, h v1.Hash, data []byte, meter *meter) error {
	return s.writeBlob(ctx, h, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, meter)
}

// writeBlob stores the blob with digest h from open unless it is stored
// already. The content is checked against h before the blob is renamed into
// place, so a blob file is always complete and correct.
func (s *Store) writeBlob(ctx context.Context, h v1.Hash, open func() (io.ReadCloser, error), meter *meter) error {
	if h.Algorithm != "sha256" || len(h.Hex) != sha256.Size*2 {
		return fmt.Errorf("%w: unsupported digest %s", ErrInvalid, h)
	}
	final := s.blobPath(h)
	if fi, err := os.Stat(final); err == nil {
		meter.add(fi.Size())
		return nil
	}

	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()

	f, err := os.CreateTemp(s.tmpDir(), "blob-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())

	hasher := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, hasher, meter), ctxReader{ctx: ctx, r: rc})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(hasher.Sum(nil)); got != h.Hex {
		return fmt.Errorf("%w: blob content has digest sha256:%s, expected %s", ErrInvalid, got, h)
	}

	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), final)
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// meter counts stored bytes and calls the progress function at most every
// progressInterval, and once more when all blobs are stored. A nil meter
// counts nothing.
type meter struct {
	mu       sync.Mutex
	progress func(Progress)
	state    Progress
	last     time.Time
}

const progressInterval = 200 * time.Millisecond

func newMeter(n string, m *v1.Manifest, progress func(Progress)) *meter {
	if progress == nil {
		return nil
	}
	total := m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return &meter{progress: progress, state: Progress{Name: n, Total: total}}
}

func (m *meter) Write(p []byte) (int, error) {
	m.add(int64(len(p)))
	return len(p), nil
}

func (m *meter) add(n int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state.Complete += n
	if now := time.Now(); now.Sub(m.last) >= progressInterval {
		m.last = now
		m.progress(m.state)
	}
}

func (m *meter) finish() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.progress(m.state)
}
