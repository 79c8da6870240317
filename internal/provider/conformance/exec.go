package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

var execCases = []testCase{
	{"echo", testEcho},
	{"exit_code", testExitCode},
	{"signal_exit_code", testSignalExitCode},
	{"env", testEnv},
	{"workdir", testWorkdir},
	{"argv_is_literal", testArgvIsLiteral},
	{"shell_expands", testShellExpands},
	{"stdin_text", testStdinText},
	{"stdin_binary", testStdinBinary},
	{"empty_stdin_is_eof", testEmptyStdinIsEOF},
	{"timeout_kills_tree", testTimeoutKillsTree},
	{"cancel_kills_tree", testCancelKillsTree},
	{"stream_order", testStreamOrder},
	{"delivery_order", testDeliveryOrder},
	{"output_cap", testOutputCap},
	{"command_not_found", testCommandNotFound},
	{"concurrent_execs", testConcurrentExecs},
	{"files_shared_with_exec", testFilesSharedWithExec},
}

func testEcho(t *testing.T, s *suite) {
	id := s.spawn(t)
	res, out := s.exec(t, id, provider.ExecRequest{Argv: []string{"echo", "hello", "world"}})
	if got := out.Stdout(); got != "hello world\n" {
		t.Errorf("stdout = %q, want %q", got, "hello world\n")
	}
	if got := out.Stderr(); got != "" {
		t.Errorf("stderr = %q, want empty", got)
	}
	if res.ExitCode != 0 || res.TimedOut || res.Truncated || res.ExitReason != "" {
		t.Errorf("result = %+v, want a clean exit", res)
	}
	if res.Duration <= 0 {
		t.Errorf("Duration = %v, want > 0", res.Duration)
	}
}

func testExitCode(t *testing.T, s *suite) {
	id := s.spawn(t)
	res, _ := s.shell(t, id, "exit 7")
	if res.ExitCode != 7 {
		t.Errorf("ExitCode = %d, want 7", res.ExitCode)
	}
	if res.ExitReason != "" {
		t.Errorf("ExitReason = %q, want empty for a normal exit", res.ExitReason)
	}
}

func testSignalExitCode(t *testing.T, s *suite) {
	id := s.spawn(t)
	res, _ := s.shell(t, id, "kill -TERM $$")
	if res.ExitCode != 128+15 {
		t.Errorf("ExitCode = %d, want 143 (128+SIGTERM)", res.ExitCode)
	}
	if res.ExitReason != provider.ExitSignal {
		t.Errorf("ExitReason = %q, want %q", res.ExitReason, provider.ExitSignal)
	}
}

func testEnv(t *testing.T, s *suite) {
	spec := s.baseSpec()
	spec.Env = map[string]string{"SPAWN_ONLY": "from spawn", "BOTH": "spawn value"}
	id := s.spawnSpec(t, spec)

	req := provider.ExecRequest{
		Argv: []string{"sh", "-c", `printf '%s|%s|%s' "$SPAWN_ONLY" "$BOTH" "$REQUEST_ONLY"`},
		Env:  map[string]string{"BOTH": "request value", "REQUEST_ONLY": "from request"},
	}
	_, out := s.exec(t, id, req)
	want := "from spawn|request value|from request"
	if got := out.Stdout(); got != want {
		t.Errorf("stdout = %q, want %q (request Env wins over spawn Env)", got, want)
	}
}

func testWorkdir(t *testing.T, s *suite) {
	id := s.spawn(t)
	dir := Workspace + "/sub/deeper"
	res, out := s.exec(t, id, provider.ExecRequest{
		Argv:    []string{"sh", "-c", "touch marker && pwd"},
		Workdir: dir,
	})
	if res.ExitCode != 0 {
		t.Fatalf("ExitCode = %d, stderr %q; want the provider to create the workdir", res.ExitCode, out.Stderr())
	}
	if info := s.stat(t, id, dir+"/marker"); info.Type != provider.TypeFile {
		t.Errorf("Stat(marker).Type = %q, want %q", info.Type, provider.TypeFile)
	}
	if !s.h.HostPaths {
		if got := strings.TrimSpace(out.Stdout()); got != dir {
			t.Errorf("pwd = %q, want %q", got, dir)
		}
	}
}

