package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Whiteout markers in layer tars, as the OCI image spec defines them. A file
// named whiteoutPrefix+NAME deletes NAME of lower layers, and a file named
// opaqueMarker in a directory hides everything lower layers put there. Other
// names starting with aufsMetaPrefix are AUFS bookkeeping (such as
// .wh..wh.plnk for hard links) and are not extracted.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	aufsMetaPrefix = ".wh..wh."
)

// maxSymlinks bounds the symlinks followed while resolving one path, like
// the kernel's limit of 40 for a lookup.
const maxSymlinks = 40

type unpackStats struct {
	layers         int
	entries        int
	skippedDevices int
}

// dirMeta is the mode and times of a directory, applied after the last layer
// so that, for an unprivileged unpack, a read-only directory of a lower layer
// can still receive the files of upper layers.
type dirMeta struct {
	mode         uint32
	atime, mtime time.Time
}

// unpacker applies layers to one tree. It is not safe for concurrent use.
type unpacker struct {
	root     string // absolute path of the tree on the host
	log      *slog.Logger
	isRoot   bool // effective UID 0: set owners and create device nodes
	canMknod bool // false after mknod failed with EPERM
	buf      []byte

	dirs map[string]dirMeta // by host path

	// touched holds, for the layer being applied, the host path of every
	// entry it created and of each of their parent directories. Whiteouts
	// apply only to lower layers, so they leave these paths alone.
	touched map[string]bool

	stats unpackStats
}

// unpackImage applies the layers of img, in order, to the empty directory
// root.
func unpackImage(ctx context.Context, img v1.Image, root string, log *slog.Logger) (unpackStats, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return unpackStats{}, fmt.Errorf("read config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return unpackStats{}, fmt.Errorf("read layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return unpackStats{}, fmt.Errorf("%w: %d layers but %d diff IDs", ErrInvalid, len(layers), len(cfg.RootFS.DiffIDs))
	}

	u := &unpacker{
		root:     root,
		log:      log,
		isRoot:   os.Geteuid() == 0,
		canMknod: os.Geteuid() == 0,
		buf:      make([]byte, 128<<10),
		dirs:     map[string]dirMeta{},
	}
	for i, layer := range layers {
		if err := u.applyLayer(ctx, layer, cfg.RootFS.DiffIDs[i]); err != nil {
			return u.stats, fmt.Errorf("layer %d (diff ID %s): %w", i+1, cfg.RootFS.DiffIDs[i], err)
		}
		u.stats.layers++
	}
	return u.stats, u.finish()
}

// applyLayer extracts one layer and checks its uncompressed content against
// diffID.
func (u *unpacker) applyLayer(ctx context.Context, layer v1.Layer, diffID v1.Hash) error {
	rc, err := layer.Uncompressed()
	if err != nil {
		return fmt.Errorf("open layer: %w", err)
	}
	defer rc.Close()

	hasher := sha256.New()
	stream := io.TeeReader(rc, hasher)
	tr := tar.NewReader(stream)
	u.touched = map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if err := u.applyEntry(tr, hdr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		u.stats.entries++
	}

	// The tar reader stops at the end-of-archive marker; hash the padding
	// after it too.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if got := hex.EncodeToString(hasher.Sum(nil)); got != diffID.Hex {
		return fmt.Errorf("%w: layer content has digest sha256:%s, expected the diff ID", ErrInvalid, got)
	}
	return nil
}

// applyEntry applies one tar entry: a whiteout, an opaque marker, or a file
// of any type.
func (u *unpacker) applyEntry(r io.Reader, hdr *tar.Header) error {
	rel, err := cleanEntryName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(rel)
	switch {
	case base == opaqueMarker:
		return u.applyOpaque(dir)
	case strings.Contains("/"+rel, "/"+aufsMetaPrefix):
		u.log.Debug("skipped AUFS metadata entry", "name", hdr.Name)
		return nil
	case strings.HasPrefix(base, whiteoutPrefix):
		return u.applyWhiteout(dir, strings.TrimPrefix(base, whiteoutPrefix))
	case rel == ".":
		return u.applyRoot(hdr)
	}

	parent, err := u.resolveDir(dir, true)
	if err != nil {
		return err
	}
	target := filepath.Join(parent, base)
	if err := u.extract(r, hdr, target); err != nil {
		return err
	}
	u.touch(target)
	return nil
}

