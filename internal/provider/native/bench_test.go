//go:build linux

package native

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// minSamples is the least number of spawns a latency benchmark measures,
// whatever b.N is, so that its percentiles mean something.
const minSamples = 20

// BenchmarkSpawn measures spawn to the first exec round trip, with the
// image already unpacked, for both root file systems, next to a raw
// unshare(1) of the same namespaces running true. It reports p50 and p95
// in milliseconds.
func BenchmarkSpawn(b *testing.B) {
	b.Run("image", func(b *testing.B) { benchmarkSpawn(b, minimalImage) })
	b.Run("host_view", func(b *testing.B) { benchmarkSpawn(b, HostImage) })
	b.Run("raw_unshare", func(b *testing.B) {
		requireHost(b)
		samples := make([]time.Duration, 0, max(b.N, minSamples))
		for range cap(samples) {
			start := time.Now()
			cmd := exec.Command("unshare", "-m", "-p", "-f", "-n", "-u", "-i", "--mount-proc", "true")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("unshare: %v\n%s", err, out)
			}
			samples = append(samples, time.Since(start))
		}
		reportPercentiles(b, samples)
	})
}

func benchmarkSpawn(b *testing.B, img string) {
	p := newTestProvider(b, testOptions{images: img != HostImage})
	// A first spawn unpacks the image, so the measured ones find it warm.
	spawn(b, p, provider.SpawnSpec{Image: img})

	samples := make([]time.Duration, 0, max(b.N, minSamples))
	b.ResetTimer()
	for i := range cap(samples) {
		id := "bench-" + strconv.Itoa(i)
		start := time.Now()
		if err := p.Spawn(context.Background(), provider.SpawnSpec{ID: id, Image: img}); err != nil {
			b.Fatal(err)
		}
		res, err := p.Exec(context.Background(), id, provider.ExecRequest{Argv: []string{"true"}}, nil)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("first exec: %+v, %v", res, err)
		}
		samples = append(samples, time.Since(start))

		b.StopTimer()
		if err := p.Destroy(context.Background(), id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportPercentiles(b, samples)
}

// BenchmarkExecTrue measures the round trip of running true in a sandbox.
func BenchmarkExecTrue(b *testing.B) {
	p := newTestProvider(b, testOptions{images: true})
	id := spawn(b, p, provider.SpawnSpec{Image: minimalImage})
	req := provider.ExecRequest{Argv: []string{"true"}}

	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := p.Exec(context.Background(), id, req, nil); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	reportPercentiles(b, samples)
}

// BenchmarkIdleMemory spawns 100 idle image sandboxes and reports their
// memory: the resident and proportional set sizes of their processes
// (the agents) and the memory their cgroups account, which includes page
// cache and kernel memory charged to them.
func BenchmarkIdleMemory(b *testing.B) {
	const sandboxes = 100
	p := newTestProvider(b, testOptions{images: true})
	var ids []string
	for range sandboxes {
		ids = append(ids, spawn(b, p, provider.SpawnSpec{Image: minimalImage}))
	}
	time.Sleep(time.Second) // let the agents finish starting up

	b.ResetTimer()
	var rss, pss, cgroupBytes int64
	for range b.N {
		rss, pss, cgroupBytes = 0, 0, 0
		for _, id := range ids {
			sb, err := p.lookup(context.Background(), id)
			if err != nil {
				b.Fatal(err)
			}
			for _, pid := range cgroupPids(b, sb.state.Cgroups.dir("memory")) {
				r, s := smapsRollup(pid)
				rss += r
				pss += s
			}
			usage, err := memoryUsage(sb.state.Cgroups)
			if err != nil {
				b.Fatal(err)
			}
			cgroupBytes += usage
		}
	}
	const mib = 1 << 20
	b.ReportMetric(float64(rss)/mib, "rss-MiB")
	b.ReportMetric(float64(pss)/mib, "pss-MiB")
	b.ReportMetric(float64(cgroupBytes)/mib, "cgroup-MiB")
	b.ReportMetric(float64(pss)/mib/sandboxes, "pss-MiB/sandbox")
	b.ReportMetric(float64(cgroupBytes)/mib/sandboxes, "cgroup-MiB/sandbox")
}

func cgroupPids(b *testing.B, dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		b.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// smapsRollup returns the Rss and Pss of process pid in bytes.
func smapsRollup(pid int) (rss, pss int64) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			rss = kb << 10
		case "Pss:":
			pss = kb << 10
		}
	}
	return rss, pss
}

func memoryUsage(cg cgroupPaths) (int64, error) {
	if cg.Version == 2 {
		return readCgroupInt(cg.dir("memory"), "memory.current")
	}
	return readCgroupInt(cg.dir("memory"), "memory.usage_in_bytes")
}

// reportPercentiles reports the median and 95th percentile of samples in
// milliseconds.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.95), "p95-ms")
	b.ReportMetric(float64(len(samples)), "samples")
}
