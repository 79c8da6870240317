package native

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupControllers are the controllers a sandbox's cgroup uses: memory
// for the memory limit and OOM counting, pids for the process limit, cpu
// for the CPU quota and cpuacct (cgroup v1) for CPU usage.
var cgroupControllers = []string{"memory", "pids", "cpu", "cpuacct"}

// unifiedKey is the key of the cgroup v2 group in cgroupPaths.Dirs.
const unifiedKey = "unified"

// cgroupHost describes the cgroup file systems of this host.
type cgroupHost struct {
	// v1 maps each controller of cgroupControllers that has a cgroup v1
	// hierarchy to it. Empty on a cgroup v2 host.
	v1 map[string]v1Hierarchy

	// v2 is the mount point of the cgroup v2 hierarchy when it carries
	// the controllers (no v1 memory hierarchy), empty otherwise.
	v2 string
}

// v1Hierarchy is one mounted cgroup v1 hierarchy.
type v1Hierarchy struct {
	Mount   string `json:"mount"`   // mount point, such as /sys/fs/cgroup/memory
	Options string `json:"options"` // its controllers, as the mount option, such as "cpu,cpuacct"
}

// detectCgroups reads the cgroup mounts from /proc/self/mountinfo. A host
// with a cgroup v1 memory hierarchy uses cgroup v1 for every controller
// that has one (a hybrid host's v2 hierarchy carries no controllers);
// otherwise the cgroup v2 hierarchy is used.
func detectCgroups() (*cgroupHost, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()

	host := &cgroupHost{v1: map[string]v1Hierarchy{}}
	var v2 string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		mount, fsType, options, ok := parseMountInfo(scanner.Text())
		if !ok {
			continue
		}
		switch fsType {
		case "cgroup2":
			if v2 == "" {
				v2 = mount
			}
		case "cgroup":
			var controllers []string
			for opt := range strings.SplitSeq(options, ",") {
				if slices.Contains(cgroupControllers, opt) || opt == "net_cls" || opt == "net_prio" {
					controllers = append(controllers, opt)
				}
			}
			for _, c := range controllers {
				if slices.Contains(cgroupControllers, c) {
					host.v1[c] = v1Hierarchy{Mount: mount, Options: strings.Join(controllers, ",")}
				}
			}
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if _, ok := host.v1["memory"]; !ok {
		host.v1 = map[string]v1Hierarchy{}
		host.v2 = v2
	}
	if len(host.v1) == 0 && host.v2 == "" {
		return nil, errors.New("no cgroup v1 memory hierarchy and no cgroup v2 hierarchy is mounted")
	}
	return host, nil
}

// parseMountInfo returns the mount point, file system type and super
// block options of one line of /proc/self/mountinfo.
func parseMountInfo(line string) (mount, fsType, options string, ok bool) {
	before, after, found := strings.Cut(line, " - ")
	if !found {
		return "", "", "", false
	}
	fields := strings.Fields(before)
	tail := strings.Fields(after)
	if len(fields) < 5 || len(tail) < 3 {
		return "", "", "", false
	}
	return unescapeMountPath(fields[4]), tail[0], tail[2], true
}

// unescapeMountPath decodes the octal escapes (\040 for a space) that
// mountinfo uses in paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupPaths are the cgroup directories of one sandbox, recorded in its
// state file so that Destroy finds them after a restart.
type cgroupPaths struct {
	// Version is 1 or 2.
	Version int `json:"version"`

	// Dirs maps each controller (cgroup v1) or unifiedKey (cgroup v2) to
	// the sandbox's directory. Controllers mounted together share one.
	Dirs map[string]string `json:"dirs"`

	// Mounts are the cgroup v1 hierarchies to mount read-only inside the
	// sandbox, so that the agent reads its OOM counter there.
	Mounts []v1Hierarchy `json:"mounts,omitempty"`
}

// cgroupLimits are the limits of one sandbox. Zero means no limit.
type cgroupLimits struct {
	memoryBytes int64
	pids        int
	cpus        int
}

// paths returns the directories of the sandbox cgroup parent/id.
func (h *cgroupHost) paths(parent, id string) cgroupPaths {
	if h.v2 != "" {
		return cgroupPaths{Version: 2, Dirs: map[string]string{unifiedKey: filepath.Join(h.v2, parent, id)}}
	}
	p := cgroupPaths{Version: 1, Dirs: map[string]string{}}
	seen := map[string]bool{}
	for _, c := range cgroupControllers {
		hier, ok := h.v1[c]
		if !ok {
			continue
		}
		p.Dirs[c] = filepath.Join(hier.Mount, parent, id)
		if !seen[hier.Mount] {
			seen[hier.Mount] = true
			p.Mounts = append(p.Mounts, hier)
		}
	}
	return p
}

// parentDirs returns the directory of parent in each hierarchy.
func (h *cgroupHost) parentDirs(parent string) []string {
	if h.v2 != "" {
		return []string{filepath.Join(h.v2, parent)}
	}
	var dirs []string
	for _, c := range cgroupControllers {
		if hier, ok := h.v1[c]; ok && !slices.Contains(dirs, filepath.Join(hier.Mount, parent)) {
			dirs = append(dirs, filepath.Join(hier.Mount, parent))
		}
	}
	return dirs
}

// create makes the sandbox's cgroups and applies limits. On failure it
// removes what it made.
func (h *cgroupHost) create(parent, id string, limits cgroupLimits) (p cgroupPaths, err error) {
	p = h.paths(parent, id)
	if p.Version == 2 {
		if err := enableV2Controllers(h.v2, parent); err != nil {
			return p, err
		}
	}
	defer func() {
		if err != nil {
			_ = p.remove(context.Background())
		}
	}()
	for _, dir := range p.uniqueDirs() {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return p, fmt.Errorf("create cgroup: %w", err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return p, fmt.Errorf("create cgroup: %w", err)
		}
	}
	if err := p.setLimits(limits); err != nil {
		return p, fmt.Errorf("set cgroup limits: %w", err)
	}
	return p, nil
}

// enableV2Controllers enables the memory, pids and cpu controllers for the
// children of every group from the root down to parent, since a cgroup v2
// group can use only the controllers its parent enables.
func enableV2Controllers(root, parent string) error {
	available, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read cgroup v2 controllers: %w", err)
	}
	var enable []string
	for _, c := range []string{"memory", "pids", "cpu"} {
		if slices.Contains(strings.Fields(string(available)), c) {
			enable = append(enable, "+"+c)
		}
	}
	dir := root
	for _, elem := range append([]string{""}, strings.Split(parent, "/")...) {
		dir = filepath.Join(dir, elem)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if err := writeCgroupFile(dir, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
			return fmt.Errorf("enable cgroup controllers in %s: %w", dir, err)
		}
	}
	return nil
}

