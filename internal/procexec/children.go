package procexec

import (
	"os/exec"
	"sync"
)

// children records the main processes that Run started and has not yet
// reaped, so that an init process (the agent as PID 1) can reap other
// zombies without taking an exit status that Run waits for.
var children = struct {
	starting sync.RWMutex // held for reading from before fork until the pid is recorded
	mu       sync.Mutex
	pids     map[int]struct{}
}{pids: make(map[int]struct{})}

// startRecorded starts cmd and records its pid for Started.
func startRecorded(cmd *exec.Cmd) error {
	children.starting.RLock()
	defer children.starting.RUnlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	children.mu.Lock()
	children.pids[cmd.Process.Pid] = struct{}{}
	children.mu.Unlock()
	return nil
}

// forgetChild removes pid once Run has reaped it.
func forgetChild(pid int) {
	children.mu.Lock()
	delete(children.pids, pid)
	children.mu.Unlock()
}

// Started reports whether pid is the main process of a Run that has not
// yet reaped it. Such a process must not be reaped by anyone else.
func Started(pid int) bool {
	children.mu.Lock()
	defer children.mu.Unlock()
	_, ok := children.pids[pid]
	return ok
}

// PauseStarts keeps Run from starting processes until resume is called.
// While starts are paused, Started covers every child that Run has forked,
// so a caller that listed zombie children before calling PauseStarts may
// reap each one for which Started returns false.
func PauseStarts() (resume func()) {
	children.starting.Lock()
	return children.starting.Unlock
}
