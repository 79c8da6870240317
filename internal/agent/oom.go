package agent

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is the mount point of the cgroup file systems.
const cgroupRoot = "/sys/fs/cgroup"

// CgroupOOMCounter returns a function that reads the oom_kill counter of
// the memory cgroup this process runs in, for Config.OOMKills. It looks,
// in order, for memory.events of the cgroup v2 group named in
// /proc/self/cgroup, memory.events at the cgroup v2 mount (the group itself
// inside a cgroup namespace), and memory.oom_control of the cgroup v1
// memory controller at the same two places. It returns nil when none of them
// has the counter; oom_control has it from Linux 4.13.
func CgroupOOMCounter() func() (uint64, bool) {
	self, _ := os.ReadFile("/proc/self/cgroup")
	for _, file := range oomCounterFiles(self) {
		if _, ok := readOOMKills(file); ok {
			return func() (uint64, bool) { return readOOMKills(file) }
		}
	}
	return nil
}

// oomCounterFiles returns the files that may hold the oom_kill counter,
// most specific first, given the content of /proc/self/cgroup.
func oomCounterFiles(procCgroup []byte) []string {
	var v2, v1 string
	for line := range strings.Lines(string(procCgroup)) {
		fields := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(fields) != 3 {
			continue
		}
		switch {
		case fields[0] == "0" && fields[1] == "":
			v2 = fields[2]
		case hasController(fields[1], "memory"):
			v1 = fields[2]
		}
	}

	var files []string
	if v2 != "" && v2 != "/" {
		files = append(files, filepath.Join(cgroupRoot, v2, "memory.events"))
	}
	files = append(files, filepath.Join(cgroupRoot, "memory.events"))
	if v1 != "" && v1 != "/" {
		files = append(files, filepath.Join(cgroupRoot, "memory", v1, "memory.oom_control"))
	}
	return append(files, filepath.Join(cgroupRoot, "memory", "memory.oom_control"))
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readOOMKills reads the "oom_kill N" line that memory.events (v2) and
// memory.oom_control (v1) share.
func readOOMKills(file string) (uint64, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), " ")
		if !ok || key != "oom_kill" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		return n, err == nil
	}
	return 0, false
}
