//go:build linux

package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/procexec"
)

// reapInterval is how often the reaper scans for zombies without a
// SIGCHLD, in case a signal was coalesced with one that arrived while a
// scan ran.
const reapInterval = 3 * time.Second

// becomeSubreaper makes orphaned descendants children of the agent instead
// of the namespace's init, so that the agent can reap and kill them. As
// PID 1 the agent gets them anyway; this matters in the host test mode.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// childProcess is an entry of /proc/PID/stat for a child of the agent.
type childProcess struct {
	pid    int
	state  byte // 'Z' for a zombie
	pgroup int
}

// listChildren scans /proc for the processes whose parent is the agent.
func listChildren() []childProcess {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var children []childProcess
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + entry.Name() + "/stat")
		if err != nil {
			continue // the process exited during the scan
		}
		state, ppid, pgroup, ok := parseStat(stat)
		if ok && ppid == self {
			children = append(children, childProcess{pid: pid, state: state, pgroup: pgroup})
		}
	}
	return children
}

// parseStat extracts the state, parent pid and process group from the
// content of /proc/PID/stat: "pid (comm) state ppid pgrp ...". The command
// name may contain spaces and parentheses, so parsing starts after the last
// ')'.
func parseStat(stat []byte) (state byte, ppid, pgroup int, ok bool) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, 0, 0, false
	}
	fields := bytes.Fields(stat[end+1:])
	if len(fields) < 3 || len(fields[0]) != 1 {
		return 0, 0, 0, false
	}
	ppid, err1 := strconv.Atoi(string(fields[1]))
	pgroup, err2 := strconv.Atoi(string(fields[2]))
	if err1 != nil || err2 != nil {
		return 0, 0, 0, false
	}
	return fields[0][0], ppid, pgroup, true
}

// reaper reaps zombie children that procexec did not start: orphans that
// were reparented to the agent. procexec reaps its own children, and taking
// one of their exit statuses would break its result, so the reaper leaves
// every pid for which procexec.Started is true.
type reaper struct {
	log      *slog.Logger
	sigchld  chan os.Signal
	done     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
}

// startReaper starts reaping on SIGCHLD and every reapInterval.
func startReaper(log *slog.Logger) *reaper {
	r := &reaper{
		log:     log,
		sigchld: make(chan os.Signal, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	signal.Notify(r.sigchld, syscall.SIGCHLD)
	go r.loop()
	return r
}

func (r *reaper) loop() {
	defer close(r.stopped)
	ticker := time.NewTicker(reapInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.sigchld:
		case <-ticker.C:
		case <-r.done:
			return
		}
		r.reapNow()
	}
}

// stop ends the loop and waits for it.
func (r *reaper) stop() {
	r.stopOnce.Do(func() {
		signal.Stop(r.sigchld)
		close(r.done)
	})
	<-r.stopped
}

// reapNow reaps the zombie children that exist now and are not procexec's.
func (r *reaper) reapNow() {
	var zombies []int
	for _, child := range listChildren() {
		if child.state == 'Z' {
			zombies = append(zombies, child.pid)
		}
	}
	if len(zombies) == 0 {
		return
	}

	// With starts paused, procexec.Started covers every child it forked,
	// including one forked after the scan above.
	resume := procexec.PauseStarts()
	defer resume()
	for _, pid := range zombies {
		if procexec.Started(pid) {
			continue
		}
		var status unix.WaitStatus
		got, err := unix.Wait4(pid, &status, unix.WNOHANG, nil)
		if got == pid {
			r.log.Debug("reaped orphan", "pid", pid, "exit_status", status.ExitStatus(), "signal", status.Signal().String())
		} else if err != nil && !errors.Is(err, unix.ECHILD) {
			r.log.Warn("reap orphan failed", "pid", pid, "error", err)
		}
	}
}

// forwardSignal sends sig to every live child of the agent, to its whole
// process group when it leads one (every command does), and returns how
// many children it signalled.
func forwardSignal(sig syscall.Signal) int {
	n := 0
	for _, child := range listChildren() {
		if child.state == 'Z' {
			continue
		}
		target := child.pid
		if child.pgroup == child.pid {
			target = -child.pid
		}
		if unix.Kill(target, sig) == nil {
			n++
		}
	}
	return n
}

// killChildren sends SIGKILL to whatever children are still alive once the
// server has stopped, such as daemons that commands left behind.
func killChildren(log *slog.Logger) {
	if n := forwardSignal(syscall.SIGKILL); n > 0 {
		log.Info("killed processes left at shutdown", "processes", n)
		time.Sleep(50 * time.Millisecond) // let the kernel turn them into zombies for the last reap
	}
}
