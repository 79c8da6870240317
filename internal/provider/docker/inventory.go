package docker

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// ListRuntimes returns the containers this server created, running or
// stopped, from their labels, sorted by ID. Containers of other servers,
// which have another StateDir, are left out.
func (p *Provider) ListRuntimes(ctx context.Context) ([]provider.RuntimeInfo, error) {
	list, err := p.engine.ContainerList(ctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", labelManaged+"=true"),
			filters.Arg("label", labelStateDir+"="+p.cfg.StateDir),
		),
	})
	if err != nil {
		return nil, p.engineError("list sandboxes", err)
	}

	runtimes := make([]provider.RuntimeInfo, 0, len(list))
	for _, c := range list {
		id := c.Labels[labelID]
		if !validID.MatchString(id) || !p.owns(c.Labels, id) {
			continue
		}
		runtimes = append(runtimes, runtimeInfo(id, c.Labels, c.State))
	}
	slices.SortFunc(runtimes, func(a, b provider.RuntimeInfo) int { return strings.Compare(a.ID, b.ID) })
	return runtimes, nil
}

// runtimeInfo decodes the labels of a sandbox's container. Malformed
// numbers and times decode as zero.
func runtimeInfo(id string, labels map[string]string, state container.ContainerState) provider.RuntimeInfo {
	info := provider.RuntimeInfo{
		ID:      id,
		Image:   labels[labelImage],
		OwnerID: labels[labelOwner],
		Running: state == container.StateRunning,
	}
	info.MemoryMB, _ = strconv.Atoi(labels[labelMemoryMB])
	info.VCPUs, _ = strconv.Atoi(labels[labelVCPUs])
	info.CreatedAt, _ = time.Parse(time.RFC3339Nano, labels[labelCreated])
	for k, v := range labels {
		if key, ok := strings.CutPrefix(k, labelMeta); ok {
			if info.Metadata == nil {
				info.Metadata = make(map[string]string)
			}
			info.Metadata[key] = v
		}
	}
	return info
}
