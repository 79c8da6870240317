package proot

import (
	"errors"
	"io/fs"
	"path"
	"strings"
	"syscall"
)

// owner is the host user and group that a sandbox's commands run as.
type owner struct {
	uid, gid int
}

// own gives the existing components of the resolved writable path p, from
// its mount directory down, to the sandbox's user, so that files and
// directories the file API created belong to it as if a command had made
// them.
func (v *view) own(p string) error {
	if v.owner == nil {
		return nil
	}
	parts := strings.Split(relative(p), "/")
	for i := range parts {
		rel := path.Join(parts[:i+1]...)
		info, err := v.upperRoot.Lstat(rel)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile by a command
		}
		if err != nil {
			return err
		}
		if err := v.chown(rel, info); err != nil {
			return err
		}
	}
	return nil
}

// ownTree is own for p and for every entry below it.
func (v *view) ownTree(p string) error {
	if v.owner == nil {
		return nil
	}
	if err := v.own(p); err != nil {
		return err
	}
	return fs.WalkDir(v.upperRoot.FS(), relative(p), func(rel string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return v.chown(rel, info)
	})
}

// chown gives the entry rel of the writable tree, described by info, to
// the sandbox's user unless it has it already. A change of owner clears
// the setuid and setgid bits, so they are set again afterwards.
func (v *view) chown(rel string, info fs.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) == v.owner.uid && int(st.Gid) == v.owner.gid {
		return nil
	}
	if err := v.upperRoot.Lchown(rel, v.owner.uid, v.owner.gid); err != nil {
		return err
	}
	special := info.Mode() & (fs.ModeSetuid | fs.ModeSetgid)
	if special == 0 || info.Mode()&fs.ModeSymlink != 0 {
		return nil
	}
	return v.upperRoot.Chmod(rel, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}
