package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// xattrPrefix starts the PAX records that carry extended attributes.
const xattrPrefix = "SCHILY.xattr."

// extract creates the file of one tar entry at target, whose parent exists
// and is inside the tree. target itself is never followed if it is a
// symlink: an existing file there is replaced, except that an existing
// directory is kept when the entry is a directory.
func (u *unpacker) extract(r io.Reader, hdr *tar.Header, target string) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.extractDir(hdr, target)
	case tar.TypeReg, tar.TypeGNUSparse:
		return u.extractRegular(r, hdr, target)
	case tar.TypeSymlink:
		if err := u.replace(target); err != nil {
			return err
		}
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
		return u.setMeta(target, hdr, true)
	case tar.TypeLink:
		return u.extractHardLink(hdr, target)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.extractSpecial(hdr, target)
	case tar.TypeXGlobalHeader:
		return nil
	default:
		u.log.Debug("skipped tar entry of unsupported type", "name", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}
}

// replace removes whatever is at target, without following a symlink there.
func (u *unpacker) replace(target string) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return u.removeAll(target)
	}
	return os.Remove(target)
}

func (u *unpacker) extractDir(hdr *tar.Header, target string) error {
	fi, err := os.Lstat(target)
	if err == nil && !fi.IsDir() {
		if err := os.Remove(target); err != nil {
			return err
		}
		err = fs.ErrNotExist
	}
	if errors.Is(err, fs.ErrNotExist) {
		err = os.Mkdir(target, 0o755)
	}
	if err != nil {
		return err
	}
	return u.setDirMeta(target, hdr)
}

func (u *unpacker) extractRegular(r io.Reader, hdr *tar.Header, target string) error {
	if err := u.replace(target); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(f, r, u.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	return u.setMeta(target, hdr, false)
}

// extractHardLink links target to the file named by hdr.Linkname, which must
// already be in the tree. Its parents are resolved inside the tree like any
// entry name; the file itself is not followed if it is a symlink.
func (u *unpacker) extractHardLink(hdr *tar.Header, target string) error {
	rel, err := cleanEntryName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("%w: hard link target %q leaves the root filesystem", ErrInvalid, hdr.Linkname)
	}
	if rel == "." {
		return fmt.Errorf("%w: hard link to the root directory", ErrInvalid)
	}
	dir, base := path.Split(rel)
	parent, err := u.resolveDir(dir, false)
	if err != nil {
		return fmt.Errorf("%w: hard link target %q: %v", ErrInvalid, hdr.Linkname, err)
	}
	source := filepath.Join(parent, base)
	if source == target {
		return nil
	}
	if _, err := os.Lstat(source); err != nil {
		return fmt.Errorf("%w: hard link target %q is not in the tree", ErrInvalid, hdr.Linkname)
	}

	if err := u.replace(target); err != nil {
		return err
	}
	return os.Link(source, target)
}

// extractSpecial creates a device node or FIFO. Device nodes need root (and
// CAP_MKNOD); without it they are skipped, because a sandbox runtime
// provides /dev anyway.
func (u *unpacker) extractSpecial(hdr *tar.Header, target string) error {
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	if mode != unix.S_IFIFO && !u.canMknod {
		u.skipDevice(hdr, nil)
		return nil
	}

	if err := u.replace(target); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	err := unix.Mknod(target, mode|0o600, int(dev))
	if mode != unix.S_IFIFO && errors.Is(err, unix.EPERM) {
		u.canMknod = false
		u.skipDevice(hdr, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mknod %s: %w", target, err)
	}
	return u.setMeta(target, hdr, false)
}

func (u *unpacker) skipDevice(hdr *tar.Header, err error) {
	u.stats.skippedDevices++
	u.log.Debug("skipped device node: creating one needs root", "name", hdr.Name, "error", err)
}

// setMeta sets owner, mode, extended attributes and times of a non-directory,
// in that order: chown clears the setuid and setgid bits and file
// capabilities, so those must come after it.
func (u *unpacker) setMeta(target string, hdr *tar.Header, symlink bool) error {
	if err := u.chown(target, hdr); err != nil {
		return err
	}
	if !symlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, target, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod %s: %w", target, err)
		}
	}
	if err := u.setXattrs(target, hdr); err != nil {
		return err
	}
	return setTimes(target, hdr.AccessTime, hdr.ModTime)
}

// setDirMeta sets the owner and extended attributes of a directory now and
// records its mode and times for finish.
func (u *unpacker) setDirMeta(target string, hdr *tar.Header) error {
	if err := u.chown(target, hdr); err != nil {
		return err
	}
	if err := u.setXattrs(target, hdr); err != nil {
		return err
	}
	u.dirs[target] = dirMeta{mode: uint32(hdr.Mode & 0o7777), atime: hdr.AccessTime, mtime: hdr.ModTime}
	return nil
}

// chown sets the numeric owner when running as root. EPERM and EINVAL, which
// a user namespace gives for unmapped IDs, leave the unpacking user as owner.
func (u *unpacker) chown(target string, hdr *tar.Header) error {
	if !u.isRoot {
		return nil
	}
	err := os.Lchown(target, hdr.Uid, hdr.Gid)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		u.log.Debug("kept unpacking user as owner", "name", hdr.Name, "uid", hdr.Uid, "gid", hdr.Gid, "error", err)
		return nil
	}
	return err
}

// setXattrs sets the extended attributes of the PAX records
// SCHILY.xattr.NAME. Attributes the filesystem or the user may not set
// (EPERM, ENOTSUP) are skipped, such as trusted.* without root or user.* on
// a symlink.
func (u *unpacker) setXattrs(target string, hdr *tar.Header) error {
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, xattrPrefix)
		if !ok {
			continue
		}
		err := unix.Lsetxattr(target, attr, []byte(value), 0)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
			u.log.Debug("skipped extended attribute", "name", hdr.Name, "attribute", attr, "error", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("set extended attribute %s on %s: %w", attr, target, err)
		}
	}
	return nil
}

// setTimes sets the access and modification times of path without following
// a symlink there. A zero access time takes the modification time, and a zero
// modification time leaves both unchanged.
func setTimes(path string, atime, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	if atime.IsZero() {
		atime = mtime
	}
	times := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}

// removeTree deletes a tree, first making its directories writable when an
// unprivileged user cannot otherwise delete their entries.
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
