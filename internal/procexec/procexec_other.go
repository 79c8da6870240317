//go:build !linux

package procexec

import (
	"os/exec"

	"golang.org/x/sys/unix"
)

// awaitExit waits for the main process and reaps it.
//
// NOTE: the final killTree runs after this reap, so in a rare race the
// process group ID may already belong to a new group. Linux avoids this by
// waiting without reaping.
func awaitExit(cmd *exec.Cmd) (reaped bool, err error) {
	return true, cmd.Wait()
}

// killTree sends SIGKILL to the process group pgid. Without /proc it cannot
// find descendants that left the group with setsid.
func killTree(pgid int, cookie string) {
	_ = unix.Kill(-pgid, unix.SIGKILL)
}
