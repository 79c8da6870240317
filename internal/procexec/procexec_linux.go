package procexec

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// maxKillRounds bounds killTree. A round kills the process group and every
// process found with the cookie, then sleeps up to 50ms, so the bound is
// about two seconds.
const maxKillRounds = 40

// awaitExit blocks until the main process has exited and leaves it
// unreaped, so that its process group ID cannot be reused by another
// process before killTree has run for the last time.
func awaitExit(cmd *exec.Cmd) (reaped bool, err error) {
	var info unix.Siginfo
	for {
		err = unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return false, err
		}
	}
}

// killTree sends SIGKILL to the process group pgid and to every process
// whose environment carries the cookie, and repeats until a scan of /proc
// finds no live process with the cookie or maxKillRounds have passed.
//
// NOTE: a descendant that both left the process group (setsid) and
// replaced its environment (env -i, execve with a new environment) escapes
// this scan. It still dies when the sandbox is destroyed.
func killTree(pgid int, cookie string) {
	entry := []byte(EnvExecID + "=" + cookie)
	pause := time.Millisecond
	for range maxKillRounds {
		_ = unix.Kill(-pgid, unix.SIGKILL)
		pids := processesWithEnv(entry)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// processesWithEnv returns the IDs of the processes whose initial
// environment contains the KEY=VALUE entry. Zombies have no environment in
// /proc, so they are not returned; processes of other users are skipped
// unless the caller may read their environment.
func processesWithEnv(entry []byte) []int {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := dir.Readdirnames(-1)
	_ = dir.Close()

	self := os.Getpid()
	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == self {
			continue
		}
		environ, err := os.ReadFile("/proc/" + name + "/environ")
		if err == nil && hasEnvEntry(environ, entry) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hasEnvEntry reports whether the NUL-separated environ contains entry.
func hasEnvEntry(environ, entry []byte) bool {
	for len(environ) > 0 {
		var field []byte
		field, environ, _ = bytes.Cut(environ, []byte{0})
		if bytes.Equal(field, entry) {
			return true
		}
	}
	return false
}
