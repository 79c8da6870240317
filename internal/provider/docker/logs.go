package docker

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Logs returns up to the last lines lines of the container's log, which is
// what the agent wrote to stdout and stderr: its start, its shutdown and
// its errors. lines <= 0 returns all of it. The log of a stopped container
// is returned too, because it shows why the container stopped.
func (p *Provider) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("docker: sandbox %q: %w", id, provider.ErrSandboxNotFound)
	}
	info, err := p.inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	return p.containerLogs(ctx, info.ID, lines)
}

// containerLogs reads the last lines lines of a container's log; lines <= 0
// reads all of it.
func (p *Provider) containerLogs(ctx context.Context, containerID string, lines int) ([]string, error) {
	tail := "all"
	if lines > 0 {
		tail = strconv.Itoa(lines)
	}
	rc, err := p.engine.ContainerLogs(ctx, containerID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: tail})
	if err != nil {
		return nil, p.engineError("read log of container "+containerID, err)
	}
	defer rc.Close()

	// Without a TTY the engine multiplexes stdout and stderr in one stream.
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil {
		return nil, p.engineError("read log of container "+containerID, err)
	}
	text := strings.TrimSuffix(buf.String(), "\n")
	if text == "" {
		return []string{}, nil
	}
	return strings.Split(text, "\n"), nil
}
