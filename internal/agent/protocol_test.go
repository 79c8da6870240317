package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestFrameRoundTrip(t *testing.T) {
	payloads := []struct {
		kind    frameKind
		payload []byte
	}{
		{frameStdout, []byte("hello\n")},
		{frameStderr, []byte{0, 1, 2, 255, '\n', 0}},
		{frameStdout, nil},
		{frameExit, []byte(`{"exit_code":0}`)},
	}
	var stream []byte
	for _, p := range payloads {
		stream = appendFrame(stream, p.kind, p.payload)
	}

	reader := &frameReader{r: bytes.NewReader(stream)}
	for i, want := range payloads {
		kind, payload, err := reader.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if kind != want.kind {
			t.Errorf("frame %d kind = %v, want %v", i, kind, want.kind)
		}
		if !bytes.Equal(payload, want.payload) {
			t.Errorf("frame %d payload = %q, want %q", i, payload, want.payload)
		}
	}
	if _, _, err := reader.next(); err != io.EOF {
		t.Errorf("after the last frame: error = %v, want io.EOF", err)
	}
}

func TestFrameReaderRejectsBadStreams(t *testing.T) {
	whole := appendFrame(nil, frameStdout, []byte("0123456789"))
	oversized := []byte{byte(frameStdout), 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"cut in header", whole[:3], io.ErrUnexpectedEOF},
		{"cut in payload", whole[:8], io.ErrUnexpectedEOF},
		{"oversized length", oversized, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := (&frameReader{r: bytes.NewReader(tt.stream)}).next()
			if err == nil {
				t.Fatal("next succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestErrorBodyRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		sentinel error
		code     string
	}{
		{"path not found", &provider.PathError{Op: "stat", Path: "/a", Err: provider.ErrPathNotFound}, provider.ErrPathNotFound, codePathNotFound},
		{"exists", &provider.PathError{Op: "mkdir", Path: "/a", Err: provider.ErrPathExists}, provider.ErrPathExists, codePathExists},
		{"is directory", &provider.PathError{Op: "read", Path: "/d", Err: provider.ErrIsDirectory}, provider.ErrIsDirectory, codeIsDirectory},
		{"not directory", &provider.PathError{Op: "list", Path: "/f", Err: provider.ErrNotDirectory}, provider.ErrNotDirectory, codeNotDirectory},
		{"not empty", &provider.PathError{Op: "remove", Path: "/d", Err: provider.ErrDirectoryNotEmpty}, provider.ErrDirectoryNotEmpty, codeDirectoryNotEmpty},
		{"escapes", &provider.PathError{Op: "write archive", Path: "/d", Err: provider.ErrPathEscapes}, provider.ErrPathEscapes, codePathEscapes},
		{"permission", &provider.PathError{Op: "read", Path: "/f", Err: fs.ErrPermission}, fs.ErrPermission, codePermissionDenied},
		{"invalid with detail", errors.Join(provider.ErrInvalidArgument, errors.New("argv is empty")), provider.ErrInvalidArgument, codeInvalidArgument},
		{"unavailable", provider.ErrUnavailable, provider.ErrUnavailable, codeUnavailable},
		{"resource limit", provider.ErrResourceLimit, provider.ErrResourceLimit, codeResourceLimit},
		{"internal", errors.New("disk on fire"), nil, codeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := toErrorBody(tt.err)
			if body.Code != tt.code {
				t.Errorf("code = %q, want %q", body.Code, tt.code)
			}
			got := body.toError()
			if tt.sentinel != nil && !errors.Is(got, tt.sentinel) {
				t.Errorf("decoded error %v does not match %v", got, tt.sentinel)
			}
			if got.Error() != tt.err.Error() {
				t.Errorf("decoded message = %q, want %q", got.Error(), tt.err.Error())
			}
			var sent, decoded *provider.PathError
			if errors.As(tt.err, &sent) {
				if !errors.As(got, &decoded) {
					t.Fatalf("decoded error %T is not a *provider.PathError", got)
				}
				if decoded.Op != sent.Op || decoded.Path != sent.Path {
					t.Errorf("decoded op and path = %q %q, want %q %q", decoded.Op, decoded.Path, sent.Op, sent.Path)
				}
			}
		})
	}
}

func TestCeilMilliseconds(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int64
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{1500 * time.Microsecond, 2},
		{2 * time.Second, 2000},
	}
	for _, tt := range tests {
		if got := ceilMilliseconds(tt.in); got != tt.want {
			t.Errorf("ceilMilliseconds(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got, err := mergeEnv([]string{"A=1", "B=2", "C=3"}, map[string]string{"B": "two", "D": "4"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "C=3", "B=two", "D=4"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}

	for _, bad := range []map[string]string{{"": "x"}, {"A=B": "x"}, {"A": "x\x00y"}} {
		if _, err := mergeEnv(nil, bad); !errors.Is(err, provider.ErrInvalidArgument) {
			t.Errorf("mergeEnv(%q) error = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestOOMCounterFiles(t *testing.T) {
	tests := []struct {
		name       string
		procCgroup string
		first      string
	}{
		{"cgroup v2", "0::/system.slice/box.scope\n", "/sys/fs/cgroup/system.slice/box.scope/memory.events"},
		{"cgroup v2 namespace", "0::/\n", "/sys/fs/cgroup/memory.events"},
		{"cgroup v1", "5:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n", "/sys/fs/cgroup/memory.events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := oomCounterFiles([]byte(tt.procCgroup))
			if len(files) == 0 || files[0] != tt.first {
				t.Fatalf("files = %q, want %q first", files, tt.first)
			}
		})
	}

	v1 := oomCounterFiles([]byte("4:memory:/docker/abc\n"))
	want := "/sys/fs/cgroup/memory/docker/abc/memory.oom_control"
	if !strings.Contains(strings.Join(v1, " "), want) {
		t.Errorf("v1 files = %q, want them to contain %q", v1, want)
	}
}

func TestReadOOMKills(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"memory.events":      "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n",
		"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n",
		"old.oom_control":    "oom_kill_disable 0\nunder_oom 0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		file string
		want uint64
		ok   bool
	}{
		{"memory.events", 2, true},
		{"memory.oom_control", 7, true},
		{"old.oom_control", 0, false},
		{"missing", 0, false},
	}
	for _, tt := range tests {
		got, ok := readOOMKills(filepath.Join(dir, tt.file))
		if got != tt.want || ok != tt.ok {
			t.Errorf("readOOMKills(%s) = %d, %v; want %d, %v", tt.file, got, ok, tt.want, tt.ok)
		}
	}
}

// startServer serves s on a unix socket in the test process and returns a
// client connected to it.
func startServer(t *testing.T, s *Server) *Client {
	t.Helper()
	socket := shortSocketPath(t)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(listener) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	client, err := Dial(t.Context(), UnixDialer(socket))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// shortSocketPath returns a socket path in a new directory that is removed
// when the test ends. t.TempDir paths contain the test name and can exceed
// the 107-byte limit of unix socket paths.
func shortSocketPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "svt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExecReportsOOMKill(t *testing.T) {
	// The counter is a file that the commands grow, standing in for the
	// cgroup's oom_kill counter.
	counterFile := filepath.Join(t.TempDir(), "oom_kill")
	if err := os.WriteFile(counterFile, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	counter := func() (uint64, bool) {
		data, err := os.ReadFile(counterFile)
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		return n, err == nil
	}
	client := startServer(t, newTestServer(t, Config{OOMKills: counter}))

	tests := []struct {
		name     string
		script   string
		code     int
		reason   string
		timedOut bool
	}{
		{"killed without OOM", "kill -KILL $$", 137, provider.ExitSignal, false},
		{"killed by OOM", "echo 1 > $COUNTER; kill -KILL $$", 137, provider.ExitOOM, false},
		{"exit after another OOM", "echo 2 > $COUNTER; exit 0", 0, "", false},
		{"exit 137 after another OOM", "echo 3 > $COUNTER; exit 137", 137, "", false},
		{"timeout after another OOM", "echo 4 > $COUNTER; sleep 10", 137, provider.ExitTimeout, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := provider.ExecRequest{
				Argv:    []string{"sh", "-c", tt.script},
				Env:     map[string]string{"COUNTER": counterFile},
				Timeout: time.Second,
			}
			res, err := client.Exec(t.Context(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.code || res.ExitReason != tt.reason || res.TimedOut != tt.timedOut {
				t.Errorf("result = %+v, want exit %d, reason %q, timed out %v", res, tt.code, tt.reason, tt.timedOut)
			}
		})
	}
}

func TestDialRejectsOtherProtocols(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"newer major version", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(headerProtocol, "2")
			writeJSON(w, VersionInfo{Protocol: 2, AgentVersion: "v9"})
		}, "the agent speaks protocol 2"},
		{"not an agent", func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, "not a StacyVM agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := serveHandler(t, tt.handler)
			client, err := Dial(t.Context(), UnixDialer(socket))
			if err == nil {
				client.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			if !errors.Is(err, ErrProtocol) || !errors.Is(err, provider.ErrUnavailable) {
				t.Errorf("error = %v, want one matching ErrProtocol and provider.ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDialAcceptsOtherRevisions(t *testing.T) {
	for _, revision := range []int{0, ProtocolRevision + 3} {
		socket := serveHandler(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(headerProtocol, "1")
			writeJSON(w, VersionInfo{Protocol: 1, Revision: revision, AgentVersion: "v0.0.1"})
		})
		client, err := Dial(t.Context(), UnixDialer(socket))
		if err != nil {
			t.Fatalf("revision %d: Dial: %v", revision, err)
		}
		if got := client.Info(); got.Revision != revision || got.AgentVersion != "v0.0.1" {
			t.Errorf("Info = %+v, want revision %d of v0.0.1", got, revision)
		}
		client.Close()
	}
}

// serveHandler serves h over HTTP/2 without TLS on a new unix socket.
func serveHandler(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	socket := shortSocketPath(t)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: protocols}
	go func() { _ = srv.Serve(listener) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func (r *failingReader) Close() error { return nil }

func TestDownloadErrorAfterFirstByte(t *testing.T) {
	s := newTestServer(t, Config{})
	data := bytes.Repeat([]byte("x"), 3*copyChunk)
	cause := &provider.PathError{Op: "read", Path: "/big", Err: fs.ErrPermission}
	s.mux[pathFileContent] = route{http.MethodGet, func(w http.ResponseWriter, r *http.Request) error {
		return s.download(w, r, contentBytes, func(context.Context) (io.ReadCloser, error) {
			return &failingReader{data: data, err: cause}, nil
		})
	}}
	client := startServer(t, s)

	body, err := client.ReadFile(t.Context(), "/big")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	defer body.Close()
	got, err := io.ReadAll(body)
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("read error = %v, want one matching fs.ErrPermission", err)
	}
	var pathErr *provider.PathError
	if !errors.As(err, &pathErr) || pathErr.Path != "/big" {
		t.Errorf("read error = %#v, want a *provider.PathError for /big", err)
	}
	if len(got) != len(data) {
		t.Errorf("read %d bytes before the error, want %d", len(got), len(data))
	}
}
