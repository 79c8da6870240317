package native

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The root file system is built in three phases by the setup step, in
// the sandbox's private mount namespace, so nothing is mounted on the host
// and everything is gone when the sandbox's last process exits:
//
//  1. With host paths visible: mount the root (an overlay of the image, or
//     a tmpfs for the host view) and clone every host tree the sandbox
//     needs (devices, the run directory, the agent, host directories) into
//     detached mounts with open_tree(2).
//  2. pivot_root(2) into the new root and detach the old one.
//  3. Inside the new root, where every path, symlinks included, resolves
//     inside the sandbox: mount /proc, /dev, /sys and attach the detached
//     mounts with move_mount(2).
//
// Because no path inside the image is resolved while host paths are
// visible, a symlink in an image cannot make the setup step create or
// mount anything on the host.

// hostViewDirs are the host directories mounted read-only in a host view
// sandbox; a symlink among them (such as /bin -> usr/bin) is copied as a
// symlink.
var hostViewDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// hostViewEtc are the entries of the host's /etc mounted read-only in a
// host view sandbox: users and groups, the dynamic linker's cache, time
// zone, TLS certificates and shell startup files. Missing ones are
// skipped.
var hostViewEtc = []string{
	"passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
	"localtime", "timezone", "alternatives", "ssl", "ca-certificates", "ca-certificates.conf",
	"os-release", "debian_version", "protocols", "services", "mime.types", "profile",
	"profile.d", "bash.bashrc", "inputrc", "terminfo",
}

// privateDirs are the writable directories of a host view sandbox, each a
// per-sandbox host directory; tmp is world-writable with the sticky bit.
var privateDirs = []string{"workspace", "tmp", "home", "root"}

// devices are the device nodes bind-mounted from the host into /dev.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// Mount flags of special file systems that hold no programs.
const noExecFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// detached is a host tree cloned by open_tree(2), to be attached inside
// the sandbox.
type detached struct {
	fd     int
	target string // path inside the sandbox
	dir    bool   // the tree is a directory, else a file
}

// rootPlan lists what phase 3 attaches: detached mounts, and symlinks
// copied from the host for a host view sandbox.
type rootPlan struct {
	mounts   []detached
	symlinks map[string]string // path inside the sandbox -> link target
}

// buildRoot assembles the sandbox's root file system at cfg.Root and
// makes it the root of the setup step.
func buildRoot(cfg initConfig) error {
	if err := mountRoot(cfg); err != nil {
		return err
	}
	plan, err := planMounts(cfg)
	defer plan.close()
	if err != nil {
		return err
	}
	if err := switchRoot(cfg.Root); err != nil {
		return err
	}

	hostView := cfg.Lower == ""
	if err := claimMountPoints(); err != nil {
		return err
	}
	if err := mountSystem(cfg); err != nil {
		return err
	}
	if err := plan.attach(); err != nil {
		return err
	}
	if err := protectProc(); err != nil {
		return err
	}
	if hostView {
		return finishHostView(cfg)
	}
	return makeSandboxDirs()
}

// mountRoot mounts the root: the image tree under a per-sandbox writable
// layer, or an empty tmpfs for the host view. When the host file system
// of the sandbox directory cannot hold an overlay's upper layer (such as
// an overlay or another tmpfs-backed root), the layer falls back to a
// tmpfs inside the sandbox's mount namespace.
func mountRoot(cfg initConfig) error {
	if cfg.Lower == "" {
		return unix.Mount("tmpfs", cfg.Root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=4m")
	}
	overlayErr := mountOverlay(cfg.Lower, cfg.Upper, cfg.Work, cfg.Root)
	if overlayErr == nil || !errors.Is(overlayErr, unix.EINVAL) {
		return overlayErr
	}

	layer := filepath.Dir(cfg.Upper)
	if err := unix.Mount("tmpfs", layer, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("%w; a tmpfs for the upper layer failed too: %w", overlayErr, err)
	}
	for _, dir := range []string{cfg.Upper, cfg.Work} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	return mountOverlay(cfg.Lower, cfg.Upper, cfg.Work, cfg.Root)
}

// mountOverlay mounts the overlay, first with the volatile option (Linux
// 5.10), which skips syncs of the upper layer because a sandbox does not
// outlive a host crash anyway.
func mountOverlay(lower, upper, work, target string) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts+",volatile"); err == nil {
		return nil
	}
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount overlay of %s: %w", lower, err)
	}
	return nil
}

