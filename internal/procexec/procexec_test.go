package procexec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

var testEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// chunk is one call of the OutputFunc.
type chunk struct {
	stream provider.Stream
	data   string
}

// recorder collects output in delivery order.
type recorder struct {
	mu     sync.Mutex
	chunks []chunk
}

func (r *recorder) out(stream provider.Stream, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chunks = append(r.chunks, chunk{stream, string(p)})
}

func (r *recorder) text(stream provider.Stream) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, c := range r.chunks {
		if c.stream == stream {
			b.WriteString(c.data)
		}
	}
	return b.String()
}

// runCommand runs c with testEnv when c.Env is nil and fails the test on an
// error.
func runCommand(t *testing.T, c Command) (provider.ExecResult, *recorder) {
	t.Helper()
	if c.Env == nil {
		c.Env = testEnv
	}
	rec := &recorder{}
	res, err := Run(t.Context(), c, rec.out)
	if err != nil {
		t.Fatalf("Run(%q): %v", c.Argv, err)
	}
	return res, rec
}

func sh(script string) []string { return []string{"sh", "-c", script} }

// assertNotExistsAt waits until deadline and then checks that path is absent.
func assertNotExistsAt(t *testing.T, deadline time.Time, paths ...string) {
	t.Helper()
	time.Sleep(time.Until(deadline))
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after the tree was killed (stat error %v)", filepath.Base(p), err)
		}
	}
}

// isDead reports whether pid is gone or a zombie.
func isDead(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := bytes.Cut(stat, []byte(") "))
	return len(rest) > 0 && rest[0] == 'Z'
}

func TestRunEcho(t *testing.T) {
	t.Parallel()
	res, rec := runCommand(t, Command{Argv: []string{"echo", "hello", "world"}})
	if got := rec.text(provider.Stdout); got != "hello world\n" {
		t.Errorf("stdout = %q, want %q", got, "hello world\n")
	}
	if got := rec.text(provider.Stderr); got != "" {
		t.Errorf("stderr = %q, want empty", got)
	}
	if res.ExitCode != 0 || res.ExitReason != "" || res.TimedOut || res.Truncated {
		t.Errorf("result = %+v, want a clean exit", res)
	}
	if res.Duration <= 0 {
		t.Errorf("Duration = %v, want > 0", res.Duration)
	}
}

func TestRunExitCode(t *testing.T) {
	t.Parallel()
	res, _ := runCommand(t, Command{Argv: sh("exit 7")})
	if res.ExitCode != 7 {
		t.Errorf("ExitCode = %d, want 7", res.ExitCode)
	}
	if res.ExitReason != "" {
		t.Errorf("ExitReason = %q, want empty", res.ExitReason)
	}
}

func TestRunKilledBySignal(t *testing.T) {
	t.Parallel()
	res, _ := runCommand(t, Command{Argv: sh("kill -TERM $$")})
	if res.ExitCode != 128+15 {
		t.Errorf("ExitCode = %d, want 143", res.ExitCode)
	}
	if res.ExitReason != provider.ExitSignal {
		t.Errorf("ExitReason = %q, want %q", res.ExitReason, provider.ExitSignal)
	}
}

func TestRunWorkdir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, rec := runCommand(t, Command{Argv: []string{"pwd"}, Dir: dir})
	if got := strings.TrimSpace(rec.text(provider.Stdout)); got != dir {
		t.Errorf("pwd = %q, want %q", got, dir)
	}
}

func TestRunMissingWorkdir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := Run(t.Context(), Command{Argv: []string{"true"}, Env: testEnv, Dir: dir}, nil)
	if !errors.Is(err, provider.ErrPathNotFound) {
		t.Errorf("err = %v, want ErrPathNotFound", err)
	}
}

func TestRunEmptyArgv(t *testing.T) {
	t.Parallel()
	_, err := Run(t.Context(), Command{Env: testEnv}, nil)
	if !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("err = %v, want ErrInvalidArgument", err)
	}
}