func testArgvIsLiteral(t *testing.T, s *suite) {
	id := s.spawn(t)
	args := []string{"$HOME", "two  spaces", `it's "quoted"`, "*", "", "a;b|c&&d", "tab\there"}
	argv := append([]string{"printf", "[%s]\n"}, args...)
	_, out := s.exec(t, id, provider.ExecRequest{Argv: argv})

	var want strings.Builder
	for _, a := range args {
		fmt.Fprintf(&want, "[%s]\n", a)
	}
	if got := out.Stdout(); got != want.String() {
		t.Errorf("stdout = %q, want %q", got, want.String())
	}
}

func testShellExpands(t *testing.T, s *suite) {
	id := s.spawn(t)
	_, out := s.shell(t, id, "echo $((1+2))")
	if got := out.Stdout(); got != "3\n" {
		t.Errorf("stdout = %q, want %q", got, "3\n")
	}
}

func testStdinText(t *testing.T, s *suite) {
	id := s.spawn(t)
	in := "line one\nline two\nno newline at the end"
	_, out := s.exec(t, id, provider.ExecRequest{Argv: []string{"cat"}, Stdin: []byte(in)})
	if got := out.Stdout(); got != in {
		t.Errorf("stdout = %q, want %q", got, in)
	}
}

func testStdinBinary(t *testing.T, s *suite) {
	id := s.spawn(t)
	in := allByteValues(1024) // 256 KiB, more than a pipe buffer holds
	sum := sha256.Sum256(in)
	want := hex.EncodeToString(sum[:])

	_, out := s.exec(t, id, provider.ExecRequest{Argv: []string{"sha256sum"}, Stdin: in})
	got, _, _ := strings.Cut(out.Stdout(), " ")
	if got != want {
		t.Errorf("sha256sum of stdin = %q, want %q", got, want)
	}
}

