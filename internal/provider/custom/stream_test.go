package custom

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
)

// startFakeBackend serves handler as a provider server that completes the
// version handshake, so that tests can script how it misbehaves. handler
// gets a channel that is closed when the test ends.
func startFakeBackend(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, done <-chan struct{})) string {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(headerProtocol, "1")
		if r.URL.Path == pathVersion {
			_ = writeJSON(w, versionInfo{Protocol: ProtocolVersion, Provider: "fake",
				Capabilities: provider.Capabilities{Isolation: "none", Description: "A scripted backend."}})
			return
		}
		handler(w, r, done)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	return srv.URL
}

// stall blocks until the client goes away or the test ends.
func stall(r *http.Request, done <-chan struct{}) {
	select {
	case <-r.Context().Done():
	case <-done:
	}
}

// writeLines writes NDJSON lines and flushes them.
func writeLines(w http.ResponseWriter, lines ...string) {
	for _, line := range lines {
		_, _ = io.WriteString(w, line+"\n")
	}
	w.(http.Flusher).Flush()
}

// execWithin runs argv on p and returns the result, the error, the output
// and how long Exec took.
func execWithin(t *testing.T, p provider.Provider, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	res, err := p.Exec(ctx, id, req, out)
	return res, err, time.Since(start)
}

func TestExecStalledBackend(t *testing.T) {
	t.Parallel()
	url := startFakeBackend(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		w.Header().Set("Content-Type", contentNDJSON)
		writeLines(w, `{"stream":"stdout","data":"started\n"}`)
		stall(r, done)
	})
	p := newClient(t, url, func(c *Config) { c.HeartbeatInterval = 100 * time.Millisecond })

	out := &conformance.Output{}
	req := provider.ExecRequest{Argv: []string{"sleep", "30"}, Timeout: 10 * time.Second}
	_, err, elapsed := execWithin(t, p, "sb", req, out.Func)
	t.Logf("stalled backend: Exec failed after %v", elapsed)

	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Exec: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "sent nothing for 300ms") {
		t.Errorf("Exec error %q, want it to name the backend and the idle limit", err)
	}
	if elapsed < 300*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("Exec failed after %v, want about 3 heartbeat intervals (300ms)", elapsed)
	}
	if got := out.Stdout(); got != "started\n" {
		t.Errorf("stdout = %q, want the line sent before the stall", got)
	}
}

func TestExecHeartbeatsWithoutExit(t *testing.T) {
	t.Parallel()
	url := startFakeBackend(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		w.Header().Set("Content-Type", contentNDJSON)
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				writeLines(w, `{"stream":"heartbeat"}`)
			case <-r.Context().Done():
				return
			case <-done:
				return
			}
		}
	})
	p := newClient(t, url, func(c *Config) {
		c.HeartbeatInterval = 100 * time.Millisecond
		c.ExecGrace = 200 * time.Millisecond
	})

	req := provider.ExecRequest{Argv: []string{"true"}, Timeout: 300 * time.Millisecond}
	_, err, elapsed := execWithin(t, p, "sb", req, nil)
	t.Logf("backend with heartbeats and no exit: Exec failed after %v", elapsed)

	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Exec: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "no exit line within the exec timeout 300ms plus 200ms of grace") {
		t.Errorf("Exec error %q, want it to name the overall deadline", err)
	}
	if elapsed < 500*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("Exec failed after %v, want about the timeout plus the grace (500ms)", elapsed)
	}
}

func TestExecStallBeforeHeaders(t *testing.T) {
	t.Parallel()
	url := startFakeBackend(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		stall(r, done)
	})
	p := newClient(t, url, func(c *Config) { c.ResponseHeaderTimeout = 200 * time.Millisecond })

	req := provider.ExecRequest{Argv: []string{"true"}, Timeout: 10 * time.Second}
	_, err, elapsed := execWithin(t, p, "sb", req, nil)
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Exec: %v, want ErrUnavailable", err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("Exec failed after %v, want about the response header timeout (200ms)", elapsed)
	}
}

func TestHeartbeatKeepsQuietExecAlive(t *testing.T) {
	t.Parallel()
	p := newClient(t, startBackend(t, newMock(t)).URL, func(c *Config) { c.HeartbeatInterval = 100 * time.Millisecond })
	spawn(t, p, "quiet-1")

	req := provider.ExecRequest{Argv: []string{"sh", "-c", "sleep 1; echo done"}, Workdir: "/workspace"}
	out := &conformance.Output{}
	res, err, _ := execWithin(t, p, "quiet-1", req, out.Func)
	if err != nil {
		t.Fatalf("Exec of a command silent for 1s with a 300ms idle limit: %v", err)
	}
	if res.ExitCode != 0 || out.Stdout() != "done\n" {
		t.Errorf("Exec = exit %d stdout %q, want exit 0 and %q", res.ExitCode, out.Stdout(), "done\n")
	}
}

