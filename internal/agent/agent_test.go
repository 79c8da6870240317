//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// collector gathers one exec's output per stream.
type collector struct {
	mu             sync.Mutex
	stdout, stderr bytes.Buffer
}

func (c *collector) output(stream provider.Stream, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if stream == provider.Stderr {
		c.stderr.Write(p)
	} else {
		c.stdout.Write(p)
	}
}

// pattern returns the first size bytes of line repeated, as
// `yes line | head -c size` prints them.
func pattern(line string, size int) []byte {
	unit := []byte(line + "\n")
	return bytes.Repeat(unit, size/len(unit)+1)[:size]
}

func TestConcurrentExecsShareOneConnection(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	var dials atomic.Int32
	dialer := func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		return agent.UnixDialer(a.Socket)(ctx)
	}
	client, err := agent.Dial(t.Context(), dialer)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	const (
		execs      = 200
		stdoutSize = 96 << 10 // three 32 KiB reads per stream
		stderrSize = 40 << 10
	)
	var wg sync.WaitGroup
	for i := range execs {
		wg.Go(func() {
			outLine := fmt.Sprintf("stdout of exec %d: %s", i, strings.Repeat(strconv.Itoa(i%10), 40))
			errLine := fmt.Sprintf("stderr of exec %d", i)
			script := fmt.Sprintf("yes '%s' | head -c %d; yes '%s' | head -c %d >&2; exit %d",
				outLine, stdoutSize, errLine, stderrSize, i%7)
			out := &collector{}
			res, err := client.Exec(t.Context(), provider.ExecRequest{Argv: []string{"sh", "-c", script}}, out.output)
			if err != nil {
				t.Errorf("exec %d: %v", i, err)
				return
			}
			if res.ExitCode != i%7 {
				t.Errorf("exec %d: exit code = %d, want %d", i, res.ExitCode, i%7)
			}
			if want := pattern(outLine, stdoutSize); !bytes.Equal(out.stdout.Bytes(), want) {
				t.Errorf("exec %d: stdout has %d bytes that differ from the %d expected", i, out.stdout.Len(), len(want))
			}
			if want := pattern(errLine, stderrSize); !bytes.Equal(out.stderr.Bytes(), want) {
				t.Errorf("exec %d: stderr has %d bytes that differ from the %d expected", i, out.stderr.Len(), len(want))
			}
		})
	}
	wg.Wait()
	if got := dials.Load(); got != 1 {
		t.Errorf("client dialed %d connections, want 1", got)
	}
}

func TestExecBinaryOutput(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	data := make([]byte, 256*300)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(a.Root, "workspace", "bytes"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	out := &collector{}
	req := provider.ExecRequest{Argv: []string{"sh", "-c", "cat bytes; cat bytes >&2"}, Workdir: "/workspace"}
	if _, err := a.Client.Exec(t.Context(), req, out.output); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.stdout.Bytes(), data) {
		t.Errorf("stdout has %d bytes that differ from the %d written", out.stdout.Len(), len(data))
	}
	if !bytes.Equal(out.stderr.Bytes(), data) {
		t.Errorf("stderr has %d bytes that differ from the %d written", out.stderr.Len(), len(data))
	}
}

// escapeScript starts a child that leaves the process group with setsid
// and writes its pid to escaped.pid, then waits to be stopped.
const escapeScript = "setsid sh -c 'echo $$ > escaped.pid; exec sleep 60' & sleep 60"

