// Package procexec runs one command as a process tree on the current host
// and guarantees that the whole tree is gone when the call returns: on
// timeout, on context cancellation, and after the main process exits. It is
// shared by the in-sandbox agent and by host-side providers (mock, proot).
package procexec

import (
	"context"
	"errors"
	"os/exec"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Command is one process to run.
type Command struct {
	Argv           []string      // program and arguments; Argv[0] is looked up in PATH from Env
	Env            []string      // the complete environment, KEY=VALUE; the caller's is never inherited
	Dir            string        // working directory on this host
	Stdin          []byte        // standard input; empty gives EOF at once
	Timeout        time.Duration // 0 for none beyond ctx
	MaxOutputBytes int64         // cap per stream; 0 for none

	// Configure, when set, adjusts the exec.Cmd before it starts, for
	// example to set credentials. It must not replace Stdin, Stdout,
	// Stderr or SysProcAttr.Setpgid.
	Configure func(*exec.Cmd)
}

// Run starts c, sends its output to out, and returns its result. See
// provider.Provider.Exec for the result and error rules.
func Run(ctx context.Context, c Command, out provider.OutputFunc) (provider.ExecResult, error) {
	return provider.ExecResult{}, errors.New("procexec: not implemented yet")
}
