package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// The benchmarks compare the provider with the docker CLI on the same
// engine, image and runtime, in the same run. Run them with a fixed count,
// as docs/benchmarks.md does:
//
//	go test -run '^$' -bench . -benchtime 20x ./internal/provider/docker
//
// Each reports the p50 and p95 of its samples in milliseconds.

// benchRuntimes returns the runtimes to benchmark: runc, and runsc when the
// engine has it.
func benchRuntimes(b *testing.B) []string {
	requireDocker(b)
	runtimes := []string{"runc"}
	if slices.Contains(engineCheck.runtimes, "runsc") {
		runtimes = append(runtimes, "runsc")
	}
	return runtimes
}

// benchProvider returns a provider that logs nothing, so that log lines do
// not mix with the benchmark's results.
func benchProvider(b *testing.B) *Provider {
	cfg := testConfig(b)
	cfg.Logger = nil
	return newTestProvider(b, cfg)
}

// latencies records one duration per iteration and reports percentiles.
type latencies []time.Duration

func (l *latencies) time(fn func()) {
	start := time.Now()
	fn()
	*l = append(*l, time.Since(start))
}

// report adds the p50 and p95 in milliseconds to the benchmark's output.
func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	sorted := slices.Clone(l)
	slices.Sort(sorted)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(sorted))+0.999999) - 1
		return sorted[max(i, 0)]
	}
	b.ReportMetric(float64(at(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(at(0.95).Microseconds())/1000, "p95-ms")
}

func BenchmarkSpawn(b *testing.B) {
	for _, runtime := range benchRuntimes(b) {
		b.Run(runtime+"/provider", func(b *testing.B) {
			p := benchProvider(b)
			var l latencies
			for i := 0; b.Loop(); i++ {
				spec := provider.SpawnSpec{ID: fmt.Sprintf("bench-spawn-%d", i), Image: testImage, Runtime: runtime, MemoryMB: 256}
				l.time(func() {
					if err := p.Spawn(context.Background(), spec); err != nil {
						b.Fatal(err)
					}
				})
				b.StopTimer()
				if err := p.Destroy(context.Background(), spec.ID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			l.report(b)
		})

		b.Run(runtime+"/docker_run", func(b *testing.B) {
			var l latencies
			for b.Loop() {
				var id string
				l.time(func() {
					id = dockerCLI(b, "run", "-d", "--runtime", runtime, "--network", "none", "--memory", "256m",
						testImage, "sleep", "infinity")
				})
				b.StopTimer()
				dockerCLI(b, "rm", "-f", id)
				b.StartTimer()
			}
			l.report(b)
		})
	}
}

func BenchmarkExec(b *testing.B) {
	for _, runtime := range benchRuntimes(b) {
		p := benchProvider(b)
		id := "bench-exec-" + runtime
		spawn(b, p, provider.SpawnSpec{ID: id, Image: testImage, Runtime: runtime})
		true := provider.ExecRequest{Argv: []string{"true"}}

		b.Run(runtime+"/agent", func(b *testing.B) {
			var l latencies
			for b.Loop() {
				l.time(func() {
					res, err := p.Exec(context.Background(), id, true, nil)
					if err != nil || res.ExitCode != 0 {
						b.Fatalf("exec true: %+v, %v", res, err)
					}
				})
			}
			l.report(b)
		})

		b.Run(runtime+"/docker_exec_api", func(b *testing.B) {
			var l latencies
			for b.Loop() {
				l.time(func() { engineExec(b, p, containerName(id)) })
			}
			l.report(b)
		})

		b.Run(runtime+"/docker_exec_cli", func(b *testing.B) {
			var l latencies
			for b.Loop() {
				l.time(func() { dockerCLI(b, "exec", containerName(id), "true") })
			}
			l.report(b)
		})
	}
}

// fileBenchSize is the size of the uploaded and downloaded file.
const fileBenchSize = 100 << 20

func BenchmarkFileTransfer(b *testing.B) {
	for _, runtime := range benchRuntimes(b) {
		p := benchProvider(b)
		id := "bench-files-" + runtime
		spawn(b, p, provider.SpawnSpec{ID: id, Image: testImage, Runtime: runtime, MemoryMB: 1024})
		data := make([]byte, fileBenchSize)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < len(data); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				data[i+j] = byte(v >> (8 * j))
			}
		}

		b.Run(runtime+"/upload", func(b *testing.B) {
			b.SetBytes(fileBenchSize)
			var l latencies
			for b.Loop() {
				l.time(func() {
					err := p.WriteFile(context.Background(), id, "/workspace/big.bin", bytes.NewReader(data), 0o644)
					if err != nil {
						b.Fatal(err)
					}
				})
			}
			l.report(b)
		})

		b.Run(runtime+"/download", func(b *testing.B) {
			b.SetBytes(fileBenchSize)
			var l latencies
			for b.Loop() {
				l.time(func() {
					r, err := p.ReadFile(context.Background(), id, "/workspace/big.bin")
					if err != nil {
						b.Fatal(err)
					}
					n, err := io.Copy(io.Discard, r)
					r.Close()
					if err != nil || n != fileBenchSize {
						b.Fatalf("download: %d bytes, %v", n, err)
					}
				})
			}
			l.report(b)
		})
	}
}

// dockerCLI runs the docker command with args and returns its trimmed
// output.
func dockerCLI(b *testing.B, args ...string) string {
	b.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		b.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// engineExec runs true in the container through the engine's exec API, as
// docker exec does: create, start attached, wait for the output to end,
// then inspect the exit code.
func engineExec(b *testing.B, p *Provider, name string) {
	b.Helper()
	ctx := context.Background()
	created, err := p.engine.ContainerExecCreate(ctx, name, container.ExecOptions{Cmd: []string{"true"}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		b.Fatal(err)
	}
	attached, err := p.engine.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, attached.Reader)
	attached.Close()
	info, err := p.engine.ContainerExecInspect(ctx, created.ID)
	if err != nil || info.ExitCode != 0 {
		b.Fatalf("exec inspect: %+v, %v", info, err)
	}
}
