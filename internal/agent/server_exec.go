package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stacyvm/stacyvm/internal/procexec"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// handleExec runs one command and streams its output as frames. Only a
// request that cannot be decoded gets an error status. After that every
// outcome is a frame, and the stream ends with one exit or error frame.
func (s *Server) handleExec(w http.ResponseWriter, r *http.Request) error {
	var req execRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}

	w.Header().Set("Content-Type", contentFrames)
	w.WriteHeader(http.StatusOK)
	frames := newFrameQueue(w)

	res, err := s.exec(r.Context(), req, frames.output)
	if err != nil {
		body, status := toErrorBody(s.callError(r, err))
		s.logInternal(r, status, err)
		frames.finish(frameError, mustJSON(body))
		return nil
	}
	frames.finish(frameExit, mustJSON(exitBody{
		ExitCode:   res.ExitCode,
		TimedOut:   res.TimedOut,
		Truncated:  res.Truncated,
		DurationMS: float64(res.Duration) / float64(time.Millisecond),
		ExitReason: res.ExitReason,
	}))
	return nil
}

// exec runs req to completion and detects a kill by the OOM killer.
func (s *Server) exec(ctx context.Context, req execRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	cmd, err := s.command(ctx, req)
	if err != nil {
		return provider.ExecResult{}, err
	}

	oomBefore, oomKnown := s.oomKills()
	res, err := procexec.Run(ctx, cmd, out)
	if err != nil {
		return res, err
	}
	killed := res.ExitReason == provider.ExitSignal && res.ExitCode == 128+int(syscall.SIGKILL)
	if killed && oomKnown {
		if oomAfter, ok := s.oomKills(); ok && oomAfter > oomBefore {
			res.ExitReason = provider.ExitOOM
		}
	}
	s.log.Debug("exec", "argv0", cmd.Argv[0], "exit_code", res.ExitCode, "exit_reason", res.ExitReason,
		"duration_ms", res.Duration.Milliseconds())
	return res, nil
}

// command validates req and turns it into a procexec command, creating the
// working directory when it is missing.
func (s *Server) command(ctx context.Context, req execRequest) (procexec.Command, error) {
	switch {
	case len(req.Argv) == 0 || req.Argv[0] == "":
		return procexec.Command{}, fmt.Errorf("%w: argv is empty", provider.ErrInvalidArgument)
	case req.TimeoutMS < 0:
		return procexec.Command{}, fmt.Errorf("%w: timeout_ms is negative: %d", provider.ErrInvalidArgument, req.TimeoutMS)
	case req.MaxOutputBytes < 0:
		return procexec.Command{}, fmt.Errorf("%w: max_output_bytes is negative: %d", provider.ErrInvalidArgument, req.MaxOutputBytes)
	}
	env, err := mergeEnv(s.cfg.Env, req.Env)
	if err != nil {
		return procexec.Command{}, err
	}
	dir, err := s.workdir(ctx, req.Workdir)
	if err != nil {
		return procexec.Command{}, err
	}
	return procexec.Command{
		Argv:           req.Argv,
		Env:            env,
		Dir:            dir,
		Stdin:          req.Stdin,
		Timeout:        time.Duration(req.TimeoutMS) * time.Millisecond,
		MaxOutputBytes: req.MaxOutputBytes,
	}, nil
}

// workdir creates the sandbox directory workdir when it is missing and
// returns its host path. An empty workdir is the sandbox root.
//
// NOTE: in the host test mode the host kernel resolves the returned path,
// so an absolute symlink inside it points at the host, not into the root
// as the file API resolves it. A directory that resolves outside the root
// is rejected with ErrPathEscapes rather than followed.
func (s *Server) workdir(ctx context.Context, workdir string) (string, error) {
	if workdir == "" {
		return s.cfg.Root, nil
	}
	if err := s.files.Mkdir(ctx, workdir, 0o755); err != nil {
		if errors.Is(err, provider.ErrPathExists) {
			// Something other than a directory has the name.
			return "", &provider.PathError{Op: "exec", Path: workdir, Err: provider.ErrNotDirectory}
		}
		return "", err
	}
	if s.cfg.Root == "/" {
		return workdir, nil
	}

	dir := filepath.Join(s.cfg.Root, workdir)
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", &provider.PathError{Op: "exec", Path: workdir, Err: err}
	}
	root, err := filepath.EvalSymlinks(s.cfg.Root)
	if err != nil {
		return "", fmt.Errorf("resolve agent root: %w", err)
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", &provider.PathError{Op: "exec", Path: workdir, Err: provider.ErrPathEscapes}
	}
	return real, nil
}

