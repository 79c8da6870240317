package conformance

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Chunk is one call of an OutputFunc.
type Chunk struct {
	Stream provider.Stream
	Data   string
}

// Output collects a command's output in delivery order. Its Func is safe
// to pass to Provider.Exec.
type Output struct {
	mu     sync.Mutex
	chunks []Chunk
}

// Func appends one chunk. It copies p, as the OutputFunc contract requires.
func (o *Output) Func(stream provider.Stream, p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.chunks = append(o.chunks, Chunk{Stream: stream, Data: string(p)})
}

// Chunks returns the chunks received so far.
func (o *Output) Chunks() []Chunk {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Chunk(nil), o.chunks...)
}

// Text returns everything received on stream, concatenated.
func (o *Output) Text(stream provider.Stream) string {
	var b strings.Builder
	for _, c := range o.Chunks() {
		if c.Stream == stream {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

// Stdout returns everything received on stdout.
func (o *Output) Stdout() string { return o.Text(provider.Stdout) }

// Stderr returns everything received on stderr.
func (o *Output) Stderr() string { return o.Text(provider.Stderr) }

// Exec runs req in sandbox id with Workdir defaulting to Workspace, fails
// the test on an error and returns the result and the collected output.
func Exec(t *testing.T, p provider.Provider, id string, req provider.ExecRequest) (provider.ExecResult, *Output) {
	t.Helper()
	return execWithin(t, p, id, req, callLimit)
}

// execWithin is Exec with the call bounded by limit.
func execWithin(t *testing.T, p provider.Provider, id string, req provider.ExecRequest, limit time.Duration) (provider.ExecResult, *Output) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	if req.Workdir == "" {
		req.Workdir = Workspace
	}
	out := &Output{}
	res, err := p.Exec(ctx, id, req, out.Func)
	if err != nil {
		t.Fatalf("Exec(%s, %q): %v", id, req.Argv, err)
	}
	return res, out
}

// Shell runs script with sh -c in Workspace and returns the result and
// the collected output.
func Shell(t *testing.T, p provider.Provider, id, script string) (provider.ExecResult, *Output) {
	t.Helper()
	return Exec(t, p, id, provider.ExecRequest{Argv: []string{"sh", "-c", script}})
}

// exec runs req with the slack of the harness added to the call limit.
func (s *suite) exec(t *testing.T, id string, req provider.ExecRequest) (provider.ExecResult, *Output) {
	t.Helper()
	if req.Timeout == 0 {
		req.Timeout = s.within(callLimit / 2)
	}
	return execWithin(t, s.p, id, req, s.within(callLimit))
}

// shell runs script with sh -c in Workspace.
func (s *suite) shell(t *testing.T, id, script string) (provider.ExecResult, *Output) {
	t.Helper()
	return s.exec(t, id, provider.ExecRequest{Argv: []string{"sh", "-c", script}})
}

// mustShell runs script and fails the test unless it exits 0.
func (s *suite) mustShell(t *testing.T, id, script string) *Output {
	t.Helper()
	res, out := s.shell(t, id, script)
	if res.ExitCode != 0 || res.TimedOut {
		t.Fatalf("sh -c %q: exit %d (timed out %v), stderr %q", script, res.ExitCode, res.TimedOut, out.Stderr())
	}
	return out
}

// writeFile writes data to path through the file API.
func (s *suite) writeFile(t *testing.T, id, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := s.p.WriteFile(s.ctx(t), id, path, bytes.NewReader(data), mode); err != nil {
		t.Fatalf("WriteFile(%s): %v", path, err)
	}
}

// readFile reads path through the file API.
func (s *suite) readFile(t *testing.T, id, path string) []byte {
	t.Helper()
	r, err := s.p.ReadFile(s.ctx(t), id, path)
	if err != nil {
		t.Fatalf("ReadFile(%s): %v", path, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ReadFile(%s): reading: %v", path, err)
	}
	return data
}

// stat describes path through the file API.
func (s *suite) stat(t *testing.T, id, path string) provider.FileInfo {
	t.Helper()
	info, err := s.p.Stat(s.ctx(t), id, path)
	if err != nil {
		t.Fatalf("Stat(%s): %v", path, err)
	}
	return info
}

// assertAbsent fails the test unless path does not exist in the sandbox.
func (s *suite) assertAbsent(t *testing.T, id, path string) {
	t.Helper()
	_, err := s.p.Stat(s.ctx(t), id, path)
	assertErrorIs(t, "Stat("+path+")", err, provider.ErrPathNotFound)
}

// sleepUntil sleeps until deadline or the end of the test's context.
func sleepUntil(t *testing.T, deadline time.Time) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
	}
}
