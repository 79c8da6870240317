package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/sys/unix"
)

// GC deletes the blobs and unpacked trees that no stored image refers to,
// and the leftovers of interrupted imports and unpacks. A tree that a RootFS
// caller of any process has not released yet is kept. removed counts the
// trees and blobs deleted.
//
// GC waits for imports, pulls and unpacks in progress, which hold the GC
// lock shared, and they wait for it in turn.
func (s *Store) GC(ctx context.Context) (removed int, err error) {
	gcLock, err := lock(ctx, s.gcLockPath(), unix.LOCK_EX)
	if err != nil {
		return 0, err
	}
	defer gcLock.unlock()

	blobs, trees, err := s.referenced()
	if err != nil {
		return 0, fmt.Errorf("garbage collect: %w", err)
	}
	nBlobs, err := s.sweepBlobs(blobs)
	if err != nil {
		return nBlobs, fmt.Errorf("garbage collect: %w", err)
	}
	nTrees, err := s.sweepTrees(trees)
	removed = nBlobs + nTrees
	if err != nil {
		return removed, fmt.Errorf("garbage collect: %w", err)
	}
	if err := s.sweepTmp(); err != nil {
		return removed, fmt.Errorf("garbage collect: %w", err)
	}

	s.log.Info("garbage collected image store", "blobs_removed", nBlobs, "trees_removed", nTrees)
	return removed, nil
}

// referenced returns the blob digests (hex) and tree keys that stored images
// refer to. An image whose manifest or config cannot be read fails the whole
// GC, because its blobs cannot be distinguished from garbage.
func (s *Store) referenced() (blobs, trees map[string]bool, err error) {
	im, err := s.readIndex()
	if err != nil {
		return nil, nil, err
	}

	blobs, trees = map[string]bool{}, map[string]bool{}
	p := layout.Path(s.layoutDir())
	for _, d := range im.Manifests {
		n := d.Annotations[refNameAnnotation]
		raw, err := p.Bytes(d.Digest)
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: read manifest: %w; remove the image with `stacyvm image rm %s`", n, err, n)
		}
		m, err := v1.ParseManifest(strings.NewReader(string(raw)))
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: parse manifest: %w", n, err)
		}
		cfg, err := s.configFile(p, m.Config.Digest)
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: %w; remove the image with `stacyvm image rm %s`", n, err, n)
		}

		blobs[d.Digest.Hex] = true
		blobs[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			blobs[l.Digest.Hex] = true
		}
		trees[chainID(cfg.RootFS.DiffIDs)] = true
	}
	return blobs, trees, nil
}

func (s *Store) configFile(p layout.Path, digest v1.Hash) (*v1.ConfigFile, error) {
	raw, err := p.Bytes(digest)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	return cfg, nil
}

// sweepBlobs deletes unreferenced blobs. The caller holds the GC lock
// exclusively, so no import is writing blobs.
func (s *Store) sweepBlobs(keep map[string]bool) (int, error) {
	entries, err := os.ReadDir(s.blobDir())
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(s.blobDir(), e.Name())); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// sweepTrees deletes the unreferenced trees that are not in use. A RootFS caller
// that has not released its tree, in this or another process, holds the
// tree's lock shared, and an unpack holds it exclusively, so the exclusive
// try in detachTree fails for trees in use.
func (s *Store) sweepTrees(keep map[string]bool) (int, error) {
	entries, err := os.ReadDir(s.rootfsDir())
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		key := e.Name()
		if keep[key] || !isTreeKey(key) {
			continue
		}
		trash, err := s.detachTree(key)
		if err != nil {
			return removed, err
		}
		if trash == "" {
			continue
		}
		if err := removeTree(trash); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// isTreeKey reports whether name has the form of a tree key: 64 lowercase
// hex digits.
func isTreeKey(name string) bool {
	if len(name) != 64 {
		return false
	}
	for _, c := range name {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// detachTree moves an unused tree into tmp/ so it can be deleted without
// holding any lock. It returns "" when the tree is in use.
func (s *Store) detachTree(key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	l, ok, err := tryLock(s.treeLockPath(key), unix.LOCK_EX)
	if err != nil || !ok {
		return "", err
	}
	trash, err := os.MkdirTemp(s.tmpDir(), "trash-")
	if err != nil {
		l.unlock()
		return "", err
	}
	dest := filepath.Join(trash, key)
	if err := os.Rename(s.treeDir(key), dest); err != nil {
		l.unlock()
		os.Remove(trash)
		return "", err
	}
	l.unlinkAndUnlock()
	s.log.Debug("detached unused root filesystem", "rootfs", key)
	return trash, nil
}

// sweepTmp deletes what interrupted work left in tmp/: files of imports and
// index updates (none runs while the caller holds the GC lock), trees being
// deleted, and unpacks whose tree lock is free.
func (s *Store) sweepTmp() error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(s.tmpDir(), e.Name())
		if rest, ok := strings.CutPrefix(e.Name(), "unpack-"); ok {
			key, _, _ := strings.Cut(rest, "-")
			l, locked, err := tryLock(s.treeLockPath(key), unix.LOCK_EX)
			if err != nil {
				return err
			}
			if !locked {
				continue
			}
			err = removeTree(p)
			l.unlock()
			if err != nil {
				return err
			}
			continue
		}
		if err := removeTree(p); err != nil {
			return err
		}
	}
	return nil
}