func TestRunCommandNotFound(t *testing.T) {
	t.Parallel()
	res, rec := runCommand(t, Command{Argv: []string{"no-such-command-xyz", "arg"}})
	if res.ExitCode != ExitNotFound {
		t.Errorf("ExitCode = %d, want %d", res.ExitCode, ExitNotFound)
	}
	if got, want := rec.text(provider.Stderr), "no-such-command-xyz: command not found\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestRunPathNotFound(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	res, rec := runCommand(t, Command{Argv: []string{missing}})
	if res.ExitCode != ExitNotFound {
		t.Errorf("ExitCode = %d, want %d", res.ExitCode, ExitNotFound)
	}
	if got := rec.text(provider.Stderr); !strings.HasPrefix(got, missing+": ") {
		t.Errorf("stderr = %q, want a message starting with the path", got)
	}
}

func TestRunNotExecutable(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, _ := runCommand(t, Command{Argv: []string{script}})
	if res.ExitCode != ExitCannotExecute {
		t.Errorf("ExitCode = %d, want %d", res.ExitCode, ExitCannotExecute)
	}
}

func TestRunLooksUpPathFromEnv(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	script := filepath.Join(bin, "hello-from-path")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho found\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + bin + ":/usr/bin:/bin"}
	_, rec := runCommand(t, Command{Argv: []string{"hello-from-path"}, Env: env})
	if got := rec.text(provider.Stdout); got != "found\n" {
		t.Errorf("stdout = %q, want %q", got, "found\n")
	}
}

func TestRunStdinText(t *testing.T) {
	t.Parallel()
	in := "first line\nsecond line without newline"
	_, rec := runCommand(t, Command{Argv: []string{"cat"}, Stdin: []byte(in)})
	if got := rec.text(provider.Stdout); got != in {
		t.Errorf("stdout = %q, want %q", got, in)
	}
}

func TestRunStdinBinary(t *testing.T) {
	t.Parallel()
	// 1 MiB of every byte value, more than a pipe buffer holds.
	in := make([]byte, 1<<20)
	for i := range in {
		in[i] = byte(i)
	}
	sum := sha256.Sum256(in)
	want := hex.EncodeToString(sum[:])

	_, rec := runCommand(t, Command{Argv: []string{"sha256sum"}, Stdin: in})
	got, _, _ := strings.Cut(rec.text(provider.Stdout), " ")
	if got != want {
		t.Errorf("sha256sum of stdin = %s, want %s", got, want)
	}
}

func TestRunStdinUnread(t *testing.T) {
	t.Parallel()
	// The command never reads its stdin, which is larger than a pipe holds.
	res, _ := runCommand(t, Command{Argv: []string{"true"}, Stdin: make([]byte, 4<<20)})
	if res.ExitCode != 0 {
		t.Errorf("ExitCode = %d, want 0", res.ExitCode)
	}
}

func TestRunEmptyStdinIsEOF(t *testing.T) {
	t.Parallel()
	start := time.Now()
	res, rec := runCommand(t, Command{Argv: []string{"cat"}, Timeout: 5 * time.Second})
	if res.TimedOut {
		t.Fatal("cat with empty stdin timed out, want EOF at once")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("cat took %v, want it to return at once", elapsed)
	}
	if got := rec.text(provider.Stdout); got != "" {
		t.Errorf("stdout = %q, want empty", got)
	}
}

func TestRunEnvIsExact(t *testing.T) {
	t.Setenv("STACYVM_TEST_PARENT_ONLY", "leaked")
	env := append(slices.Clone(testEnv), "GREETING=hello world", EnvExecID+"=caller-value")
	_, rec := runCommand(t, Command{Argv: []string{"env"}, Env: env})

	var names []string
	for line := range strings.Lines(rec.text(provider.Stdout)) {
		name, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		names = append(names, name)
		if name == EnvExecID && (value == "caller-value" || len(value) != 32) {
			t.Errorf("%s = %q, want a 32-digit cookie set by Run", EnvExecID, value)
		}
		if name == "GREETING" && value != "hello world" {
			t.Errorf("GREETING = %q, want %q", value, "hello world")
		}
	}
	slices.Sort(names)
	want := []string{"GREETING", "PATH", EnvExecID}
	if !slices.Equal(names, want) {
		t.Errorf("environment names = %q, want %q", names, want)
	}
}

