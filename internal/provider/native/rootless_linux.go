package native

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// rootless reports whether the provider runs sandboxes in a user namespace
// of their own, which it does whenever the server's effective user is not
// root.
func rootless() bool { return os.Geteuid() != 0 }

// userNamespaceAttr adds to attr a new user namespace that maps the
// server's user and group to root inside, so that the setup step may
// create the other namespaces and mounts without privileges on the host.
// setgroups is disabled, as the kernel requires before an unprivileged
// process may write a gid map.
func userNamespaceAttr(attr *syscall.SysProcAttr) {
	attr.Cloneflags |= syscall.CLONE_NEWUSER
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	attr.GidMappingsEnableSetgroups = false
}

// checkUserNamespaces returns an error when this host does not let an
// unprivileged user create user namespaces: user.max_user_namespaces is
// 0, or the Debian and Ubuntu switch kernel.unprivileged_userns_clone is 0.
func checkUserNamespaces() error {
	for _, sysctl := range []string{"/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone"} {
		data, err := os.ReadFile(sysctl)
		if err != nil {
			continue // the kernel lacks this switch
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n == 0 {
			return fmt.Errorf("%s is 0, so the server cannot create user namespaces without root; set it to 1 or run the server as root", sysctl)
		}
	}
	return nil
}

// removeDir removes dir and its contents. The overlay leaves its work
// directory's work/ subdirectory with mode 0, which only root can remove
// without first making it accessible, so on a permission error removeDir
// grants the owner access to every directory and tries again.
func removeDir(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