// uniqueDirs returns the sandbox's directories without repeats.
func (p cgroupPaths) uniqueDirs() []string {
	var dirs []string
	for _, dir := range p.Dirs {
		if !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// dir returns the directory of controller, or "" when the sandbox has no
// group for it.
func (p cgroupPaths) dir(controller string) string {
	if p.Version == 2 {
		return p.Dirs[unifiedKey]
	}
	return p.Dirs[controller]
}

// setLimits writes the memory, swap, pids and CPU limits. With cgroup v1
// the memory+swap limit equals the memory limit where the kernel accounts
// swap, and with cgroup v2 swap is off, so a sandbox cannot swap past its
// memory limit.
func (p cgroupPaths) setLimits(l cgroupLimits) error {
	const cpuPeriod = 100000 // microseconds
	if p.Version == 2 {
		dir := p.Dirs[unifiedKey]
		if l.memoryBytes > 0 {
			if err := writeCgroupFile(dir, "memory.max", strconv.FormatInt(l.memoryBytes, 10)); err != nil {
				return err
			}
			if err := writeOptional(dir, "memory.swap.max", "0"); err != nil {
				return err
			}
		}
		if l.pids > 0 {
			if err := writeCgroupFile(dir, "pids.max", strconv.Itoa(l.pids)); err != nil {
				return err
			}
		}
		if l.cpus > 0 {
			return writeCgroupFile(dir, "cpu.max", fmt.Sprintf("%d %d", l.cpus*cpuPeriod, cpuPeriod))
		}
		return nil
	}

	if dir := p.Dirs["memory"]; dir != "" && l.memoryBytes > 0 {
		if err := writeCgroupFile(dir, "memory.limit_in_bytes", strconv.FormatInt(l.memoryBytes, 10)); err != nil {
			return err
		}
		if err := writeOptional(dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(l.memoryBytes, 10)); err != nil {
			return err
		}
	}
	if dir := p.Dirs["pids"]; dir != "" && l.pids > 0 {
		if err := writeCgroupFile(dir, "pids.max", strconv.Itoa(l.pids)); err != nil {
			return err
		}
	}
	if dir := p.Dirs["cpu"]; dir != "" && l.cpus > 0 {
		if err := writeCgroupFile(dir, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		return writeCgroupFile(dir, "cpu.cfs_quota_us", strconv.Itoa(l.cpus*cpuPeriod))
	}
	return nil
}

// missingLimit reports which requested limit has no controller on this
// host, or "" when every one has.
func (p cgroupPaths) missingLimit(l cgroupLimits) string {
	switch {
	case l.memoryBytes > 0 && p.dir("memory") == "":
		return "memory"
	case l.pids > 0 && p.dir("pids") == "":
		return "pids"
	case l.cpus > 0 && p.dir("cpu") == "":
		return "cpu"
	}
	return ""
}

// addProcess moves pid into every group of the sandbox.
func (p cgroupPaths) addProcess(pid int) error {
	for _, dir := range p.uniqueDirs() {
		if err := writeCgroupFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move process %d into cgroup: %w", pid, err)
		}
	}
	return nil
}

// remove kills every process left in the sandbox's groups and removes
// them, retrying while the kernel still counts exiting processes, until
// ctx is done. Groups that do not exist are skipped.
func (p cgroupPaths) remove(ctx context.Context) error {
	var errs []error
	for _, dir := range p.uniqueDirs() {
		if err := removeCgroup(ctx, dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeCgroup(ctx context.Context, dir string) error {
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		killCgroupProcesses(dir)
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove cgroup %s: processes still running: %w", dir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// killCgroupProcesses sends SIGKILL to every process in the group dir.
func killCgroupProcesses(dir string) {
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, field := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(field); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

func writeCgroupFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, filepath.Join(dir, name), err)
	}
	return nil
}

// writeOptional writes a control file that kernels may lack, such as
// memory.memsw.limit_in_bytes without swap accounting.
func writeOptional(dir, name, value string) error {
	if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return writeCgroupFile(dir, name, value)
}

// readCgroupInt reads a control file holding one integer. "max" reads as
// math.MaxInt64.
func readCgroupInt(dir, name string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return math.MaxInt64, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// readCgroupKey reads the value of key from a flat keyed file such as
// cpu.stat.
func readCgroupKey(dir, name, key string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", filepath.Join(dir, name), key)
}
