package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestExecBlockingNonZeroExit(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	resp := s.do("POST", sandboxPath(id, "/exec"), map[string]any{
		"command": "echo out; echo err >&2; exit 7",
	})
	resp.wantStatus(t, http.StatusOK)
	res := decodeBody[execResultJSON](t, resp)

	if res.ExitCode != 7 {
		t.Errorf("exit_code = %d, want 7", res.ExitCode)
	}
	if res.Stdout != "out\n" || res.Stderr != "err\n" {
		t.Errorf("stdout, stderr = %q, %q, want \"out\\n\", \"err\\n\"", res.Stdout, res.Stderr)
	}
	if res.TimedOut || res.Truncated {
		t.Errorf("timed_out, truncated = %v, %v, want false, false", res.TimedOut, res.Truncated)
	}
	if _, err := time.ParseDuration(res.Duration); err != nil {
		t.Errorf("duration = %q: %v", res.Duration, err)
	}
	if res.DurationMS < 0 {
		t.Errorf("duration_ms = %d, want >= 0", res.DurationMS)
	}
}

func TestExecModesAndStdin(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	tests := []struct {
		name string
		body map[string]any
		want string
	}{
		{"shell quotes args", map[string]any{"command": "printf '%s|%s'", "args": []string{"a b", "$HOME"}}, "a b|$HOME"},
		{"argv", map[string]any{"command": "printf", "args": []string{"%s-%s", "a b", "c"}, "mode": "argv"}, "a b-c"},
		{"stdin text", map[string]any{"command": "cat", "stdin": "héllo"}, "héllo"},
		{"stdin base64", map[string]any{"command": "cat", "stdin": "aGk=", "stdin_encoding": "base64"}, "hi"},
		{"env", map[string]any{"command": "printf %s \"$GREETING\"", "env": map[string]string{"GREETING": "hey"}}, "hey"},
		{"workdir", map[string]any{"command": "mkdir -p sub && cd sub && pwd", "workdir": "/workspace"}, "sub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.do("POST", sandboxPath(id, "/exec"), tt.body)
			resp.wantStatus(t, http.StatusOK)
			res := decodeBody[execResultJSON](t, resp)
			if res.ExitCode != 0 || !strings.Contains(res.Stdout, tt.want) {
				t.Errorf("exit %d stdout %q stderr %q, want exit 0 and stdout containing %q",
					res.ExitCode, res.Stdout, res.Stderr, tt.want)
			}
		})
	}
}

func TestExecBlockingTimeout(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	resp := s.do("POST", sandboxPath(id, "/exec"), map[string]any{
		"command": "echo started; sleep 5",
		"timeout": "500ms",
	})
	resp.wantError(t, http.StatusRequestTimeout, codeTimeout, "exec timeout after 500ms")

	res := decodeBody[execTimeoutJSON](t, resp)
	if !res.TimedOut {
		t.Errorf("timed_out = false, want true")
	}
	if res.ExitReason != "timeout" {
		t.Errorf("exit_reason = %q, want timeout", res.ExitReason)
	}
	if res.Stdout != "started\n" {
		t.Errorf("stdout = %q, want the output before the kill", res.Stdout)
	}
	if res.DurationMS < 400 || res.DurationMS > 4000 {
		t.Errorf("duration_ms = %d, want about 500", res.DurationMS)
	}
}

func TestExecInvalidUTF8(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()
	const script = `printf 'a\377b'; printf 'x\342\202' >&2`

	resp := s.do("POST", sandboxPath(id, "/exec"), map[string]any{"command": script})
	resp.wantStatus(t, http.StatusOK)
	res := decodeBody[execResultJSON](t, resp)
	if res.Stdout != "a\uFFFDb" {
		t.Errorf("stdout = %q, want %q", res.Stdout, "a\uFFFDb")
	}
	if res.Stderr != "x\uFFFD\uFFFD" {
		t.Errorf("stderr = %q, want %q", res.Stderr, "x\uFFFD\uFFFD")
	}

	lines := s.execStream(t, id, map[string]any{"command": script})
	if got := joinData(lines, "stdout"); got != "a\uFFFDb" {
		t.Errorf("streamed stdout = %q, want %q", got, "a\uFFFDb")
	}
	if got := joinData(lines, "stderr"); got != "x\uFFFD\uFFFD" {
		t.Errorf("streamed stderr = %q, want %q", got, "x\uFFFD\uFFFD")
	}
}