func TestExecTimeoutKillsSetsidChild(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	req := provider.ExecRequest{Argv: []string{"sh", "-c", escapeScript}, Workdir: "/workspace", Timeout: time.Second}
	res, err := a.Client.Exec(t.Context(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != 137 || res.ExitReason != provider.ExitTimeout {
		t.Errorf("result = %+v, want a timeout with exit code 137", res)
	}
	assertProcessGone(t, readPid(t, filepath.Join(a.Root, "workspace", "escaped.pid")))
}

func TestExecCancelKillsSetsidChild(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	pidFile := filepath.Join(a.Root, "workspace", "escaped.pid")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		waitForFile(t, pidFile)
		cancel()
	}()
	req := provider.ExecRequest{Argv: []string{"sh", "-c", escapeScript}, Workdir: "/workspace"}
	_, err := a.Client.Exec(ctx, req, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec error = %v, want context.Canceled", err)
	}
	assertProcessGone(t, readPid(t, pidFile))
}

func waitForFile(t *testing.T, path string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(path); err == nil && bytes.HasSuffix(data, []byte("\n")) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s did not appear within 10s", path)
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	waitForFile(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// assertProcessGone fails unless pid has exited and been reaped within a
// few seconds. The agent reaps it, because it is the subreaper of its
// commands' orphans.
func assertProcessGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	t.Errorf("process %d still exists 5s after the exec ended: %s", pid, stat)
}

func TestExecErrorsMatchSentinels(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	if err := os.WriteFile(filepath.Join(a.Root, "workspace", "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  provider.ExecRequest
		want error
	}{
		{"empty argv", provider.ExecRequest{}, provider.ErrInvalidArgument},
		{"workdir is a file", provider.ExecRequest{Argv: []string{"true"}, Workdir: "/workspace/file"}, provider.ErrNotDirectory},
		{"relative workdir", provider.ExecRequest{Argv: []string{"true"}, Workdir: "workspace"}, provider.ErrInvalidArgument},
		{"bad env name", provider.ExecRequest{Argv: []string{"true"}, Env: map[string]string{"A=B": "c"}}, provider.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Client.Exec(t.Context(), tt.req, nil)
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want one matching %v", err, tt.want)
			}
		})
	}
}

func TestFileErrorsMatchSentinels(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := t.Context()
	c := a.Client
	if err := c.WriteFile(ctx, "/workspace/dir/file", strings.NewReader("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		call func() error
		op   string
		path string
		want error
	}{
		{"stat missing", func() error { _, err := c.Stat(ctx, "/workspace/missing"); return err },
			"stat", "/workspace/missing", provider.ErrPathNotFound},
		{"read directory", func() error { _, err := c.ReadFile(ctx, "/workspace/dir"); return err },
			"", "/workspace/dir", provider.ErrIsDirectory},
		{"list file", func() error { _, err := c.ListDir(ctx, "/workspace/dir/file"); return err },
			"", "/workspace/dir/file", provider.ErrNotDirectory},
		{"remove non-empty", func() error { return c.Remove(ctx, "/workspace/dir", false) },
			"", "/workspace/dir", provider.ErrDirectoryNotEmpty},
		{"relative path", func() error { return c.Mkdir(ctx, "workspace/x", 0o755) },
			"", "workspace/x", provider.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want one matching %v", err, tt.want)
			}
			var pathErr *provider.PathError
			if !errors.As(err, &pathErr) {
				t.Fatalf("error %T is not a *provider.PathError", err)
			}
			if pathErr.Path != tt.path {
				t.Errorf("PathError.Path = %q, want %q", pathErr.Path, tt.path)
			}
			if tt.op != "" && pathErr.Op != tt.op {
				t.Errorf("PathError.Op = %q, want %q", pathErr.Op, tt.op)
			}
		})
	}
}

// patternReader produces size deterministic bytes without holding them in
// memory.
type patternReader struct {
	offset, size int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.offset >= r.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.size-r.offset))
	for i := range n {
		v := r.offset + int64(i)
		p[i] = byte(v ^ v>>8 ^ v>>16)
	}
	r.offset += int64(n)
	return n, nil
}

func TestLargeFileStreamsBothWays(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	const size = 64 << 20
	if err := a.Client.WriteFile(t.Context(), "/workspace/big", &patternReader{size: size}, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	_, _ = io.Copy(want, &patternReader{size: size})

	body, err := a.Client.ReadFile(t.Context(), "/workspace/big")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	got := sha256.New()
	n, err := io.Copy(got, body)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Errorf("read %d bytes with a different hash, want the %d bytes written", n, size)
	}
}

