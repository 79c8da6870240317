package native

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// processStartTime returns the start time of process pid in clock ticks
// since boot, field 22 of /proc/PID/stat. Together with the boot ID it
// distinguishes a sandbox's init from a later process that reuses its pid.
func processStartTime(pid int) (uint64, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may contain spaces, so fields are
	// counted after its closing parenthesis, which follows field 2.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[end+1:]))
	const startTimeField = 22 - 3 // field 22, counted from field 3
	if len(fields) <= startTimeField {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields, want more than 22", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[startTimeField], 10, 64)
}

// bootID returns the kernel's random boot ID, which changes at every boot.
func bootID() (string, error) {
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(id)), nil
}

// errProcessGone is returned by openInit when the recorded process no
// longer exists or a different process has its pid.
var errProcessGone = errors.New("process is gone")

// openInit opens a pidfd for the process pid when it is still the process
// that started at startTime during this boot. The pidfd keeps referring to
// that process even when its pid is reused later.
func openInit(pid int, startTime uint64, boot string) (int, error) {
	current, err := bootID()
	if err != nil {
		return -1, err
	}
	if current != boot {
		return -1, errProcessGone
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, errProcessGone
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// The start time is checked after the pidfd is open, so the pidfd
	// cannot refer to a process that replaced the checked one.
	started, err := processStartTime(pid)
	if err != nil || started != startTime || exited(fd) {
		_ = unix.Close(fd)
		return -1, errProcessGone
	}
	return fd, nil
}

// exited reports whether the process behind pidfd has exited. A pidfd
// becomes readable when its process exits.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// waitExit waits until the process behind pidfd has exited or ctx is done.
func waitExit(ctx context.Context, pidfd int) error {
	for {
		if exited(pidfd) {
			return nil
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		timeout := 100
		if deadline, ok := ctx.Deadline(); ok {
			timeout = min(timeout, max(int(time.Until(deadline).Milliseconds()), 0))
		}
		_, err := unix.Poll(fds, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if err := ctx.Err(); err != nil && !exited(pidfd) {
			return err
		}
	}
}

// killProcess sends SIGKILL through pidfd. A process that has exited
// already is not an error.
func killProcess(pidfd int) error {
	err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("pidfd_send_signal SIGKILL: %w", err)
	}
	return nil
}
