package native

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// procReadOnly are the parts of /proc through which root could change
// the host's kernel settings (sysctls, magic SysRq, interrupts); they are
// mounted read-only.
var procReadOnly = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}

// procMasked are files and directories of /proc and /sys that describe the
// host's kernel and hardware in detail (kernel memory, keyrings, timers,
// firmware); /dev/null or an empty read-only tmpfs hides them.
var procMasked = []string{
	"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
	"/proc/acpi", "/proc/scsi", "/sys/firmware",
}

// mountSystem mounts /proc for the sandbox's PID namespace, a minimal
// /dev, and /sys read-only with the sandbox's own cgroups under
// /sys/fs/cgroup.
func mountSystem(cfg initConfig) error {
	if cfg.Rootless {
		// planMounts made /proc and /sys, and a rootless sandbox has no
		// cgroups.
		if err := mountDev(); err != nil {
			return fmt.Errorf("mount /dev: %w", err)
		}
		return nil
	}
	if err := unix.Mount("proc", "/proc", "proc", noExecFlags, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := mountDev(); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", noExecFlags|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	if err := mountCgroups(cfg.Cgroups); err != nil {
		return fmt.Errorf("mount /sys/fs/cgroup: %w", err)
	}
	return nil
}

// mountDev mounts a tmpfs at /dev with the usual symlinks, a private
// devpts instance and /dev/shm. The device nodes are attached later from
// the host. The tmpfs itself has nodev, so a device node created in it
// could not be opened; the attached nodes are mounts of their own.
func mountDev() error {
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", noExecFlags, "mode=0755,size=64k"); err != nil {
		return err
	}
	links := map[string]string{
		"/dev/fd":     "/proc/self/fd",
		"/dev/stdin":  "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1",
		"/dev/stderr": "/proc/self/fd/2",
		"/dev/ptmx":   "pts/ptmx",
	}
	for name, target := range links {
		if err := os.Symlink(target, name); err != nil {
			return err
		}
	}
	for _, dir := range []string{"/dev/pts", "/dev/shm"} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return err
	}
	return unix.Mount("shm", "/dev/shm", "tmpfs", noExecFlags, "mode=1777,size=65536k")
}

// mountCgroups mounts the sandbox's cgroups read-only at /sys/fs/cgroup.
// Inside the cgroup namespace the sandbox's own group is the root of each
// hierarchy, so the agent finds its OOM counter at
// /sys/fs/cgroup/memory.events (cgroup v2) or
// /sys/fs/cgroup/memory/memory.oom_control (cgroup v1).
func mountCgroups(p cgroupPaths) error {
	const flags = noExecFlags | unix.MS_RDONLY
	switch p.Version {
	case 2:
		return unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", flags, "")
	case 1:
	default:
		return nil
	}

	if err := unix.Mount("tmpfs", "/sys/fs/cgroup", "tmpfs", noExecFlags, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, hier := range p.Mounts {
		name := filepath.Base(hier.Mount)
		target := filepath.Join("/sys/fs/cgroup", name)
		if err := os.Mkdir(target, 0o555); err != nil {
			return err
		}
		if err := unix.Mount("cgroup", target, "cgroup", flags, hier.Options); err != nil {
			return fmt.Errorf("mount cgroup %s: %w", hier.Options, err)
		}
		// Hierarchies with several controllers get a symlink per
		// controller, as hosts have cpu -> cpu,cpuacct.
		for c := range strings.SplitSeq(hier.Options, ",") {
			if c != name {
				if err := os.Symlink(name, filepath.Join("/sys/fs/cgroup", c)); err != nil && !errors.Is(err, os.ErrExist) {
					return err
				}
			}
		}
	}
	return unix.Mount("", "/sys/fs/cgroup", "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
}

// protectProc makes procReadOnly read-only and hides procMasked. It runs
// after /dev/null is attached.
func protectProc() error {
	for _, path := range procReadOnly {
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", path, err)
		}
		if err := unix.Mount("", path, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|noExecFlags, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", path, err)
		}
	}
	for _, path := range procMasked {
		info, err := os.Lstat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return err
		case info.IsDir():
			err = unix.Mount("tmpfs", path, "tmpfs", noExecFlags|unix.MS_RDONLY, "size=4k")
		default:
			err = unix.Mount("/dev/null", path, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("hide %s: %w", path, err)
		}
	}
	return nil
}
