package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/pkg/client"
)

// testVersion is linked into the binary under test, to check that the
// version set with -ldflags reaches both the client and the server.
const testVersion = "v0.0.0-e2e"

// binary is the stacyvm binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stacyvm-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "stacyvm")

	build := exec.Command("go", "build",
		"-ldflags", "-X github.com/stacyvm/stacyvm/internal/version.Version="+testVersion,
		"-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build stacyvm:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}

	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverProcess is a running "stacyvm serve".
type serverProcess struct {
	cmd     *exec.Cmd
	url     string
	dataDir string
	stderr  *syncBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// baseEnv is the environment of every process the tests start: the test's
// own, without the STACYVM_ variables of the machine running the tests.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STACYVM_") {
			env = append(env, kv)
		}
	}
	return env
}

// startServe runs "stacyvm serve" on a free loopback port with the mock
// provider and waits until it is ready. The process is killed when the test
// ends, if it is still running.
func startServe(t *testing.T, dataDir string, extraArgs ...string) *serverProcess {
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--default-provider", "mock", "--log-level", "debug"}, extraArgs...)
	cmd := exec.Command(binary, args...)
	cmd.Env = baseEnv()
	cmd.Dir = t.TempDir()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, dataDir: dataDir, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("serve stderr:\n%s", p.stderr.String())
		}
	})

	p.url = readReadyLine(t, p, stdout)
	waitReady(t, p)
	return p
}

// readReadyLine returns the server URL from the line serve prints once it
// listens, and keeps draining stdout afterwards.
func readReadyLine(t *testing.T, p *serverProcess, stdout io.Reader) string {
	t.Helper()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()

	select {
	case line, ok := <-lines:
		_, url, found := strings.Cut(line, " ready on ")
		if !ok || !found {
			t.Fatalf("serve printed %q, want a ready line; stderr:\n%s", line, p.stderr.String())
		}
		return url
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not print a ready line within 30s; stderr:\n%s", p.stderr.String())
	}
	return ""
}

// waitReady polls /ready until the server reports ready.
func waitReady(t *testing.T, p *serverProcess) {
	t.Helper()
	c, err := client.New(p.url)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := c.Ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 15s: %v; stderr:\n%s", err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends sig and waits for the process to exit.
func (p *serverProcess) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	<-p.done
}

// exitCode waits up to timeout for the process to exit and returns its exit
// code.
func (p *serverProcess) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("serve did not exit within %v; stderr:\n%s", timeout, p.stderr.String())
	}
	var exitErr *exec.ExitError
	if errors.As(p.waitErr, &exitErr) {
		return exitErr.ExitCode()
	}
	if p.waitErr != nil {
		t.Fatalf("wait for serve: %v", p.waitErr)
	}
	return 0
}

// result is the outcome of one CLI invocation.
type result struct {
	stdout string
	stderr string
	code   int
}

// cli runs the stacyvm binary against serverURL with stdin and returns its
// output and exit code.
func cli(t *testing.T, serverURL string, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(baseEnv(), "STACYVM_SERVER="+serverURL)
	cmd.Dir = t.TempDir()
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run stacyvm %v: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// mustCLI runs the CLI and fails the test unless it exits with 0.
func mustCLI(t *testing.T, serverURL string, args ...string) string {
	t.Helper()
	r := cli(t, serverURL, nil, args...)
	if r.code != 0 {
		t.Fatalf("stacyvm %s: exit code %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// spawnID spawns a sandbox with the CLI and returns its ID.
func spawnID(t *testing.T, serverURL string, args ...string) string {
	t.Helper()
	id := strings.TrimSpace(mustCLI(t, serverURL, append([]string{"spawn"}, args...)...))
	if !strings.HasPrefix(id, "sb-") || strings.ContainsAny(id, " \n") {
		t.Fatalf("spawn printed %q, want one sandbox ID", id)
	}
	return id
}
