package proot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// maxKillRounds bounds each kill loop of killUser and killTraced. A round
// kills every process found and then sleeps up to 50ms, so a loop takes
// about two seconds at most.
const maxKillRounds = 40

// agentProcess is a PRoot, started by this process, whose tracee is an
// agent.
type agentProcess struct {
	pid    int
	uid    uint32
	exited chan struct{} // closed when the process has been reaped
}

// alive reports whether the process still runs.
func (a *agentProcess) alive() bool {
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// launchSpec is the input of launch: the files and settings of one PRoot.
type launchSpec struct {
	binary   string // proot
	agent    string // the agent binary, readable by uid
	listen   string // the sandbox path of the agent's socket
	tree     string // the image's tree
	dir      string // the sandbox's directory
	runDir   string // mounted at /run/stacyvm
	uid      uint32 // user and group of every process
	network  bool   // bind the host's name resolution files
	fakeRoot bool   // proot -0
}

// hostDevices are the host devices bound into every sandbox's /dev.
var hostDevices = []string{"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts"}

// devLinks are the symlinks of the sandbox's /dev.
var devLinks = map[string]string{
	"fd":     "/proc/self/fd",
	"stdin":  "/proc/self/fd/0",
	"stdout": "/proc/self/fd/1",
	"stderr": "/proc/self/fd/2",
}

// makeDevDir creates the sandbox's /dev in dir: empty files and
// directories that PRoot binds the host devices over, the usual symlinks
// into /proc, and a shm directory of the sandbox's own, owned by uid.
func makeDevDir(dir string, uid int) error {
	if err := makeDir(dir, 0o755, 0, 0); err != nil {
		return err
	}
	for _, name := range hostDevices {
		info, err := os.Stat(filepath.Join("/dev", name))
		if err != nil {
			continue // not on this host: not bound either
		}
		target := filepath.Join(dir, name)
		if info.IsDir() {
			err = makeDir(target, 0o755, 0, 0)
		} else {
			err = touch(target)
		}
		if err != nil {
			return err
		}
	}
	for name, target := range devLinks {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return makeDir(filepath.Join(dir, "shm"), 0o1777, uid, uid)
}

// prootArgs returns the command line of PRoot for s.
func prootArgs(s launchSpec) []string {
	args := []string{s.binary}
	if s.fakeRoot {
		args = append(args, "-0")
	}
	args = append(args, "-r", s.tree, "-w", "/")

	bind := func(host, guest string) { args = append(args, "-b", host+":"+guest) }
	for _, m := range mounts {
		// A trailing "!" makes PRoot bind at the path even where the
		// image has a symlink, because the file view does not follow one
		// there either.
		bind(filepath.Join(s.dir, upperDir, m), m+"!")
	}
	bind(filepath.Join(s.dir, devDir), "/dev")
	for _, name := range hostDevices {
		if _, err := os.Stat(filepath.Join("/dev", name)); err == nil {
			bind(filepath.Join("/dev", name), filepath.Join("/dev", name))
		}
	}
	bind("/proc", "/proc")
	bind("/sys", "/sys")
	if s.network {
		for _, name := range []string{"/etc/resolv.conf", "/etc/hosts"} {
			if _, err := os.Stat(name); err == nil {
				bind(name, name)
			}
		}
	}
	bind(s.runDir, agent.SandboxDir)
	bind(s.agent, agent.SandboxDir+"/"+agent.BinaryName)
	return append(args, agent.SandboxDir+"/"+agent.BinaryName, "--listen", "unix:"+s.listen, "--log-level", "warn")
}

// prootEnv is the environment of PRoot, which the agent inherits as the
// base environment of every command.
func prootEnv() []string {
	return []string{"PATH=" + agent.DefaultPath, "HOME=/home", "TMPDIR=/tmp", "LANG=C.UTF-8"}
}

// launch starts PRoot for s as the sandbox's user, in a process group of
// its own, with its output appended to the console log. It does not wait
// for the agent. The process outlives the server: it is not killed when
// the server exits.
func launch(s launchSpec) (*agentProcess, error) {
	console, err := openConsole(s.dir)
	if err != nil {
		return nil, err
	}
	defer console.Close()

	args := prootArgs(s)
	cmd := &exec.Cmd{
		Path:   s.binary,
		Args:   args,
		Env:    prootEnv(),
		Dir:    "/",
		Stdout: console,
		Stderr: console,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: &syscall.Credential{Uid: s.uid, Gid: s.uid, Groups: []uint32{}},
		},
	}
	if err := startFiltered(cmd); err != nil {
		return nil, err
	}

	proc := &agentProcess{pid: cmd.Process.Pid, uid: s.uid, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(proc.exited)
	}()
	return proc, nil
}

// killSandbox kills every process that runs as the sandbox user uid:
// each PRoot, its agent and all commands. Killing a PRoot first would let
// its tracees run on untraced, seeing the host's file system, so the loop
// kills all of them together and repeats until none is left. It then
// removes what the killed PRoots left in /tmp.
func killSandbox(ctx context.Context, uid uint32) error {
	if left := killUser(ctx, uid); left > 0 {
		return fmt.Errorf("%d processes of sandbox user %d are still running after %d kill rounds: %w",
			left, uid, maxKillRounds, provider.ErrUnavailable)
	}
	removeProotLeftovers(func(st *syscall.Stat_t) bool { return st.Uid == uid })
	return nil
}

// killTraced stops one agent: it kills every process that proc traces,
// which lets PRoot exit by itself and remove its temporary files, and
// kills PRoot when it has not exited within prootExitGrace.
func killTraced(proc *agentProcess) {
	pause := time.Millisecond
	for range maxKillRounds {
		pids := tracees(proc.pid)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}

	deadline := time.Now().Add(prootExitGrace)
	for proc.alive() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if proc.alive() {
		_ = unix.Kill(proc.pid, unix.SIGKILL)
		<-proc.exited
		infix := "-" + strconv.Itoa(proc.pid) + "-"
		removeProotLeftovers(func(st *syscall.Stat_t) bool { return st.Uid == proc.uid }, infix)
	}
}

// killUser sends SIGKILL to every process of uid and repeats until a scan
// finds none, maxKillRounds have passed or ctx ends. It returns how many
// were left at the last scan.
func killUser(ctx context.Context, uid uint32) int {
	pause := time.Millisecond
	for range maxKillRounds {
		pids := processesWith(func(pid int) bool { u, ok := processUID(pid); return ok && u == uid })
		if len(pids) == 0 || ctx.Err() != nil {
			return len(pids)
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	return len(processesWith(func(pid int) bool { u, ok := processUID(pid); return ok && u == uid }))
}

// userRuns reports whether a process runs as uid.
func userRuns(uid uint32) bool {
	return len(processesWith(func(pid int) bool { u, ok := processUID(pid); return ok && u == uid })) > 0
}

// tracees returns the processes that the process tracer traces.
func tracees(tracer int) []int {
	return processesWith(func(pid int) bool {
		t, ok := statusField(pid, "TracerPid:")
		return ok && t == uint64(tracer)
	})
}

// processesWith returns the live processes, other than zombies, for which
// match returns true. Zombies are left out because they cannot be killed
// and their parents reap them.
func processesWith(match func(pid int) bool) []int {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := dir.Readdirnames(-1)
	_ = dir.Close()

	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || !match(pid) {
			continue
		}
		if state, ok := processState(pid); ok && state != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processUID returns the real user ID of pid.
func processUID(pid int) (uint32, bool) {
	uid, ok := statusField(pid, "Uid:")
	return uint32(uid), ok
}

// statusField returns the first number of the line of /proc/PID/status
// that starts with key.
func statusField(pid int, key string) (uint64, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(string(fields[0]), 10, 32)
		return n, err == nil
	}
	return 0, false
}

// processState returns the state letter of pid from /proc/PID/stat, such
// as 'R', 'S' or 'Z'. The command name before it, in parentheses, may
// contain spaces and parentheses, so the state is read after the last ')'.
func processState(pid int) (byte, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, false
	}
	fields := bytes.Fields(data[end+1:])
	if len(fields) == 0 || len(fields[0]) != 1 {
		return 0, false
	}
	return fields[0][0], true
}

// removeProotLeftovers removes the temporary files in /tmp that a killed
// PRoot left: its loader and the directories it makes up for bind targets
// missing from the image. PRoot 5.1.0 always puts them there. Only entries
// whose owner matches and whose names contain one of infixes, when given,
// are removed.
func removeProotLeftovers(owner func(*syscall.Stat_t) bool, infixes ...string) {
	for _, pattern := range []string{"/tmp/proot-*", "/tmp/prooted-*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			if len(infixes) > 0 && !containsAny(filepath.Base(m), infixes) {
				continue
			}
			info, err := os.Lstat(m)
			if err != nil {
				continue
			}
			if st, ok := info.Sys().(*syscall.Stat_t); ok && owner(st) {
				_ = os.RemoveAll(m)
			}
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