// allByteValues returns the byte values 0 to 255, repeated n times.
func allByteValues(n int) []byte {
	b := make([]byte, 256*n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func testEmptyStdinIsEOF(t *testing.T, s *suite) {
	id := s.spawn(t)
	res, out := s.exec(t, id, provider.ExecRequest{Argv: []string{"cat"}, Timeout: s.within(10 * time.Second)})
	if res.TimedOut {
		t.Fatal("cat with no stdin timed out, want EOF at once")
	}
	if res.Duration > s.within(2*time.Second) {
		t.Errorf("cat took %v, want it to return at once", res.Duration)
	}
	if got := out.Stdout(); got != "" {
		t.Errorf("stdout = %q, want empty", got)
	}
}

// treeScript starts a background child and a child that left the process
// group with setsid, each of which creates a file after two seconds, then
// waits long enough to be stopped.
const treeScript = "(sleep 2; touch background) & setsid sh -c 'sleep 2; touch escaped' & sleep 30"

func testTimeoutKillsTree(t *testing.T, s *suite) {
	id := s.spawn(t)
	start := time.Now()
	res, _ := s.exec(t, id, provider.ExecRequest{
		Argv:    []string{"sh", "-c", treeScript},
		Timeout: time.Second,
	})
	elapsed := time.Since(start)

	if !res.TimedOut {
		t.Error("TimedOut = false, want true")
	}
	if res.ExitReason != provider.ExitTimeout {
		t.Errorf("ExitReason = %q, want %q", res.ExitReason, provider.ExitTimeout)
	}
	if limit := s.within(3 * time.Second); elapsed > limit {
		t.Errorf("Exec returned after %v, want within %v of a 1s timeout", elapsed, limit)
	}

	sleepUntil(t, time.Now().Add(3*time.Second))
	s.assertAbsent(t, id, Workspace+"/background")
	s.assertAbsent(t, id, Workspace+"/escaped")
}

func testCancelKillsTree(t *testing.T, s *suite) {
	id := s.spawn(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(300*time.Millisecond, cancel)

	start := time.Now()
	req := provider.ExecRequest{
		Argv:    []string{"sh", "-c", "(sleep 2; touch late-child) & setsid sh -c 'sleep 2; touch late-session' & sleep 2; touch late"},
		Workdir: Workspace,
	}
	_, err := s.p.Exec(ctx, id, req, (&Output{}).Func)
	elapsed := time.Since(start)

	assertErrorIs(t, "Exec with a cancelled context", err, context.Canceled)
	if limit := s.within(2 * time.Second); elapsed > limit {
		t.Errorf("Exec returned after %v, want within %v", elapsed, limit)
	}

	sleepUntil(t, start.Add(3*time.Second))
	for _, name := range []string{"late", "late-child", "late-session"} {
		s.assertAbsent(t, id, Workspace+"/"+name)
	}
}

func testStreamOrder(t *testing.T, s *suite) {
	id := s.spawn(t)
	script := `i=1; while [ $i -le 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`
	_, out := s.shell(t, id, script)

	for stream, prefix := range map[provider.Stream]string{provider.Stdout: "out", provider.Stderr: "err"} {
		lines := strings.Split(strings.TrimSuffix(out.Text(stream), "\n"), "\n")
		if len(lines) != 200 {
			t.Errorf("%s has %d lines, want 200", stream, len(lines))
			continue
		}
		for i, line := range lines {
			if want := fmt.Sprintf("%s %d", prefix, i+1); line != want {
				t.Errorf("%s line %d = %q, want %q", stream, i+1, line, want)
				break
			}
		}
	}
}

func testDeliveryOrder(t *testing.T, s *suite) {
	id := s.spawn(t)
	_, out := s.shell(t, id, "echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c")
	want := []Chunk{{provider.Stdout, "a\n"}, {provider.Stderr, "b\n"}, {provider.Stdout, "c\n"}}
	if got := out.Chunks(); !slices.Equal(got, want) {
		t.Errorf("chunks = %q, want %q", got, want)
	}
}

func testOutputCap(t *testing.T, s *suite) {
	id := s.spawn(t)
	res, out := s.exec(t, id, provider.ExecRequest{
		Argv:           []string{"sh", "-c", "head -c 100000 /dev/zero; echo short >&2"},
		MaxOutputBytes: 1000,
	})
	if got := len(out.Stdout()); got != 1000 {
		t.Errorf("stdout bytes = %d, want exactly the cap of 1000", got)
	}
	if got := out.Stderr(); got != "short\n" {
		t.Errorf("stderr = %q, want %q (the cap is per stream)", got, "short\n")
	}
	if !res.Truncated {
		t.Error("Truncated = false, want true")
	}
	if res.ExitCode != 0 {
		t.Errorf("ExitCode = %d, want 0", res.ExitCode)
	}

	res, _ = s.exec(t, id, provider.ExecRequest{Argv: []string{"echo", "short"}, MaxOutputBytes: 1000})
	if res.Truncated {
		t.Error("Truncated = true for output under the cap, want false")
	}
}

func testCommandNotFound(t *testing.T, s *suite) {
	id := s.spawn(t)
	res, out := s.exec(t, id, provider.ExecRequest{Argv: []string{"no-such-command-conformance"}})
	if res.ExitCode != 127 {
		t.Errorf("ExitCode = %d, want 127", res.ExitCode)
	}
	if !strings.Contains(out.Stderr(), "no-such-command-conformance") {
		t.Errorf("stderr = %q, want a message naming the command", out.Stderr())
	}
}

func testConcurrentExecs(t *testing.T, s *suite) {
	id := s.spawn(t)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			script := fmt.Sprintf("echo out-%d; sleep 0.2; echo err-%d >&2; exit %d", i, i, i%4)
			req := provider.ExecRequest{Argv: []string{"sh", "-c", script}, Workdir: Workspace}
			out := &Output{}
			res, err := s.p.Exec(s.ctx(t), id, req, out.Func)
			if err != nil {
				t.Errorf("exec %d: %v", i, err)
				return
			}
			if got, want := out.Stdout(), fmt.Sprintf("out-%d\n", i); got != want {
				t.Errorf("exec %d stdout = %q, want %q", i, got, want)
			}
			if got, want := out.Stderr(), fmt.Sprintf("err-%d\n", i); got != want {
				t.Errorf("exec %d stderr = %q, want %q", i, got, want)
			}
			if res.ExitCode != i%4 {
				t.Errorf("exec %d ExitCode = %d, want %d", i, res.ExitCode, i%4)
			}
		})
	}
	wg.Wait()
}

func testFilesSharedWithExec(t *testing.T, s *suite) {
	id := s.spawn(t)
	s.writeFile(t, id, Workspace+"/from-api.txt", []byte("written by the file API\n"), 0o644)
	out := s.mustShell(t, id, "cat from-api.txt")
	if got := out.Stdout(); got != "written by the file API\n" {
		t.Errorf("cat from-api.txt = %q, want the content written by the file API", got)
	}

	s.mustShell(t, id, "printf 'made by exec' > from-exec.txt")
	if got := string(s.readFile(t, id, Workspace+"/from-exec.txt")); got != "made by exec" {
		t.Errorf("ReadFile(from-exec.txt) = %q, want %q", got, "made by exec")
	}
}
