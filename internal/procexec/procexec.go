// Package procexec runs one command as a process tree on the current host
// and guarantees that the whole tree is gone when the call returns: on
// timeout, on context cancellation, and after the main process exits. It is
// shared by the in-sandbox agent and by host-side providers (mock, proot).
//
// Each run starts in its own process group and carries a random cookie in
// the EnvExecID environment variable, which its descendants inherit. Killing
// the tree means killing the process group and then, on Linux, every process
// whose environment carries the cookie, so descendants that left the group
// with setsid die too.
package procexec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// EnvExecID is the environment variable that carries a run's cookie. Run
// sets it in every command's environment, replacing any value from
// Command.Env.
const EnvExecID = "STACYVM_EXEC_ID"

// Exit codes that Run reports as results, with the meaning a POSIX shell
// gives them.
const (
	ExitCannotExecute = 126 // Argv[0] exists but could not be executed
	ExitNotFound      = 127 // Argv[0] was not found
	ExitTimedOut      = 128 + int(syscall.SIGKILL)
)

// OutputGrace is how long Run keeps reading stdout and stderr after the main
// process exits, for output still in flight from processes it left behind.
// When it expires Run kills the rest of the tree.
const OutputGrace = 200 * time.Millisecond

// drainIdle bounds how long a read may wait for data once the tree was
// killed. Only time blocked on an empty pipe counts, never time spent in the
// OutputFunc, so a slow consumer still receives everything the tree wrote.
// It matters only when a process outside the tree holds a pipe open.
const drainIdle = 500 * time.Millisecond

// drainLimit bounds the whole drain after the tree was killed, for a
// process outside the tree that keeps writing into an inherited pipe.
const drainLimit = 10 * time.Second

// readChunk is the size of one read from stdout or stderr; each read is
// delivered as soon as it returns.
const readChunk = 32 << 10

// Command is one process to run.
type Command struct {
	Argv           []string      // program and arguments; Argv[0] is looked up in PATH from Env
	Env            []string      // the complete environment, KEY=VALUE; the caller's is never inherited
	Dir            string        // working directory on this host; empty for the caller's
	Stdin          []byte        // standard input; empty gives EOF at once
	Timeout        time.Duration // 0 for none beyond ctx
	MaxOutputBytes int64         // cap per stream; 0 for none

	// Configure, when set, adjusts the exec.Cmd before it starts, for
	// example to set credentials. Run then sets Path, Args, Env, Dir,
	// Stdin, Stdout, Stderr and SysProcAttr.Setpgid itself, so Configure
	// cannot change them, and it must not set SysProcAttr.Setsid.
	Configure func(*exec.Cmd)
}

// Run starts c, sends its output to out, and returns its result once the
// main process has exited and the rest of its tree has been killed.
//
// A non-zero exit is a result. So is a timeout: TimedOut is set, ExitReason
// is provider.ExitTimeout and ExitCode is ExitTimedOut (128+SIGKILL), the
// status of the kill. A process killed by signal N gives 128+N with
// provider.ExitSignal. When Argv[0] cannot be found or executed, Run writes
// a shell-style message to stderr and returns ExitNotFound or
// ExitCannotExecute, with no error. When ctx is done Run kills the tree and
// returns an error wrapping ctx.Err(). A missing Dir is an error wrapping
// provider.ErrPathNotFound.
//
// out may be nil to discard output. Run never calls out after it returns.
func Run(ctx context.Context, c Command, out provider.OutputFunc) (provider.ExecResult, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return provider.ExecResult{}, fmt.Errorf("procexec: empty command: %w", provider.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return provider.ExecResult{}, fmt.Errorf("procexec: %s not started: %w", c.Argv[0], err)
	}
	if err := checkDir(c.Dir); err != nil {
		return provider.ExecResult{}, err
	}

	output := newOutput(out, c.MaxOutputBytes)
	name := c.Argv[0]
	path, ok := lookPath(name, c.Env, c.Dir)
	if !ok {
		output.write(provider.Stderr, []byte(name+": command not found\n"))
		return provider.ExecResult{ExitCode: ExitNotFound, Truncated: output.isTruncated()}, nil
	}

	p, err := start(c, path, output)
	if err != nil {
		if code, msg, ok := startFailure(err); ok {
			output.write(provider.Stderr, []byte(name+": "+msg+"\n"))
			return provider.ExecResult{ExitCode: code, Truncated: output.isTruncated()}, nil
		}
		return provider.ExecResult{}, fmt.Errorf("procexec: start %s: %w", name, err)
	}
	return p.wait(ctx, c.Timeout)
}

// checkDir returns an error when dir is set and is not a directory.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("procexec: working directory %s: %w", dir, provider.ErrPathNotFound)
	case err != nil:
		return fmt.Errorf("procexec: working directory: %w", err)
	case !info.IsDir():
		return fmt.Errorf("procexec: working directory %s: %w", dir, provider.ErrNotDirectory)
	}
	return nil
}

// lookPath resolves name the way a shell does with the PATH from env.
// Names containing a slash are returned as they are; exec resolves a
// relative one against dir.
func lookPath(name string, env []string, dir string) (string, bool) {
	if strings.Contains(name, "/") {
		return name, true
	}
	for _, d := range strings.Split(envValue(env, "PATH"), ":") {
		if d == "" {
			d = "."
		}
		candidate := d + "/" + name
		statPath := candidate
		if !strings.HasPrefix(candidate, "/") && dir != "" {
			statPath = dir + "/" + candidate
		}
		info, err := os.Stat(statPath)
		if err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return candidate, true
		}
	}
	return "", false
}

// envValue returns the last value of key in env, as exec does.
func envValue(env []string, key string) string {
	value := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value = v
		}
	}
	return value
}

// startFailure maps a start error that a shell reports as an exit status
// to that status and the message to print.
func startFailure(err error) (code int, msg string, ok bool) {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return 0, "", false
	}
	switch errno {
	case syscall.ENOENT, syscall.ENOTDIR:
		return ExitNotFound, errno.Error(), true
	case syscall.EACCES, syscall.ENOEXEC, syscall.EISDIR, syscall.EPERM:
		return ExitCannotExecute, errno.Error(), true
	}
	return 0, "", false
}

// commandEnv returns env with the cookie variable set to cookie. The result
// is never nil, because a nil exec.Cmd.Env would inherit the caller's.
func commandEnv(env []string, cookie string) []string {
	result := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != EnvExecID {
			result = append(result, kv)
		}
	}
	return append(result, EnvExecID+"="+cookie)
}

// newCookie returns 128 random bits in hex.
func newCookie() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // since Go 1.24 Read crashes the program instead of returning an error
	return hex.EncodeToString(b[:])
}
