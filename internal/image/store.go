// Package image stores container images and unpacks them into root
// filesystems for the providers that run a sandbox from a directory tree
// (native, PRoot, and microVMs later). Docker keeps its own images and does
// not use this package.
//
// Images come from an OCI image layout (ImportLayout), a `docker save`
// archive or an OCI layout packed as a tar file (ImportArchive), a Docker
// engine (ImportDocker) or a registry (Pull). Layout of a store directory:
//
//	oci/                 an OCI image layout of every stored image. Its
//	                     index.json names each image with the annotation
//	                     org.opencontainers.image.ref.name, so other OCI
//	                     tools can read the store.
//	oci/blobs/sha256/    manifests, configs and layers (compressed)
//	rootfs/<chain-id>/   unpacked root filesystems
//	locks/               flock(2) files that let several processes share
//	                     the store
//	tmp/                 unpacks and downloads in progress, and trees being
//	                     deleted; always on the same filesystem as rootfs/
//
// An unpacked tree is keyed by the chain ID of the image's layers (the OCI
// image spec's digest over the ordered diff IDs), not by the manifest digest.
// One image imported from a layout, from a docker-save archive and from a
// registry has three manifests, because the layers are compressed
// differently or not at all, but one chain ID, so all three share one tree.
// Every layer's uncompressed content is checked against its diff ID while it
// is unpacked, so a tree contains exactly the layers its key names.
//
// Trees are shared by every sandbox of the image and must be used read-only,
// through a read-only bind mount or as the lower layer of an overlay.
package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Errors returned by the store. Match them with errors.Is.
var (
	// ErrNotFound is returned when no stored image has the requested name,
	// and by Pull when the registry has no such image. The error returned
	// by RootFS and Inspect is a *NotFoundError that names the commands
	// which add the image.
	ErrNotFound = errors.New("image not found")

	// ErrInvalid is returned for an image name that does not parse and for
	// malformed images: a layout or archive that cannot be read, a layer
	// whose content does not match its digest, or a layer entry that
	// escapes the root. It unwraps to provider.ErrInvalidArgument.
	ErrInvalid error = &kindError{msg: "invalid image", kind: provider.ErrInvalidArgument}

	// ErrClosed is returned by calls on a store after Close.
	ErrClosed = errors.New("image store closed")
)

// kindError is a sentinel error that also matches a broader sentinel.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// NotFoundError reports an image that is not in the store. It unwraps to
// ErrNotFound.
type NotFoundError struct {
	Name string // normalized image name
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("image %s not found in the image store; import it with "+
		"`stacyvm image import %s PATH` or pull it with `stacyvm image pull %s`",
		e.Name, e.Name, e.Name)
}

func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// Image describes a stored image.
type Image struct {
	// Name is the normalized image name: the name as given, with ":latest"
	// appended when it has neither a tag nor a digest.
	Name string `json:"name"`

	// Digest is the manifest digest, such as "sha256:3f4c...".
	Digest string `json:"digest"`

	// Size is the number of bytes of the manifest, config and layer blobs as
	// stored, with layers compressed.
	Size int64 `json:"size"`

	// Created is the creation time in the image config, zero when it has none.
	Created time.Time `json:"created"`

	// Platform is "os/architecture", or "os/architecture/variant", from the
	// image config.
	Platform string `json:"platform"`
}

// Store is an image store in one directory. It is safe for concurrent use,
// and several processes may open the same directory.
type Store struct {
	dir      string
	log      *slog.Logger
	insecure map[string]bool

	// ctx bounds unpacks, which outlive the RootFS call that started them
	// so that concurrent callers can share them. Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	flights map[string]*flight  // unpacks in progress, by tree key
	users   map[string]*treeUse // trees handed out by RootFS, by tree key

	unpacks atomic.Int64 // trees unpacked since Open
}

// Option configures Open.
type Option func(*Store)

// WithInsecureRegistries makes Pull use plain HTTP for the given registry
// hosts ("host" or "host:port"). Loopback registries (localhost, 127.0.0.0/8,
// ::1) always use plain HTTP.
func WithInsecureRegistries(hosts ...string) Option {
	return func(s *Store) {
		for _, h := range hosts {
			s.insecure[h] = true
		}
	}
}

// Open opens the image store in dir, creating the directory and an empty OCI
// layout when they do not exist yet.
func Open(dir string, log *slog.Logger, opts ...Option) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open image store %s: %w", dir, err)
	}

	s := &Store{
		dir:      abs,
		log:      log,
		insecure: map[string]bool{},
		flights:  map[string]*flight{},
		users:    map[string]*treeUse{},
	}
	for _, opt := range opts {
		opt(s)
	}

	for _, d := range []string{s.blobDir(), s.rootfsDir(), s.lockDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open image store %s: %w", abs, err)
		}
	}
	if err := os.Chmod(s.tmpDir(), 0o700); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", abs, err)
	}
	if err := s.initLayout(); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", abs, err)
	}

	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close cancels unpacks in progress and waits for them to stop. Trees
// already handed out by RootFS stay in place until they are released.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()

	s.cancel()
	s.wg.Wait()
	return nil
}

// Dir returns the store's directory as an absolute path.
func (s *Store) Dir() string { return s.dir }

func (s *Store) layoutDir() string         { return filepath.Join(s.dir, "oci") }
func (s *Store) blobDir() string           { return filepath.Join(s.dir, "oci", "blobs", "sha256") }
func (s *Store) rootfsDir() string         { return filepath.Join(s.dir, "rootfs") }
func (s *Store) treeDir(key string) string { return filepath.Join(s.dir, "rootfs", key) }
func (s *Store) lockDir() string           { return filepath.Join(s.dir, "locks") }
func (s *Store) tmpDir() string            { return filepath.Join(s.dir, "tmp") }
func (s *Store) gcLockPath() string        { return filepath.Join(s.dir, "locks", "gc.lock") }
func (s *Store) indexLockPath() string     { return filepath.Join(s.dir, "locks", "index.lock") }
func (s *Store) treeLockPath(key string) string {
	return filepath.Join(s.dir, "locks", "rootfs-"+key+".lock")
}

// normalizeName validates an image name and appends ":latest" when it has
// neither a tag nor a digest, so "stacyvm/minimal" and
// "stacyvm/minimal:latest" name the same image.
func normalizeName(s string) (string, error) {
	if s == "" || strings.TrimSpace(s) != s {
		return "", fmt.Errorf("%w: image name %q is empty or has surrounding spaces", ErrInvalid, s)
	}
	if _, err := name.ParseReference(s); err != nil {
		return "", fmt.Errorf("%w: image name %q: %v", ErrInvalid, s, err)
	}

	last := s[strings.LastIndex(s, "/")+1:]
	if strings.ContainsAny(last, ":@") {
		return s, nil
	}
	return s + ":latest", nil
}
