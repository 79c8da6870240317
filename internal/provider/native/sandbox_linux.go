package native

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// sandbox is one attached sandbox.
type sandbox struct {
	id      string
	dir     string // StateDir/<id>
	state   state
	client  *agent.Client
	pidfd   int    // the init process; closed by close
	release func() // releases the image tree; nil when none is held

	closeOnce sync.Once

	mu        sync.Mutex
	destroyed bool
	cpu       cpuSample // last CPU sample, for Stats

	logMu sync.Mutex // serializes the provider's console log lines
}

// cpuSample is a reading of a sandbox's cumulative CPU time.
type cpuSample struct {
	at    time.Time
	usage time.Duration
}

func newSandbox(dir string, st state, pidfd int, client *agent.Client) *sandbox {
	return &sandbox{id: st.ID, dir: dir, state: st, client: client, pidfd: pidfd}
}

func (sb *sandbox) markDestroyed() {
	sb.mu.Lock()
	sb.destroyed = true
	sb.mu.Unlock()
}

func (sb *sandbox) isDestroyed() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.destroyed
}

// initExited reports whether the sandbox's init has exited.
func (sb *sandbox) initExited() bool {
	return sb.pidfd >= 0 && exited(sb.pidfd)
}

// close releases what the sandbox holds in this process: the agent
// connection, the pidfd and the image tree. It does not stop the sandbox.
func (sb *sandbox) close() {
	sb.closeOnce.Do(func() {
		if sb.client != nil {
			_ = sb.client.Close()
		}
		if sb.pidfd >= 0 {
			_ = unix.Close(sb.pidfd)
		}
		if sb.release != nil {
			sb.release()
		}
	})
}

// callError maps the error of an agent call: a sandbox destroyed during
// the call gives ErrSandboxDestroyed, and an agent that stopped responding
// because its init exited gives ErrSandboxNotFound.
func (sb *sandbox) callError(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case sb.isDestroyed():
		return fmt.Errorf("native: %s in %s: %w", op, sb.id, provider.ErrSandboxDestroyed)
	case errors.Is(err, provider.ErrUnavailable) && sb.initExited():
		return fmt.Errorf("native: %s in %s: the sandbox's init exited: %w", op, sb.id, provider.ErrSandboxNotFound)
	}
	return err
}

// maxSocketPath is the longest path a unix socket address holds, less its
// terminating NUL.
const maxSocketPath = 107

// dialAgent connects to the agent listening at socket and checks its
// protocol version.
func dialAgent(ctx context.Context, socket string) (*agent.Client, error) {
	return agent.Dial(ctx, socketDialer(socket))
}

// socketDialer returns a dialer for the agent socket at path. A path too
// long for a socket address is reached through /proc/self/fd and an
// O_PATH descriptor of its directory. The dialer refuses a path that is not
// a socket, such as a symlink that a process in the sandbox put there.
func socketDialer(path string) agent.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		info, err := os.Lstat(path)
		if err != nil {
			return nil, err
		}
		if info.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s is not a socket", path)
		}
		var d net.Dialer
		if len(path) <= maxSocketPath {
			return d.DialContext(ctx, "unix", path)
		}
		dirfd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(dirfd)
		short := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + filepath.Base(path)
		return d.DialContext(ctx, "unix", short)
	}
}

func unixClose(fd int) error { return unix.Close(fd) }
