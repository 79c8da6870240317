//go:build !linux

package image

import "golang.org/x/sys/unix"

// syncTree flushes all filesystems, since only Linux can sync the one that
// holds dir.
func syncTree(dir string) error {
	unix.Sync()
	return nil
}