func TestExecStreamKeepsSplitCharacter(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	// The euro sign is E2 82 AC. The sleeps make the command write it in
	// three separate writes.
	lines := s.execStream(t, id, map[string]any{
		"command": `printf 'a\342'; sleep 0.3; printf '\202'; sleep 0.3; printf '\254b'`,
	})
	if got := joinData(lines, "stdout"); got != "a€b" {
		t.Errorf("streamed stdout = %q, want %q", got, "a€b")
	}
	for _, l := range lines {
		if strings.ContainsRune(l.Data, utf8.RuneError) {
			t.Errorf("chunk %q contains U+FFFD", l.Data)
		}
	}
}

// streamLine is any line of an exec stream.
type streamLine struct {
	Stream     string `json:"stream"`
	Data       string `json:"data"`
	ExitCode   *int   `json:"exit_code"`
	TimedOut   bool   `json:"timed_out"`
	Truncated  bool   `json:"truncated"`
	DurationMS *int64 `json:"duration_ms"`
	ExitReason string `json:"exit_reason"`
	Code       string `json:"code"`
	Message    string `json:"message"`
}

// execStream runs a streamed exec to its end and returns its lines, checked
// by parseStream.
func (s *stack) execStream(t *testing.T, id string, body map[string]any) []streamLine {
	t.Helper()
	body["stream"] = true
	resp := s.do("POST", sandboxPath(id, "/exec"), body)
	resp.wantStatus(t, http.StatusOK)
	if ct := resp.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
	}
	return parseStream(t, resp.body)
}

// parseStream decodes the lines of an exec stream and checks that the last
// line, and only the last, is an exit or error line.
func parseStream(t *testing.T, data []byte) []streamLine {
	t.Helper()
	var lines []streamLine
	for _, raw := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var l streamLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("decode stream line %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	for i, l := range lines {
		final := l.Stream == "exit" || l.Stream == "error"
		if final != (i == len(lines)-1) {
			t.Errorf("line %d of %d is %q; want exactly one final line, at the end: %s", i+1, len(lines), l.Stream, data)
		}
	}
	return lines
}

// joinData concatenates the data of the stream's chunks.
func joinData(lines []streamLine, stream string) string {
	var b strings.Builder
	for _, l := range lines {
		if l.Stream == stream {
			b.WriteString(l.Data)
		}
	}
	return b.String()
}

func TestExecStreamOrderAndExit(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	lines := s.execStream(t, id, map[string]any{
		"command": "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three; exit 3",
	})
	var got []string
	for _, l := range lines[:len(lines)-1] {
		got = append(got, l.Stream+":"+l.Data)
	}
	want := []string{"stdout:one\n", "stderr:two\n", "stdout:three\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("chunks = %q, want %q", got, want)
	}

	exit := lines[len(lines)-1]
	if exit.Stream != "exit" || exit.ExitCode == nil || *exit.ExitCode != 3 {
		t.Fatalf("last line = %+v, want exit with exit_code 3", exit)
	}
	if exit.TimedOut || exit.Truncated || exit.DurationMS == nil {
		t.Errorf("exit line = %+v, want timed_out and truncated false and a duration_ms", exit)
	}
}

