package docker

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// hostCgroupRoot is the mount point of the host's cgroup file systems.
const hostCgroupRoot = "/sys/fs/cgroup"

// cgroupCounters names the files on the host that count a container's OOM
// kills and the forks that failed at its pids limit. An empty name means the
// counter cannot be read from here, as when the engine runs on another
// host or in another PID namespace.
type cgroupCounters struct {
	oomFile  string // memory.events (cgroup v2) or memory.oom_control (v1)
	pidsFile string // pids.events, v1 or v2
}

// counterSample is one reading of cgroupCounters.
type counterSample struct {
	oomKills, pidsMax   uint64
	oomKnown, pidsKnown bool
}

// findCgroupCounters locates the counters of the container whose init has
// the host PID pid, from /proc/<pid>/cgroup. A cgroup path must contain
// the container's ID; this rejects a PID that means another process in
// this PID namespace, and runsc's sandbox process, which stays in the
// root cgroup v2 group on a hybrid host.
func findCgroupCounters(pid int, containerID string) cgroupCounters {
	var c cgroupCounters
	if pid <= 0 || containerID == "" {
		return c
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return c
	}
	for line := range strings.Lines(string(data)) {
		fields := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(fields) != 3 || !strings.Contains(fields[2], containerID) {
			continue
		}
		controllers, path := fields[1], fields[2]
		if fields[0] == "0" && controllers == "" {
			for _, root := range []string{hostCgroupRoot, filepath.Join(hostCgroupRoot, "unified")} {
				c.oomFile = firstReadable(c.oomFile, filepath.Join(root, path, "memory.events"))
				c.pidsFile = firstReadable(c.pidsFile, filepath.Join(root, path, "pids.events"))
			}
		}
		if hasController(controllers, "memory") {
			c.oomFile = firstReadable(c.oomFile, filepath.Join(hostCgroupRoot, "memory", path, "memory.oom_control"))
		}
		if hasController(controllers, "pids") {
			c.pidsFile = firstReadable(c.pidsFile, filepath.Join(hostCgroupRoot, "pids", path, "pids.events"))
		}
	}
	return c
}

// firstReadable returns current when set, else file when it is readable,
// else "".
func firstReadable(current, file string) string {
	if current != "" {
		return current
	}
	if _, err := os.ReadFile(file); err != nil {
		return ""
	}
	return file
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// read reads the counters that c names.
func (c cgroupCounters) read() counterSample {
	var s counterSample
	if c.oomFile != "" {
		s.oomKills, s.oomKnown = readCounter(c.oomFile, "oom_kill")
	}
	if c.pidsFile != "" {
		s.pidsMax, s.pidsKnown = readCounter(c.pidsFile, "max")
	}
	return s
}

// readCounter reads the line "key N" of a cgroup file such as memory.events.
func readCounter(file, key string) (uint64, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		k, v, ok := strings.Cut(scanner.Text(), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// oomKilledDuring reports whether the OOM killer ran in the container
// between the samples before and after.
func oomKilledDuring(before, after counterSample) bool {
	return before.oomKnown && after.oomKnown && after.oomKills > before.oomKills
}

// pidsLimitHitDuring reports whether a fork failed at the pids limit in the
// container between the samples before and after.
func pidsLimitHitDuring(before, after counterSample) bool {
	return before.pidsKnown && after.pidsKnown && after.pidsMax > before.pidsMax
}
