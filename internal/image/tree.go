package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Entry describes one file of a tree, as ScanTree records it.
type Entry struct {
	Mode     fs.FileMode       // type and permission bits, with setuid, setgid and sticky
	UID, GID int               // numeric owner
	Size     int64             // content length of a regular file, else 0
	SHA256   string            // hex digest of a regular file's content
	Link     string            // symlink target
	HardLink string            // first path, in lexical order, of the same inode; "" for the first one and for files with one link
	Rdev     uint64            // device number of a device node
	ModTime  time.Time         // modification time; zero for directories
	Xattrs   map[string]string // extended attributes, nil when there are none
}

// Tree lists the files of a directory tree by slash-separated path relative
// to its root, "." being the root itself.
type Tree map[string]Entry

// ScanTree reads the tree under dir without following symlinks. Directory
// times are left out, because directories that an unpack creates implicitly
// (parents of entries with no entry of their own) take the time of the
// unpack.
func ScanTree(dir string) (Tree, error) {
	tree := Tree{}
	inodes := map[[2]uint64]string{} // (device, inode) -> first path

	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		e, err := scanEntry(p, rel, inodes)
		if err != nil {
			return err
		}
		tree[rel] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan tree %s: %w", dir, err)
	}
	return tree, nil
}

func scanEntry(p, rel string, inodes map[[2]uint64]string) (Entry, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return Entry{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	e := Entry{Mode: fi.Mode(), UID: int(st.Uid), GID: int(st.Gid)}
	if !fi.IsDir() {
		e.ModTime = fi.ModTime()
	}

	switch {
	case fi.Mode().IsRegular():
		e.Size = fi.Size()
		if e.SHA256, err = fileSHA256(p); err != nil {
			return Entry{}, err
		}
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := inodes[key]; ok {
			e.HardLink = first
		} else if st.Nlink > 1 {
			inodes[key] = rel
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		if e.Link, err = os.Readlink(p); err != nil {
			return Entry{}, err
		}
	case fi.Mode()&fs.ModeDevice != 0:
		e.Rdev = uint64(st.Rdev)
	}

	e.Xattrs, err = readXattrs(p)
	return e, err
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readXattrs returns the extended attributes of p, not following a symlink.
func readXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list extended attributes of %s: %w", p, err)
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("list extended attributes of %s: %w", p, err)
	}

	attrs := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("read extended attribute %s of %s: %w", name, p, err)
		}
		value := make([]byte, n)
		if _, err := unix.Lgetxattr(p, name, value); err != nil {
			return nil, fmt.Errorf("read extended attribute %s of %s: %w", name, p, err)
		}
		attrs[name] = string(value)
	}
	return attrs, nil
}

// String formats the entry on one line, attributes sorted by name.
func (e Entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode=%v owner=%d:%d", e.Mode, e.UID, e.GID)
	if e.Mode.IsRegular() {
		fmt.Fprintf(&b, " size=%d sha256=%s", e.Size, e.SHA256)
	}
	if e.Link != "" {
		fmt.Fprintf(&b, " link=%q", e.Link)
	}
	if e.HardLink != "" {
		fmt.Fprintf(&b, " hardlink=%q", e.HardLink)
	}
	if e.Rdev != 0 {
		fmt.Fprintf(&b, " rdev=%d:%d", unix.Major(e.Rdev), unix.Minor(e.Rdev))
	}
	if !e.ModTime.IsZero() {
		fmt.Fprintf(&b, " mtime=%s", e.ModTime.UTC().Format(time.RFC3339Nano))
	}
	names := make([]string, 0, len(e.Xattrs))
	for name := range e.Xattrs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, " xattr:%s=%q", name, e.Xattrs[name])
	}
	return b.String()
}

// Digest returns "sha256:<hex>" over the sorted listing of the tree, so two
// trees have one digest exactly when Diff finds no difference between them.
func (t Tree) Digest() string {
	h := sha256.New()
	for _, p := range t.paths() {
		fmt.Fprintf(h, "%q %s\n", p, t[p])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Diff lists the differences between t and other, one line per path, sorted
// by path. It returns nil when the trees are identical.
func (t Tree) Diff(other Tree) []string {
	var out []string
	for _, p := range t.paths() {
		o, ok := other[p]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: only in the first tree", p))
		case o.String() != t[p].String():
			out = append(out, fmt.Sprintf("%s: %s, then %s", p, t[p], o))
		}
	}
	for _, p := range other.paths() {
		if _, ok := t[p]; !ok {
			out = append(out, fmt.Sprintf("%s: only in the second tree", p))
		}
	}
	slices.Sort(out)
	return out
}

func (t Tree) paths() []string {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}