func TestExecStreamTimeout(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	lines := s.execStream(t, id, map[string]any{"command": "echo before; sleep 5", "timeout": "500ms"})
	if len(lines) < 3 {
		t.Fatalf("got %d lines, want stdout, the timeout chunk and exit: %+v", len(lines), lines)
	}
	notice := lines[len(lines)-2]
	if notice.Stream != "stderr" || !strings.HasPrefix(notice.Data, "exec timeout") {
		t.Errorf("line before exit = %+v, want a stderr chunk starting with \"exec timeout\"", notice)
	}
	exit := lines[len(lines)-1]
	if exit.Stream != "exit" || !exit.TimedOut || exit.ExitReason != "timeout" {
		t.Errorf("last line = %+v, want exit with timed_out true and exit_reason timeout", exit)
	}
	if got := joinData(lines, "stdout"); got != "before\n" {
		t.Errorf("stdout = %q, want \"before\\n\"", got)
	}
}

func TestExecStreamFailsBeforeOutput(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	s.do("POST", sandboxPath("sb-unknown", "/exec"), map[string]any{"command": "true", "stream": true}).
		wantError(t, http.StatusNotFound, codeNotFound, "sb-unknown")
	s.do("POST", sandboxPath(id, "/exec"), map[string]any{"command": "true", "stream": true, "timeout": "x"}).
		wantError(t, http.StatusBadRequest, codeBadRequest, "timeout")

	s.do("DELETE", sandboxPath(id, ""), nil).wantStatus(t, http.StatusOK)
	s.do("POST", sandboxPath(id, "/exec"), map[string]any{"command": "true", "stream": true}).
		wantError(t, http.StatusNotFound, codeNotFound, "destroyed")
}

func TestExecStreamErrorLine(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	req := s.newRequest(t.Context(), "POST", sandboxPath(id, "/exec"), map[string]any{
		"command": "echo started; sleep 3; echo finished",
		"stream":  true,
	})
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	defer resp.Body.Close()
	reader := bufio.NewReader(resp.Body)
	first, err := reader.ReadString('\n')
	if err != nil {
		t.Fatalf("read first line: %v", err)
	}

	// The stream has started, so the failure caused by the destroy must
	// arrive as the final line of the stream.
	s.do("DELETE", sandboxPath(id, ""), nil).wantStatus(t, http.StatusOK)
	rest, err := io.ReadAll(reader)
	if err != nil {
		t.Fatalf("read the rest of the stream: %v", err)
	}
	lines := parseStream(t, append([]byte(first), rest...))

	last := lines[len(lines)-1]
	if last.Stream != "error" || last.Code != codeNotFound || !strings.Contains(last.Message, "destroyed") {
		t.Errorf("last line = %+v, want an error line with code NOT_FOUND saying destroyed", last)
	}
	if strings.Contains(joinData(lines, "stdout"), "finished") {
		t.Errorf("the command finished although its sandbox was destroyed")
	}
}

func TestExecStreamClientDisconnectCancels(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req := s.newRequest(ctx, "POST", sandboxPath(id, "/exec"), map[string]any{
		"command": "echo started; sleep 3; touch late",
		"stream":  true,
	})
	start := time.Now()
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	defer resp.Body.Close()

	// The first chunk arrives while the command still runs, which shows
	// that output is flushed as it is produced.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, "started") {
		t.Fatalf("first line = %q, %v; want the started chunk", line, err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("first chunk took %v, want it before the command ends", d)
	}
	cancel()

	time.Sleep(4 * time.Second)
	s.do("GET", sandboxPath(id, "/files/stat?path=/workspace/late"), nil).
		wantError(t, http.StatusNotFound, codeNotFound)
}

// A quiet command must not hold back the response headers: the client sees
// the stream open while the command is still running.
func TestExecStreamSendsHeadersAtStart(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	body := strings.NewReader(`{"command":"sleep 2; echo done","stream":true}`)
	start := time.Now()
	resp, err := http.Post(s.srv.URL+sandboxPath(id, "/exec"), "application/json", body)
	if err != nil {
		t.Fatalf("POST exec: %v", err)
	}
	defer resp.Body.Close()
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("headers arrived after %v, want them before the command's first output at 2s", waited)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status: got %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/x-ndjson" {
		t.Errorf("Content-Type: got %q, want application/x-ndjson", got)
	}
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), `"stream":"exit"`) {
		t.Errorf("stream has no exit line: %s", rest)
	}
}
