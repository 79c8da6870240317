package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Free space thresholds of the data directory check. Sandboxes of the
// native and PRoot providers and unpacked images live there.
const (
	diskFailBytes = 100 << 20 // below this, spawns are likely to fail
	diskWarnBytes = 1 << 30
)

// platformChecks returns the checks of Linux host features.
func platformChecks() []hostCheck {
	return []hostCheck{
		{name: "cgroups", needs: []string{"native"}, run: checkCgroups},
		{name: "namespaces", needs: []string{"native"}, run: checkNamespaces},
		{name: "overlayfs", needs: []string{"native"}, run: checkOverlay},
		{name: "kvm", needs: []string{"microvm"}, run: checkKVM},
		{name: "disk-space", needs: []string{allProviders}, run: checkDiskSpace},
	}
}

// requiredControllers are the cgroup controllers that enforce the memory,
// CPU and process limits of native sandboxes.
var requiredControllers = []string{"cpu", "memory", "pids"}

func checkCgroups(context.Context, *doctorEnv) checkResult {
	if data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		missing := missingControllers(strings.Fields(string(data)))
		if len(missing) > 0 {
			return checkFail("enable them for child groups: echo '+cpu +memory +pids' > /sys/fs/cgroup/cgroup.subtree_control, "+
				"or boot with cgroup_enable=memory",
				"cgroup v2 lacks the controllers %s", strings.Join(missing, ", "))
		}
		return checkOK("cgroup v2 with %s", strings.Join(requiredControllers, ", "))
	}

	enabled, err := v1Controllers()
	if err != nil {
		return checkFail("mount the cgroup file system: mount -t cgroup2 none /sys/fs/cgroup",
			"no cgroup file system found: %v", err)
	}
	if missing := missingControllers(enabled); len(missing) > 0 {
		return checkFail("enable the controllers on the kernel command line, such as cgroup_enable=memory",
			"cgroup v1 lacks the controllers %s", strings.Join(missing, ", "))
	}
	return checkOK("cgroup v1 with %s", strings.Join(requiredControllers, ", "))
}

// v1Controllers returns the enabled controllers listed in /proc/cgroups.
func v1Controllers() ([]string, error) {
	data, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return nil, err
	}
	var enabled []string
	for line := range strings.SplitSeq(string(data), "\n") {
		// #subsys_name hierarchy num_cgroups enabled
		fields := strings.Fields(line)
		if len(fields) == 4 && !strings.HasPrefix(fields[0], "#") && fields[3] == "1" {
			enabled = append(enabled, fields[0])
		}
	}
	return enabled, nil
}

func missingControllers(have []string) []string {
	var missing []string
	for _, c := range requiredControllers {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	return missing
}

// namespaceKinds are the namespaces the check tries to create. Native
// sandboxes need mount, pid and net; the user namespace is optional.
var namespaceKinds = []struct {
	name     string
	flag     uintptr
	required bool
}{
	{"user", syscall.CLONE_NEWUSER, false},
	{"mount", syscall.CLONE_NEWNS, true},
	{"pid", syscall.CLONE_NEWPID, true},
	{"net", syscall.CLONE_NEWNET, true},
}

func checkNamespaces(ctx context.Context, _ *doctorEnv) checkResult {
	probe, err := exec.LookPath("true")
	if err != nil {
		return checkWarn("install coreutils", "not checked: the true command is not in PATH")
	}

	var created, failedRequired, failedOptional []string
	for _, ns := range namespaceKinds {
		if err := tryNamespace(ctx, probe, ns.flag); err != nil {
			if ns.required {
				failedRequired = append(failedRequired, fmt.Sprintf("%s (%v)", ns.name, err))
			} else {
				failedOptional = append(failedOptional, fmt.Sprintf("%s (%v)", ns.name, err))
			}
			continue
		}
		created = append(created, ns.name)
	}

	const fix = "run stacyvm as root; in a container, start it with --privileged; " +
		"for user namespaces also check sysctl user.max_user_namespaces"
	switch {
	case len(failedRequired) > 0:
		return checkFail(fix, "cannot create namespaces: %s", strings.Join(append(failedRequired, failedOptional...), ", "))
	case len(failedOptional) > 0:
		return checkWarn(fix, "created %s; cannot create %s", strings.Join(created, ", "), strings.Join(failedOptional, ", "))
	}
	return checkOK("created %s", strings.Join(created, ", "))
}

// tryNamespace runs probe in a new namespace of the kind flag. Without
// root, the namespace is created inside a new user namespace that maps
// the current user to root, as unprivileged users may do.
func tryNamespace(ctx context.Context, probe string, flag uintptr) error {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, probe)
	attr := &syscall.SysProcAttr{Cloneflags: flag}
	if os.Geteuid() != 0 || flag == syscall.CLONE_NEWUSER {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	cmd.SysProcAttr = attr
	return cmd.Run()
}

func checkOverlay(context.Context, *doctorEnv) checkResult {
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return checkFail("mount /proc", "cannot read /proc/filesystems: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[len(fields)-1] == "overlay" {
			return checkOK("the kernel supports overlay")
		}
	}
	return checkFail("load the module: modprobe overlay", "the kernel does not list overlay in /proc/filesystems")
}

func checkKVM(context.Context, *doctorEnv) checkResult {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		fix := "enable virtualization in the firmware (or nested virtualization in the VM) and load kvm_intel or kvm_amd"
		if errors.Is(err, os.ErrPermission) {
			fix = "run stacyvm as root or add its user to the kvm group"
		}
		return checkWarn(fix, "/dev/kvm is not usable: %v; only microVM providers need it", err)
	}
	f.Close()
	return checkOK("/dev/kvm is readable and writable")
}

func checkDiskSpace(_ context.Context, env *doctorEnv) checkResult {
	dir := env.cfg.DataDir
	if dir == "" {
		return checkWarn("fix the config check first", "not checked: the data directory is unknown")
	}
	existing := nearestExisting(dir)

	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		return checkFail("create the data directory or set data_dir to a writable one", "cannot read free space of %s: %v", existing, err)
	}
	free := uint64(st.Bavail) * uint64(st.Bsize)
	switch {
	case free < diskFailBytes:
		return checkFail("free space there or set data_dir to another file system",
			"%s free in %s", formatBytes(free), existing)
	case free < diskWarnBytes:
		return checkWarn("free space there or set data_dir to another file system",
			"only %s free in %s", formatBytes(free), existing)
	}
	return checkOK("%s free in %s", formatBytes(free), existing)
}

// nearestExisting returns dir, or its closest ancestor that exists, since
// serve creates the data directory at its first start.
func nearestExisting(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// formatBytes formats n in binary units with one decimal.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value, suffix := float64(n)/unit, "KiB"
	for _, next := range []string{"MiB", "GiB", "TiB"} {
		if value < unit {
			break
		}
		value, suffix = value/unit, next
	}
	return fmt.Sprintf("%.1f %s", value, suffix)
}