// cleanEntryName returns an entry name as a clean slash-separated path
// relative to the root ("." for the root itself). A leading "/" is dropped,
// and a name that climbs above the root with ".." is rejected.
func cleanEntryName(name string) (string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: entry %q leaves the root filesystem", ErrInvalid, name)
	}
	return rel, nil
}

// resolveDir returns the host path of the directory rel inside the tree,
// following every symlink along it inside the tree: an absolute target
// starts again at the root, and ".." stops at the root, as if the tree were
// chrooted. So no entry can reach outside the tree through a symlink that an
// earlier entry or layer created. With create set, missing directories are
// created; without it, a missing directory returns an error wrapping
// fs.ErrNotExist.
func (u *unpacker) resolveDir(rel string, create bool) (string, error) {
	var done []string // resolved components, each an existing directory
	pending := strings.Split(rel, "/")
	links := 0

	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}

		host := filepath.Join(u.root, filepath.Join(done...), c)
		fi, err := os.Lstat(host)
		switch {
		case errors.Is(err, fs.ErrNotExist) && create:
			if err := os.Mkdir(host, 0o755); err != nil {
				return "", err
			}
			// A directory without an entry of its own gets mode 0755
			// whatever the umask; an entry later in the layers overrides it.
			u.dirs[host] = dirMeta{mode: 0o755}
			done = append(done, c)
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			links++
			if links > maxSymlinks {
				return "", fmt.Errorf("resolve %q: %w", rel, unix.ELOOP)
			}
			target, err := os.Readlink(host)
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				done = done[:0]
			}
			pending = append(strings.Split(target, "/"), pending...)
		case fi.IsDir():
			done = append(done, c)
		default:
			return "", fmt.Errorf("%w: %q is not a directory", ErrInvalid, filepath.Join(done...)+"/"+c)
		}
	}
	return filepath.Join(u.root, filepath.Join(done...)), nil
}

// touch records target and its parents as created by the current layer.
func (u *unpacker) touch(target string) {
	for p := target; p != u.root && !u.touched[p]; p = filepath.Dir(p) {
		u.touched[p] = true
	}
}

// applyWhiteout deletes name from the directory dir, unless the current layer
// created it.
func (u *unpacker) applyWhiteout(dir, name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: invalid whiteout name", ErrInvalid)
	}
	parent, err := u.resolveDir(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}

	target := filepath.Join(parent, name)
	if u.touched[target] {
		return nil
	}
	return u.removeAll(target)
}

// applyOpaque deletes everything in dir that lower layers created, keeping
// what the current layer created there.
func (u *unpacker) applyOpaque(dir string) error {
	parent, err := u.resolveDir(dir, true)
	if err != nil {
		return err
	}
	u.touch(parent)
	return u.pruneLower(parent)
}

// pruneLower removes the entries below dir that the current layer did not
// touch, and descends into the directories it did.
func (u *unpacker) pruneLower(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		child := filepath.Join(dir, e.Name())
		switch {
		case !u.touched[child]:
			if err := u.removeAll(child); err != nil {
				return err
			}
		case e.IsDir():
			if err := u.pruneLower(child); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeAll deletes target and drops the recorded directory metadata below
// it, so finish does not apply it to whatever replaces target.
func (u *unpacker) removeAll(target string) error {
	if err := os.RemoveAll(target); err != nil {
		return err
	}
	prefix := target + string(filepath.Separator)
	for p := range u.dirs {
		if p == target || strings.HasPrefix(p, prefix) {
			delete(u.dirs, p)
		}
	}
	return nil
}

// applyRoot records the mode, owner and times of the root directory entry.
func (u *unpacker) applyRoot(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: the root entry is not a directory", ErrInvalid)
	}
	return u.setDirMeta(u.root, hdr)
}

// finish applies the directory modes and times, deepest directories first so
// that a parent's final mode cannot block access to its children.
func (u *unpacker) finish() error {
	if _, ok := u.dirs[u.root]; !ok {
		u.dirs[u.root] = dirMeta{mode: 0o755}
	}
	paths := make([]string, 0, len(u.dirs))
	for p := range u.dirs {
		paths = append(paths, p)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))

	for _, p := range paths {
		meta := u.dirs[p]
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			return fmt.Errorf("directory %s was replaced during the unpack without its metadata being dropped", p)
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, p, meta.mode, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
		if meta.mtime.IsZero() {
			continue
		}
		if err := setTimes(p, meta.atime, meta.mtime); err != nil {
			return err
		}
	}
	return nil
}
