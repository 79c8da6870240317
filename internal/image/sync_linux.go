package image

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncTree flushes the filesystem that holds dir, so that a tree renamed into
// place survives a crash with its content.
func syncTree(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