func TestRunNilEnvInheritsNothing(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	if _, err := Run(t.Context(), Command{Argv: []string{"/usr/bin/env"}}, rec.out); err != nil {
		t.Fatal(err)
	}
	got := rec.text(provider.Stdout)
	if !strings.HasPrefix(got, EnvExecID+"=") || strings.Count(got, "\n") != 1 {
		t.Errorf("environment = %q, want only %s", got, EnvExecID)
	}
}

// treeScript starts a plain background child and one that left the process
// group with setsid; each would create its file after two seconds.
func treeScript(dir string) string {
	return fmt.Sprintf(
		"(sleep 2; touch %[1]s/background) & setsid sh -c 'sleep 2; touch %[1]s/escaped' & sleep 30",
		dir)
}

func TestRunTimeoutKillsTree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := time.Now()
	res, _ := runCommand(t, Command{Argv: sh(treeScript(dir)), Timeout: 500 * time.Millisecond})
	elapsed := time.Since(start)

	if !res.TimedOut {
		t.Error("TimedOut = false, want true")
	}
	if res.ExitReason != provider.ExitTimeout {
		t.Errorf("ExitReason = %q, want %q", res.ExitReason, provider.ExitTimeout)
	}
	if res.ExitCode != ExitTimedOut {
		t.Errorf("ExitCode = %d, want %d", res.ExitCode, ExitTimedOut)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Run returned after %v, want about the 500ms timeout", elapsed)
	}
	assertNotExistsAt(t, start.Add(3*time.Second),
		filepath.Join(dir, "background"), filepath.Join(dir, "escaped"))
}

func TestRunCancelKillsTree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)

	start := time.Now()
	_, err := Run(ctx, Command{Argv: sh(treeScript(dir)), Env: testEnv}, nil)
	elapsed := time.Since(start)

	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Run returned after %v, want soon after the 300ms cancel", elapsed)
	}
	assertNotExistsAt(t, start.Add(3*time.Second),
		filepath.Join(dir, "background"), filepath.Join(dir, "escaped"))
}

func TestRunCancelledBeforeStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	marker := filepath.Join(dir, "ran")
	_, err := Run(ctx, Command{Argv: []string{"touch", marker}, Env: testEnv}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Error("the command ran although ctx was cancelled")
	}
}

func TestRunKillsLeftoverProcesses(t *testing.T) {
	t.Parallel()
	// The background sleep holds stdout open; Run must not wait for it.
	start := time.Now()
	res, rec := runCommand(t, Command{Argv: sh("sleep 30 & echo $!; setsid sleep 30 & echo $!")})
	if elapsed := time.Since(start); elapsed > OutputGrace+time.Second {
		t.Errorf("Run returned after %v, want about the %v grace", elapsed, OutputGrace)
	}
	if res.ExitCode != 0 {
		t.Errorf("ExitCode = %d, want 0", res.ExitCode)
	}

	fields := strings.Fields(rec.text(provider.Stdout))
	if len(fields) != 2 {
		t.Fatalf("stdout = %q, want two PIDs", fields)
	}
	for _, field := range fields {
		pid, err := strconv.Atoi(field)
		if err != nil {
			t.Fatalf("PID %q: %v", field, err)
		}
		if !isDead(pid) {
			t.Errorf("background process %d is alive after Run returned", pid)
		}
	}
}

func TestRunOutputAfterExitWithinGrace(t *testing.T) {
	t.Parallel()
	_, rec := runCommand(t, Command{Argv: sh("(sleep 0.05; echo late) & echo early")})
	if got := rec.text(provider.Stdout); got != "early\nlate\n" {
		t.Errorf("stdout = %q, want %q", got, "early\nlate\n")
	}
}

func TestRunOutputCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		script        string
		wantStdout    int
		wantStderr    int
		wantTruncated bool
	}{
		{"stdout over", "head -c 100000 /dev/zero", 1000, 0, true},
		{"stderr over", "head -c 5000 /dev/zero >&2; echo ok", 3, 1000, true},
		{"exactly at cap", "head -c 1000 /dev/zero; head -c 1000 /dev/zero >&2", 1000, 1000, false},
		{"under cap", "echo short", 6, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, rec := runCommand(t, Command{Argv: sh(tt.script), MaxOutputBytes: 1000})
			if got := len(rec.text(provider.Stdout)); got != tt.wantStdout {
				t.Errorf("stdout bytes = %d, want %d", got, tt.wantStdout)
			}
			if got := len(rec.text(provider.Stderr)); got != tt.wantStderr {
				t.Errorf("stderr bytes = %d, want %d", got, tt.wantStderr)
			}
			if res.Truncated != tt.wantTruncated {
				t.Errorf("Truncated = %v, want %v", res.Truncated, tt.wantTruncated)
			}
			if res.ExitCode != 0 {
				t.Errorf("ExitCode = %d, want 0", res.ExitCode)
			}
		})
	}
}

func TestRunStreamOrder(t *testing.T) {
	t.Parallel()
	script := `i=1; while [ $i -le 1000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`
	_, rec := runCommand(t, Command{Argv: sh(script)})

	for _, stream := range []provider.Stream{provider.Stdout, provider.Stderr} {
		prefix := map[provider.Stream]string{provider.Stdout: "out", provider.Stderr: "err"}[stream]
		lines := strings.Split(strings.TrimSuffix(rec.text(stream), "\n"), "\n")
		if len(lines) != 1000 {
			t.Fatalf("%s has %d lines, want 1000", stream, len(lines))
		}
		for i, line := range lines {
			if want := fmt.Sprintf("%s %d", prefix, i+1); line != want {
				t.Fatalf("%s line %d = %q, want %q", stream, i+1, line, want)
			}
		}
	}
}

func TestRunDeliversAsProduced(t *testing.T) {
	t.Parallel()
	_, rec := runCommand(t, Command{Argv: sh("echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c")})
	want := []chunk{{provider.Stdout, "a\n"}, {provider.Stderr, "b\n"}, {provider.Stdout, "c\n"}}
	if !slices.Equal(rec.chunks, want) {
		t.Errorf("chunks = %q, want %q", rec.chunks, want)
	}
}

func TestRunNilOutput(t *testing.T) {
	t.Parallel()
	res, err := Run(t.Context(), Command{Argv: sh("echo discarded; exit 3"), Env: testEnv}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 {
		t.Errorf("ExitCode = %d, want 3", res.ExitCode)
	}
}

func TestRunConcurrent(t *testing.T) {
	t.Parallel()
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rec := &recorder{}
			script := fmt.Sprintf("echo out-%d; echo err-%d >&2; exit %d", i, i, i%8)
			res, err := Run(t.Context(), Command{Argv: sh(script), Env: testEnv}, rec.out)
			if err != nil {
				t.Errorf("run %d: %v", i, err)
				return
			}
			if got, want := rec.text(provider.Stdout), fmt.Sprintf("out-%d\n", i); got != want {
				t.Errorf("run %d stdout = %q, want %q", i, got, want)
			}
			if got, want := rec.text(provider.Stderr), fmt.Sprintf("err-%d\n", i); got != want {
				t.Errorf("run %d stderr = %q, want %q", i, got, want)
			}
			if res.ExitCode != i%8 {
				t.Errorf("run %d ExitCode = %d, want %d", i, res.ExitCode, i%8)
			}
		})
	}
	wg.Wait()
}

// A consumer slower than the drain limits must still receive every byte
// that a command wrote before it exited.
func TestRunSlowConsumerGetsAllOutput(t *testing.T) {
	t.Parallel()
	const size = 2 << 20
	var got int64
	slow := func(_ provider.Stream, p []byte) {
		got += int64(len(p))
		time.Sleep(40 * time.Millisecond)
	}
	c := Command{Argv: sh(fmt.Sprintf("head -c %d /dev/zero", size)), Env: testEnv}
	res, err := Run(t.Context(), c, slow)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.ExitCode != 0 {
		t.Errorf("exit code: got %d, want 0", res.ExitCode)
	}
	if got != size {
		t.Errorf("bytes delivered: got %d, want %d", got, size)
	}
	if res.Truncated {
		t.Error("result is marked truncated, want all output delivered")
	}
}
