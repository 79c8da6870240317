//go:build !linux

package docker

import (
	"context"
	"net"
	"path/filepath"

	"github.com/stacyvm/stacyvm/internal/agent"
)

// socketDialer returns a Dialer for the agent socket in the host directory
// dir. Without /proc/self/fd the address is the plain path, which must fit
// in the 104 bytes a unix socket address may have on these systems.
func socketDialer(dir string) agent.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, socketName))
	}
}