// planMounts clones the host trees the sandbox needs, in the order they
// are attached.
func planMounts(cfg initConfig) (*rootPlan, error) {
	plan := &rootPlan{symlinks: map[string]string{}}
	const (
		readOnly = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
		writable = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	)

	if cfg.Rootless {
		// In a user namespace the kernel mounts a new proc or sysfs only
		// while the namespace also holds a fully visible one, so these are
		// created before pivot_root detaches the host's.
		if err := plan.create("proc", "/proc", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return plan, err
		}
		if err := plan.create("sysfs", "/sys", readOnly|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return plan, err
		}
	}
	if err := plan.clone(cfg.Run, "/run/stacyvm", writable|unix.MOUNT_ATTR_NOEXEC, false); err != nil {
		return plan, err
	}
	if err := plan.clone(cfg.Agent, agentMount, readOnly, false); err != nil {
		return plan, err
	}
	for _, name := range devices {
		if err := plan.clone("/dev/"+name, "/dev/"+name, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, false); err != nil {
			return plan, err
		}
	}
	if cfg.Lower != "" {
		return plan, nil
	}

	for _, dir := range hostViewDirs {
		if err := plan.cloneIfPresent(dir, dir, readOnly); err != nil {
			return plan, err
		}
	}
	for _, name := range hostViewEtc {
		if err := plan.cloneIfPresent("/etc/"+name, "/etc/"+name, readOnly); err != nil {
			return plan, err
		}
	}
	for _, name := range privateDirs {
		if err := plan.clone(filepath.Join(cfg.Private, name), "/"+name, writable, false); err != nil {
			return plan, err
		}
	}
	return plan, nil
}

// cloneIfPresent clones the host path src, records it as a symlink when it
// is one, and skips it when it does not exist.
func (p *rootPlan) cloneIfPresent(src, target string, attrs uint64) error {
	info, err := os.Lstat(src)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case info.Mode()&os.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		p.symlinks[target] = link
		return nil
	}
	return p.clone(src, target, attrs, info.IsDir())
}

// clone makes a detached copy of the mount tree at src with the mount
// attributes attrs, recursively when recursive is set.
func (p *rootPlan) clone(src, target string, attrs uint64, recursive bool) error {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	setFlags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
		setFlags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		return fmt.Errorf("clone mount of %s: %w", src, err)
	}
	p.mounts = append(p.mounts, detached{fd: fd, target: target})
	if err := unix.MountSetattr(fd, "", setFlags, &unix.MountAttr{Attr_set: attrs}); err != nil {
		return fmt.Errorf("set attributes of the mount of %s: %w", src, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	p.mounts[len(p.mounts)-1].dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	return nil
}

// create makes a detached mount of a new file system of type fsType,
// such as proc, with the mount attributes attrs. Proc and sysfs take the
// PID and network namespace of the caller, so of the sandbox.
func (p *rootPlan) create(fsType, target string, attrs int) error {
	fsfd, err := unix.Fsopen(fsType, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open file system %s: %w", fsType, err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create file system %s: %w", fsType, err)
	}
	fd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("mount file system %s: %w", fsType, err)
	}
	p.mounts = append(p.mounts, detached{fd: fd, target: target, dir: true})
	return nil
}

func (p *rootPlan) close() {
	if p == nil {
		return
	}
	for _, m := range p.mounts {
		_ = unix.Close(m.fd)
	}
	p.mounts = nil
}

// attach creates the symlinks and the mount points of the detached mounts
// and moves the mounts there. It runs inside the new root.
func (p *rootPlan) attach() error {
	for target, link := range p.symlinks {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil {
			return err
		}
	}
	for _, m := range p.mounts {
		if err := makeMountPoint(m.target, m.dir); err != nil {
			return err
		}
		if err := unix.MoveMount(m.fd, "", unix.AT_FDCWD, m.target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attach mount at %s: %w", m.target, err)
		}
	}
	return nil
}

// makeMountPoint creates an empty directory or file at target, with its
// parents, unless something of that kind is there already.
func makeMountPoint(target string, dir bool) error {
	if dir {
		return os.MkdirAll(target, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// switchRoot makes root the root directory with pivot_root(2) and detaches
// the old root, so no host path stays reachable.
func switchRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	// pivot_root with the same new and old root stacks the old root on top
	// of the new one at "/". Detaching it then leaves the new root in place.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

// claimMountPoints creates the directories the provider mounts on. An
// image's entry at one of these paths that is not a directory, such as a
// symlink, is replaced so that every mount lands where it is meant to. The
// change goes to the sandbox's writable layer.
func claimMountPoints() error {
	for _, dir := range []string{"/proc", "/dev", "/sys", "/run", "/run/stacyvm", "/tmp", "/workspace"} {
		info, err := os.Lstat(dir)
		if err == nil && info.IsDir() {
			continue
		}
		if err == nil {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// makeSandboxDirs gives an image sandbox the directories every sandbox
// has, with the usual modes.
func makeSandboxDirs() error {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"/workspace", 0o755}, {"/tmp", os.ModeSticky | 0o777}, {"/home", 0o755}, {"/root", 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return err
		}
		if d.path == "/tmp" {
			if err := os.Chmod(d.path, d.mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// finishHostView writes the host view's own /etc files and makes its root
// tmpfs read-only.
func finishHostView(cfg initConfig) error {
	files := map[string]string{
		"/etc/hostname": cfg.Hostname + "\n",
		"/etc/hosts":    "127.0.0.1\tlocalhost " + cfg.Hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll("/var", 0o755); err != nil {
		return err
	}
	for target, link := range map[string]string{"/etc/mtab": "/proc/self/mounts", "/var/tmp": "/tmp"} {
		if err := os.Symlink(link, target); err != nil {
			return err
		}
	}
	return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}
