//go:build !linux

package proot

import (
	"context"
	"fmt"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// errNotLinux is returned by every call that would start or stop PRoot on
// a system other than Linux, where PRoot does not run.
var errNotLinux = fmt.Errorf("proot: PRoot runs only on Linux: %w", provider.ErrUnavailable)

type agentProcess struct{ pid int }

func (a *agentProcess) alive() bool { return false }

type launchSpec struct {
	binary, agent, listen, tree, dir, runDir string
	uid                                      uint32
	network, fakeRoot                        bool
}

func launch(launchSpec) (*agentProcess, error) { return nil, errNotLinux }

func makeDevDir(string, int) error { return errNotLinux }

func killSandbox(context.Context, uint32) error { return nil }

func killTraced(*agentProcess) {}

func userRuns(uint32) bool { return false }