func TestWriteFileReaderErrorKeepsOldFile(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := t.Context()
	if err := a.Client.WriteFile(ctx, "/workspace/f", strings.NewReader("old"), 0o644); err != nil {
		t.Fatal(err)
	}

	cause := errors.New("source went away")
	r := io.MultiReader(&patternReader{size: 4 << 20}, &errReader{cause})
	err := a.Client.WriteFile(ctx, "/workspace/f", r, 0o644)
	if !errors.Is(err, cause) {
		t.Fatalf("WriteFile error = %v, want the reader's error", err)
	}

	got, err := os.ReadFile(filepath.Join(a.Root, "workspace", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "old" {
		t.Errorf("file has %d bytes after a failed upload, want the old content", len(got))
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

func TestClientReconnectsAfterAgentRestart(t *testing.T) {
	bin := agenttest.Build(t)
	a, err := agenttest.Launch(t.Context(), bin, agenttest.Options{Log: func(line string) { t.Log("agent: " + line) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() }) // the test kills this agent, so Stop reports its signal

	client, err := agent.Dial(t.Context(), agent.UnixDialer(a.Socket))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.Exited()
	err = client.Ping(t.Context())
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Ping with the agent gone: error = %v, want one matching provider.ErrUnavailable", err)
	}

	restarted := exec.Command(bin, "--root", a.Root, "--listen", "unix:"+a.Socket)
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = restarted.Process.Signal(syscall.SIGTERM)
		_ = restarted.Wait()
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		err = client.Ping(t.Context())
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Ping after the agent restarted: %v", err)
	}
	res, err := client.Exec(t.Context(), provider.ExecRequest{Argv: []string{"true"}}, nil)
	if err != nil || res.ExitCode != 0 {
		t.Errorf("exec after the restart = %+v, %v; want exit 0", res, err)
	}
}

func TestCloseEndsCallsInProgress(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	client, err := agent.Dial(t.Context(), agent.UnixDialer(a.Socket))
	if err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		req := provider.ExecRequest{Argv: []string{"sh", "-c", escapeScript}, Workdir: "/workspace"}
		_, err := client.Exec(t.Context(), req, nil)
		done <- err
	}()
	pid := readPid(t, filepath.Join(a.Root, "workspace", "escaped.pid"))
	client.Close()

	select {
	case err := <-done:
		if !errors.Is(err, provider.ErrUnavailable) {
			t.Errorf("exec in progress at Close: error = %v, want one matching provider.ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("exec still running 5s after Close")
	}
	assertProcessGone(t, pid)

	if err := client.Ping(t.Context()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Ping after Close: error = %v, want net.ErrClosed", err)
	}
}

func TestBinaryPath(t *testing.T) {
	bin := agenttest.Build(t)

	t.Setenv(agent.EnvBinary, bin)
	got, err := agent.BinaryPath()
	if err != nil || got != bin {
		t.Errorf("with %s set: BinaryPath = %q, %v; want %q", agent.EnvBinary, got, err, bin)
	}

	missing := filepath.Join(t.TempDir(), "nothing-here")
	t.Setenv(agent.EnvBinary, missing)
	_, err = agent.BinaryPath()
	if !errors.Is(err, agent.ErrBinaryNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("with %s missing: error = %v, want ErrBinaryNotFound naming the path", agent.EnvBinary, err)
	}

	t.Setenv(agent.EnvBinary, "")
	t.Setenv("PATH", filepath.Dir(bin))
	got, err = agent.BinaryPath()
	if err != nil || got != bin {
		t.Errorf("in PATH: BinaryPath = %q, %v; want %q", got, err, bin)
	}

	t.Setenv("PATH", t.TempDir())
	_, err = agent.BinaryPath()
	if !errors.Is(err, agent.ErrBinaryNotFound) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("nowhere: error = %v, want ErrBinaryNotFound saying how to build it", err)
	}
}
