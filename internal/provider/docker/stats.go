package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// cpuSample is one reading of a container's CPU time.
type cpuSample struct {
	at     time.Time
	total  uint64 // CPU time of the container, in nanoseconds
	system uint64 // CPU time of the host, in nanoseconds
	cpus   uint32 // online CPUs of the host
}

// Sample windows for the CPU percent. A previous sample younger than
// maxSampleAge is the start of the window; otherwise Stats takes two
// samples minSampleGap apart.
const (
	maxSampleAge = 30 * time.Second
	minSampleGap = 100 * time.Millisecond
)

// Stats returns the sandbox's memory use and limit and its process count
// from the engine's one-shot stats, and its CPU use since the previous
// Stats call, as a percent of one CPU. When there was none in the last 30
// seconds, the CPU percent covers the 100ms that Stats waits between two
// samples.
func (p *Provider) Stats(ctx context.Context, id string) (provider.Stats, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return provider.Stats{}, err
	}
	stats, err := p.statsSample(ctx, sb)
	if err != nil {
		return provider.Stats{}, err
	}
	current := cpuOf(stats)

	sb.mu.Lock()
	previous := sb.lastCPU
	sb.lastCPU = current
	sb.mu.Unlock()

	if previous.at.IsZero() || current.at.Sub(previous.at) > maxSampleAge || current.total < previous.total {
		select {
		case <-ctx.Done():
			return provider.Stats{}, fmt.Errorf("docker: stats of sandbox %s: %w", id, ctx.Err())
		case <-time.After(minSampleGap):
		}
		previous = current
		if stats, err = p.statsSample(ctx, sb); err != nil {
			return provider.Stats{}, err
		}
		current = cpuOf(stats)
		sb.mu.Lock()
		sb.lastCPU = current
		sb.mu.Unlock()
	}

	return provider.Stats{
		CPUPercent:       cpuPercent(previous, current),
		MemoryBytes:      int64(memoryInUse(stats.MemoryStats)),
		MemoryLimitBytes: int64(stats.MemoryStats.Limit),
		Pids:             int(stats.PidsStats.Current),
	}, nil
}

// statsSample reads one-shot stats of sb's container.
func (p *Provider) statsSample(ctx context.Context, sb *sandbox) (container.StatsResponse, error) {
	var stats container.StatsResponse
	resp, err := p.engine.ContainerStatsOneShot(ctx, sb.containerID)
	if err != nil {
		return stats, p.callError(ctx, sb, "stats", p.engineError("stats", err))
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		return stats, fmt.Errorf("docker: decode stats of sandbox %s: %w", sb.id, err)
	}
	return stats, nil
}

func cpuOf(stats container.StatsResponse) cpuSample {
	cpus := stats.CPUStats.OnlineCPUs
	if cpus == 0 {
		cpus = uint32(len(stats.CPUStats.CPUUsage.PercpuUsage))
	}
	return cpuSample{
		at:     stats.Read,
		total:  stats.CPUStats.CPUUsage.TotalUsage,
		system: stats.CPUStats.SystemUsage,
		cpus:   cpus,
	}
}

// cpuPercent returns the container's CPU use between two samples as a
// percent of one CPU, so two busy CPUs give 200.
func cpuPercent(previous, current cpuSample) float64 {
	if current.system <= previous.system || current.total < previous.total {
		return 0
	}
	share := float64(current.total-previous.total) / float64(current.system-previous.system)
	return share * float64(current.cpus) * 100
}

// memoryInUse returns the memory use without the inactive page cache, which
// the kernel reclaims before it kills: "total_inactive_file" on cgroup v1,
// "inactive_file" on v2.
func memoryInUse(m container.MemoryStats) uint64 {
	for _, key := range []string{"total_inactive_file", "inactive_file"} {
		if inactive, ok := m.Stats[key]; ok && inactive < m.Usage {
			return m.Usage - inactive
		}
	}
	return m.Usage
}