// mergeEnv returns base with the variables of extra set, replacing earlier
// values of the same names. extra is applied in name order, so the result
// does not depend on map order.
func mergeEnv(base []string, extra map[string]string) ([]string, error) {
	if len(extra) == 0 {
		return base, nil
	}
	names := make([]string, 0, len(extra))
	for name := range extra {
		if name == "" || strings.ContainsAny(name, "=\x00") || strings.ContainsRune(extra[name], 0) {
			return nil, fmt.Errorf("%w: environment variable %q: names must be non-empty without '=' or NUL, values without NUL",
				provider.ErrInvalidArgument, name)
		}
		names = append(names, name)
	}
	sort.Strings(names)

	env := make([]string, 0, len(base)+len(names))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if _, replaced := extra[name]; !replaced {
			env = append(env, kv)
		}
	}
	for _, name := range names {
		env = append(env, name+"="+extra[name])
	}
	return env, nil
}

func (s *Server) oomKills() (uint64, bool) {
	if s.cfg.OOMKills == nil {
		return 0, false
	}
	return s.cfg.OOMKills()
}

// outputBacklog is how many bytes of encoded frames an exec may have
// waiting for the connection before the command's output readers block.
// procexec stops reading a command's pipes a fixed time after the command
// has exited, so output must not wait on a slow connection.
//
// NOTE: a client that reads much slower than the command writes can still
// lose the end of the output. When the command exits while this backlog and
// the stream's HTTP/2 window are full, procexec cuts what it has not
// delivered within its drain time, and the result is not marked truncated.
const outputBacklog = 1 << 20

// frameQueue passes exec frames from procexec's output readers to a writer
// goroutine that sends them on the response. It keeps the readers from
// blocking on the network up to outputBacklog, and writes every frame that
// queued up meanwhile with one flush.
type frameQueue struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu      sync.Mutex
	ready   sync.Cond // signalled when frames are queued or the queue is closed
	room    sync.Cond // signalled when pending is taken by the writer
	pending []byte    // encoded frames not yet taken by the writer
	closed  bool
	failed  bool // a write failed; later frames are dropped
	done    chan struct{}
}

func newFrameQueue(w http.ResponseWriter) *frameQueue {
	q := &frameQueue{w: w, rc: http.NewResponseController(w), done: make(chan struct{})}
	q.ready.L = &q.mu
	q.room.L = &q.mu
	_ = q.flush() // sends the headers now; a failed write shows again on the next frame
	go q.write()
	return q
}

func (q *frameQueue) output(stream provider.Stream, p []byte) {
	kind := frameStdout
	if stream == provider.Stderr {
		kind = frameStderr
	}
	q.push(kind, p)
}

// push queues one frame, waiting while the backlog is full.
func (q *frameQueue) push(kind frameKind, payload []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.pending) >= outputBacklog && !q.failed {
		q.room.Wait()
	}
	if !q.failed {
		q.pending = appendFrame(q.pending, kind, payload)
		q.ready.Signal()
	}
}

// finish queues the last frame and waits until everything was written or
// a write failed.
func (q *frameQueue) finish(kind frameKind, payload []byte) {
	q.push(kind, payload)
	q.mu.Lock()
	q.closed = true
	q.ready.Signal()
	q.mu.Unlock()
	<-q.done
}

// write sends queued frames until the queue is closed and empty.
func (q *frameQueue) write() {
	defer close(q.done)
	var batch []byte
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closed {
			q.ready.Wait()
		}
		if len(q.pending) == 0 {
			q.mu.Unlock()
			return
		}
		batch, q.pending = q.pending, batch[:0]
		q.room.Broadcast()
		q.mu.Unlock()

		if err := q.send(batch); err != nil {
			q.mu.Lock()
			q.failed = true
			q.pending = q.pending[:0]
			q.room.Broadcast()
			q.mu.Unlock()
		}
	}
}

func (q *frameQueue) send(p []byte) error {
	if _, err := q.w.Write(p); err != nil {
		return err
	}
	return q.flush()
}

func (q *frameQueue) flush() error {
	if err := q.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
