package docker

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/agent"
)

// socketDialer returns a Dialer for the agent socket in the host directory
// dir. It connects through /proc/self/fd, so the address stays within the
// 107 bytes a unix socket address may have however long dir is.
func socketDialer(dir string) agent.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", dir, err)
		}
		defer unix.Close(fd)
		var d net.Dialer
		return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d/%s", fd, socketName))
	}
}
