package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// flight is one unpack in progress; callers that need the same tree wait for
// it instead of starting their own.
type flight struct {
	done chan struct{}
	err  error // set before done is closed
}

// treeUse counts the RootFS callers of one tree in this process. While the
// count is above zero, lock holds the tree's lock file shared, which keeps
// GC in this and every other process from deleting the tree.
type treeUse struct {
	refs int
	lock *fileLock
}

// resolved is a stored image with the key of its unpacked tree.
type resolved struct {
	name string
	img  v1.Image
	key  string
}

// maxTreeAttempts bounds how often RootFS unpacks again when GC in another
// process deletes a tree between its unpack and its use.
const maxTreeAttempts = 3

// RootFS returns the path of the unpacked root filesystem of the image with
// the given name, unpacking it first when this is its first use. The tree is
// shared by every caller and must not be modified. It stays in place until
// the caller calls release, once the sandbox no longer uses it. Calling
// release more than once is safe.
//
// Concurrent calls for an image that is not unpacked yet wait for one
// unpack, within this process and across processes sharing the store. The
// unpack runs to completion when ctx is canceled, unless Close stops it, so
// the next caller finds the tree ready.
//
// It returns a *NotFoundError, which wraps ErrNotFound, when no image has the
// name. It never pulls: images come only from Import* and Pull.
func (s *Store) RootFS(ctx context.Context, name string) (path string, release func(), err error) {
	r, err := s.resolve(name)
	if err != nil {
		return "", nil, err
	}

	for range maxTreeAttempts {
		path, release, ok, err := s.acquireTree(r.key)
		if err != nil || ok {
			return path, release, err
		}
		if err := s.ensureTree(ctx, r); err != nil {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("root filesystem of image %s was deleted by a concurrent GC %d times; retry", r.name, maxTreeAttempts)
}

// resolve looks up an image and computes its tree key.
func (s *Store) resolve(name string) (resolved, error) {
	n, err := normalizeName(name)
	if err != nil {
		return resolved{}, err
	}
	d, err := s.lookup(n)
	if err != nil {
		return resolved{}, err
	}
	img, err := s.loadImage(d.Digest)
	if err != nil {
		return resolved{}, fmt.Errorf("image %s: %w", n, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return resolved{}, fmt.Errorf("image %s: read config: %w", n, err)
	}
	return resolved{name: n, img: img, key: chainID(cfg.RootFS.DiffIDs)}, nil
}

// chainID returns the hex chain ID of layers with the given diff IDs, the
// digest that the OCI image spec defines for the result of applying them in
// order. The chain ID of one layer is its diff ID. That of layers 1..n is
// sha256 of "<chain ID of 1..n-1> <diff ID of n>". An image without layers
// gets the digest of the empty string.
func chainID(diffIDs []v1.Hash) string {
	if len(diffIDs) == 0 {
		sum := sha256.Sum256(nil)
		return hex.EncodeToString(sum[:])
	}
	id := diffIDs[0].String()
	for _, d := range diffIDs[1:] {
		sum := sha256.Sum256([]byte(id + " " + d.String()))
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	return id[len("sha256:"):]
}

// acquireTree hands out the tree with the given key when it exists and no
// unpack or GC holds its lock exclusively. ok is false otherwise.
func (s *Store) acquireTree(key string) (path string, release func(), ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	u := s.users[key]
	if u == nil {
		l, locked, err := tryLock(s.treeLockPath(key), unix.LOCK_SH)
		if err != nil || !locked {
			return "", nil, false, err
		}
		if _, err := os.Lstat(s.treeDir(key)); err != nil {
			l.unlock()
			if errors.Is(err, os.ErrNotExist) {
				err = nil
			}
			return "", nil, false, err
		}
		u = &treeUse{lock: l}
		s.users[key] = u
	}
	u.refs++

	var once sync.Once
	release = func() { once.Do(func() { s.releaseTree(key, u) }) }
	return s.treeDir(key), release, true, nil
}

func (s *Store) releaseTree(key string, u *treeUse) {
	s.mu.Lock()
	defer s.mu.Unlock()

	u.refs--
	if u.refs == 0 {
		delete(s.users, key)
		u.lock.unlock()
	}
}

// ensureTree makes sure the tree of r exists, joining an unpack in progress
// in this process or starting one.
func (s *Store) ensureTree(ctx context.Context, r resolved) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	f := s.flights[r.key]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		s.flights[r.key] = f
		s.wg.Add(1)
		go s.runFlight(r, f)
	}
	s.mu.Unlock()

	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("unpack image %s: %w", r.name, context.Cause(ctx))
	}
}

func (s *Store) runFlight(r resolved, f *flight) {
	defer s.wg.Done()
	f.err = s.prepareTree(r)
	if f.err != nil {
		// The callers that wait get the error; this line records it for an
		// unpack whose callers have all given up.
		s.log.Warn("unpack failed", "image", r.name, "rootfs", r.key, "error", f.err)
	}

	s.mu.Lock()
	delete(s.flights, r.key)
	s.mu.Unlock()
	close(f.done)
}

// prepareTree unpacks the tree of r unless it exists. The tree's lock, held
// exclusively, keeps other processes from unpacking it at the same time. The
// unpack writes to a temporary directory that is renamed into place when
// complete, so rootfs/ never shows a partial tree.
func (s *Store) prepareTree(r resolved) error {
	treeLock, err := lock(s.ctx, s.treeLockPath(r.key), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer treeLock.unlock()

	if _, err := os.Lstat(s.treeDir(r.key)); err == nil {
		return nil
	}

	// GC waits while blobs are being read.
	gcLock, err := lock(s.ctx, s.gcLockPath(), unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer gcLock.unlock()

	start := time.Now()
	tmp, err := os.MkdirTemp(s.tmpDir(), "unpack-"+r.key+"-")
	if err != nil {
		return err
	}
	stats, err := unpackImage(s.ctx, r.img, tmp, s.log)
	if err == nil {
		err = syncTree(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, s.treeDir(r.key))
	}
	if err != nil {
		if rmErr := removeTree(tmp); rmErr != nil {
			s.log.Warn("remove failed unpack", "path", tmp, "error", rmErr)
		}
		return fmt.Errorf("unpack image %s: %w", r.name, err)
	}

	s.unpacks.Add(1)
	s.log.Info("unpacked image", "image", r.name, "rootfs", r.key, "layers", stats.layers,
		"entries", stats.entries, "skipped_devices", stats.skippedDevices,
		"duration_ms", time.Since(start).Milliseconds())
	return nil
}
