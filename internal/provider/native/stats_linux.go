package native

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Stats reads the sandbox's cgroups: memory in use and its limit (0 when
// unlimited), the number of processes, and the CPU use since the previous
// call as a percentage of one CPU (since the spawn for the first call).
func (p *Provider) Stats(ctx context.Context, id string) (provider.Stats, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return provider.Stats{}, err
	}
	cg := sb.state.Cgroups
	if cg.Version == 0 {
		return provider.Stats{}, fmt.Errorf("native: stats of %s: the sandbox has no cgroups because the server does not run as root: %w",
			id, provider.ErrNotImplemented)
	}
	var stats provider.Stats
	var errs [4]error

	if cg.Version == 2 {
		stats.MemoryBytes, errs[0] = readCgroupInt(cg.dir("memory"), "memory.current")
		stats.MemoryLimitBytes, errs[1] = readCgroupInt(cg.dir("memory"), "memory.max")
	} else {
		stats.MemoryBytes, errs[0] = readCgroupInt(cg.dir("memory"), "memory.usage_in_bytes")
		stats.MemoryLimitBytes, errs[1] = readCgroupInt(cg.dir("memory"), "memory.limit_in_bytes")
	}
	// An unlimited group reports max or a page-aligned maximum integer.
	if stats.MemoryLimitBytes >= math.MaxInt64/2 {
		stats.MemoryLimitBytes = 0
	}
	pids, err := readCgroupInt(cg.dir("pids"), "pids.current")
	stats.Pids, errs[2] = int(pids), err

	var usage time.Duration
	usage, errs[3] = cpuUsage(cg)
	for _, err := range errs {
		if err != nil {
			return provider.Stats{}, fmt.Errorf("native: stats of %s: %w", id, sb.callError("stats", err))
		}
	}
	stats.CPUPercent = sb.cpuPercent(usage, time.Now())
	return stats, nil
}

// cpuUsage returns the CPU time the sandbox's processes have used.
func cpuUsage(cg cgroupPaths) (time.Duration, error) {
	if cg.Version == 2 {
		usec, err := readCgroupKey(cg.dir("cpu"), "cpu.stat", "usage_usec")
		return time.Duration(usec) * time.Microsecond, err
	}
	ns, err := readCgroupInt(cg.dir("cpuacct"), "cpuacct.usage")
	return time.Duration(ns), err
}

// cpuPercent returns the CPU use between the previous sample (or the
// spawn) and this one, and records this one.
func (sb *sandbox) cpuPercent(usage time.Duration, now time.Time) float64 {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	prev := sb.cpu
	if prev.at.IsZero() {
		prev = cpuSample{at: sb.state.CreatedAt}
	}
	sb.cpu = cpuSample{at: now, usage: usage}
	wall := now.Sub(prev.at)
	if wall <= 0 || usage < prev.usage {
		return 0
	}
	return float64(usage-prev.usage) / float64(wall) * 100
}
