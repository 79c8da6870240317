package procexec

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// process is one started command and the goroutines that serve its pipes.
type process struct {
	cmd     *exec.Cmd
	cookie  string
	started time.Time
	output  *output

	exited  chan struct{} // closed when the main process has exited
	reaped  bool          // awaitExit reaped the process; written before exited is closed
	waitErr error         // awaitExit's error; written before exited is closed

	stdout, stderr *os.File      // parent read ends
	readersDone    chan struct{} // closed when both readers have returned

	stdin     *os.File      // parent write end; nil when Stdin is empty
	stdinDone chan struct{} // closed when the stdin writer has returned
}

// start starts c's main process with its pipes and the goroutines that
// serve them.
func start(c Command, path string, o *output) (p *process, err error) {
	p = &process{
		cookie:      newCookie(),
		output:      o,
		exited:      make(chan struct{}),
		readersDone: make(chan struct{}),
		stdinDone:   make(chan struct{}),
	}
	cmd := &exec.Cmd{}
	if c.Configure != nil {
		c.Configure(cmd)
	}
	cmd.Path = path
	cmd.Args = c.Argv
	cmd.Env = commandEnv(c.Env, p.cookie)
	cmd.Dir = c.Dir
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	p.cmd = cmd

	// childEnds are closed in this process once the child has them; the
	// parent ends are closed only when start fails.
	var childEnds, parentEnds []*os.File
	defer func() {
		closeFiles(childEnds)
		if err != nil {
			closeFiles(parentEnds)
		}
	}()

	stdoutW, err := p.pipe(&p.stdout, &childEnds, &parentEnds)
	if err != nil {
		return nil, err
	}
	stderrW, err := p.pipe(&p.stderr, &childEnds, &parentEnds)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	if len(c.Stdin) > 0 {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		childEnds = append(childEnds, r)
		parentEnds = append(parentEnds, w)
		cmd.Stdin, p.stdin = r, w
	}

	if err := startRecorded(cmd); err != nil {
		return nil, err
	}
	p.started = time.Now()
	p.serve(c.Stdin)
	return p, nil
}

// pipe creates a pipe whose read end goes to *read and returns the write
// end for the child, recording both ends for closing.
func (p *process) pipe(read **os.File, childEnds, parentEnds *[]*os.File) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	*read = r
	*parentEnds = append(*parentEnds, r)
	*childEnds = append(*childEnds, w)
	return w, nil
}

// serve starts the goroutines that wait for the main process, feed stdin and
// read the output.
func (p *process) serve(stdin []byte) {
	go func() {
		p.reaped, p.waitErr = awaitExit(p.cmd)
		close(p.exited)
	}()

	if p.stdin != nil {
		go func() {
			defer close(p.stdinDone)
			// A write error means the command closed its stdin or exited
			// before reading it all, which is its choice.
			_, _ = p.stdin.Write(stdin)
			_ = p.stdin.Close()
		}()
	} else {
		close(p.stdinDone)
	}

	var readers sync.WaitGroup
	readers.Go(func() { p.output.copyFrom(provider.Stdout, p.stdout) })
	readers.Go(func() { p.output.copyFrom(provider.Stderr, p.stderr) })
	go func() {
		readers.Wait()
		close(p.readersDone)
	}()
}

// wait waits for the main process to exit, the timeout or ctx, then cleans
// up the tree and returns the result.
func (p *process) wait(ctx context.Context, timeout time.Duration) (provider.ExecResult, error) {
	var expired <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}

	var timedOut bool
	var ctxErr error
	select {
	case <-p.exited:
	case <-expired:
		timedOut = !p.hasExited()
	case <-ctx.Done():
		ctxErr = ctx.Err()
	}
	killed := timedOut || ctxErr != nil
	if killed {
		killTree(p.cmd.Process.Pid, p.cookie)
		<-p.exited
	}
	duration := time.Since(p.started)

	if err := p.finish(killed); err != nil {
		return provider.ExecResult{}, err
	}

	res := provider.ExecResult{Duration: duration, Truncated: p.output.isTruncated()}
	res.ExitCode, res.ExitReason = exitStatus(p.cmd.ProcessState)
	if timedOut {
		res.TimedOut = true
		res.ExitCode = ExitTimedOut
		res.ExitReason = provider.ExitTimeout
	}
	if ctxErr != nil {
		return res, fmt.Errorf("procexec: %s stopped: %w", p.cmd.Args[0], ctxErr)
	}
	return res, nil
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// finish runs once the main process has exited. Unless the tree was just
// killed it gives the rest of the tree OutputGrace to finish writing, then
// kills what is left, ends the pipe goroutines and reaps the main process.
func (p *process) finish(killed bool) error {
	if !killed {
		p.awaitOutput(OutputGrace)
	}
	killTree(p.cmd.Process.Pid, p.cookie)

	// What the killed processes wrote is still in the pipes: read it up to
	// end of file. A read that finds the pipe idle for drainIdle ends early,
	// which only happens when a process outside the tree keeps it open.
	p.output.draining.Store(true)
	deadline := time.Now().Add(drainIdle)
	_ = p.stdout.SetReadDeadline(deadline)
	_ = p.stderr.SetReadDeadline(deadline)
	if !p.awaitOutput(drainLimit) {
		p.output.stopped.Store(true)
		_ = p.stdout.SetReadDeadline(time.Now())
		_ = p.stderr.SetReadDeadline(time.Now())
		<-p.readersDone
	}
	closeFiles([]*os.File{p.stdout, p.stderr})

	if p.stdin != nil {
		_ = p.stdin.SetWriteDeadline(time.Now())
		<-p.stdinDone
	}

	if !p.reaped {
		p.waitErr = p.cmd.Wait()
	}
	forgetChild(p.cmd.Process.Pid)
	if p.cmd.ProcessState == nil {
		return fmt.Errorf("procexec: wait for %s: %w", p.cmd.Args[0], p.waitErr)
	}
	return nil
}

// awaitOutput waits up to d for both output pipes to reach end of file and
// reports whether they did.
func (p *process) awaitOutput(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.readersDone:
		return true
	case <-timer.C:
		return false
	}
}

// exitStatus returns the exit code of state, 128+N for a process killed by
// signal N, and the exit reason for the result.
func exitStatus(state *os.ProcessState) (int, string) {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), provider.ExitSignal
	}
	return state.ExitCode(), ""
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}