func TestExecConnectionLostMidStream(t *testing.T) {
	t.Parallel()
	b := startBackend(t, newMock(t))
	p := newClient(t, b.URL, nil)
	spawn(t, p, "lost-1")

	cut := make(chan time.Time, 1)
	out := func(stream provider.Stream, data []byte) {
		select {
		case cut <- time.Now():
			b.CloseClientConnections()
		default:
		}
	}
	req := provider.ExecRequest{Argv: []string{"sh", "-c", "echo started; sleep 30"}, Workdir: "/workspace", Timeout: 10 * time.Second}
	_, err, _ := execWithin(t, p, "lost-1", req, out)
	elapsed := time.Since(<-cut)
	t.Logf("connection cut: Exec failed %v after the cut", elapsed)

	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Exec: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), b.URL) {
		t.Errorf("Exec error %q does not name the backend %s", err, b.URL)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Exec failed %v after the connection was cut, want under 2s", elapsed)
	}
}

func TestExecOutputIsBinarySafe(t *testing.T) {
	t.Parallel()
	p := newClient(t, startBackend(t, newMock(t)).URL, nil)
	spawn(t, p, "binary-1")

	data := make([]byte, 300<<10)
	_, _ = rand.Read(data)
	data = append(data, []byte("\xff\x00\x80 text é \xe2\x82")...)
	if err := p.WriteFile(t.Context(), "binary-1", "/workspace/blob", bytes.NewReader(data), 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	out := func(stream provider.Stream, p []byte) {
		if stream == provider.Stderr {
			stderr.Write(p)
		} else {
			stdout.Write(p)
		}
	}
	req := provider.ExecRequest{Argv: []string{"sh", "-c", "cat blob; cat blob >&2"}, Workdir: "/workspace"}
	res, err, _ := execWithin(t, p, "binary-1", req, out)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Exec: exit %d, error %v", res.ExitCode, err)
	}
	if !bytes.Equal(stdout.Bytes(), data) {
		t.Errorf("stdout: got %d bytes, want the file's %d bytes unchanged", stdout.Len(), len(data))
	}
	if !bytes.Equal(stderr.Bytes(), data) {
		t.Errorf("stderr: got %d bytes, want the file's %d bytes unchanged", stderr.Len(), len(data))
	}
}

// cutReader returns n zero bytes and then an error.
type cutReader struct{ n int }

var errDiskFailed = errors.New("disk failed")

func (r *cutReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errDiskFailed
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

func (r *cutReader) Close() error { return nil }

// cutFileProvider is the mock whose ReadFile fails after 200 KiB.
type cutFileProvider struct{ failingProvider }

func (p cutFileProvider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return &cutReader{n: 200 << 10}, nil
}

func TestDownloadCutShortIsAnError(t *testing.T) {
	t.Parallel()
	b := startBackend(t, cutFileProvider{failingProvider{Provider: newMock(t)}})
	p := newClient(t, b.URL, nil)

	r, err := p.ReadFile(t.Context(), "sb", "/workspace/big")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("reading a download cut short: %d bytes, error %v, want ErrUnavailable", len(data), err)
	}
}

func TestDownloadStall(t *testing.T) {
	t.Parallel()
	url := startFakeBackend(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
		_, _ = w.Write([]byte("first bytes"))
		w.(http.Flusher).Flush()
		stall(r, done)
	})
	p := newClient(t, url, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	r, err := p.ReadFile(ctx, "sb", "/workspace/f")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	defer r.Close()
	start := time.Now()
	data, err := io.ReadAll(r)
	elapsed := time.Since(start)
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("reading a stalled download: error %v, want ErrUnavailable", err)
	}
	if string(data) != "first bytes" {
		t.Errorf("read %q before the stall, want %q", data, "first bytes")
	}
	if elapsed > 3*time.Second {
		t.Errorf("stalled download failed after %v, want about the idle timeout (200ms)", elapsed)
	}
}

func TestUploadSourceError(t *testing.T) {
	t.Parallel()
	p := newClient(t, startBackend(t, newMock(t)).URL, nil)
	spawn(t, p, "upload-1")
	if err := p.WriteFile(t.Context(), "upload-1", "/workspace/f", strings.NewReader("old"), 0o644); err != nil {
		t.Fatal(err)
	}

	err := p.WriteFile(t.Context(), "upload-1", "/workspace/f", &cutReader{n: 100 << 10}, 0o644)
	if !errors.Is(err, errDiskFailed) {
		t.Errorf("WriteFile from a failing reader: %v, want the reader's error", err)
	}
	if errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("WriteFile from a failing reader: %v, which blames the backend", err)
	}

	r, err := p.ReadFile(t.Context(), "upload-1", "/workspace/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); string(got) != "old" {
		t.Errorf("file after the failed upload = %q, want the old content", got)
	}
}

func TestShutdownStopsRunningExec(t *testing.T) {
	t.Parallel()
	srv, err := NewServer(newMock(t), ServerOptions{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	p := newClient(t, "http://"+ln.Addr().String(), nil)
	spawn(t, p, "shutdown-1")

	started := make(chan struct{}, 1)
	out := func(provider.Stream, []byte) {
		select {
		case started <- struct{}{}:
		default:
		}
	}
	errc := make(chan error, 1)
	go func() {
		req := provider.ExecRequest{Argv: []string{"sh", "-c", "echo started; sleep 30"}, Workdir: "/workspace"}
		_, err := p.Exec(context.Background(), "shutdown-1", req, out)
		errc <- err
	}()
	<-started

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(ctx)

	select {
	case err := <-errc:
		if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("Exec during shutdown: %v, want ErrUnavailable saying the server is shutting down", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Exec still running 10s after the server shut down")
	}
}
