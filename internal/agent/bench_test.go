//go:build linux

package agent_test

import (
	"os/exec"
	"testing"

	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// BenchmarkExecTrue measures one exec round trip of `true` from the client
// through an agent on this host: request, fork and exec, wait, exit frame.
// Compare it with BenchmarkForkExecTrue, the cost of the process alone.
func BenchmarkExecTrue(b *testing.B) {
	benchmarkExecTrue(b, agenttest.Options{Log: func(string) {}})
}

// BenchmarkExecTrueAsPID1 is BenchmarkExecTrue with the agent as PID 1 of
// its own PID namespace, as inside a sandbox, where /proc lists only the
// sandbox's processes.
func BenchmarkExecTrueAsPID1(b *testing.B) {
	agenttest.RequirePIDNamespace(b)
	benchmarkExecTrue(b, agenttest.Options{Log: func(string) {}, PIDNamespace: true})
}

func benchmarkExecTrue(b *testing.B, opts agenttest.Options) {
	a := agenttest.Start(b, opts)
	req := provider.ExecRequest{Argv: []string{"true"}}
	for b.Loop() {
		res, err := a.Client.Exec(b.Context(), req, nil)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("exec true: %+v, %v", res, err)
		}
	}
}

// BenchmarkForkExecTrue measures running true with os/exec in the test
// process, without the agent.
func BenchmarkForkExecTrue(b *testing.B) {
	path, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := exec.Command(path).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPing measures the protocol round trip alone: one HTTP/2 request
// on the client's connection and its empty response.
func BenchmarkPing(b *testing.B) {
	a := agenttest.Start(b, agenttest.Options{Log: func(string) {}})
	for b.Loop() {
		if err := a.Client.Ping(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
