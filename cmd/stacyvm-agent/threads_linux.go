package main

import (
	"runtime"
	"sync"
)

// spareThreads is how many idle OS threads the agent creates at start.
const spareThreads = 16

// reserveThreads makes the Go runtime start n OS threads now and keep them
// idle. A sandbox's pids limit counts threads, and the runtime aborts the
// whole process when it needs a new thread and clone fails. A fork bomb
// inside the sandbox makes that likely. Threads created before the bomb
// are already counted, and the runtime reuses idle threads before it
// creates new ones, so the agent keeps serving while the limit is
// exhausted. With n = 16 an idle agent has about 20 threads.
//
// NOTE: this lowers the risk, it does not remove it: an agent that needs
// more than n threads at once under an exhausted pids limit still aborts.
func reserveThreads(n int) {
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	var done sync.WaitGroup
	for range n {
		done.Go(func() {
			// A goroutine locked to its thread keeps that thread to
			// itself, so n locked goroutines force n distinct threads.
			runtime.LockOSThread()
			started.Done()
			release.Wait()
			// Unlocking before the goroutine ends returns the thread to
			// the runtime's idle list instead of destroying it.
			runtime.UnlockOSThread()
		})
	}
	started.Wait()
	release.Done()
	done.Wait()
}
