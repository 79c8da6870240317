//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/agent/agenttest"
	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(agenttest.Build(t), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("(protocol %d, revision %d)", agent.ProtocolVersion, agent.ProtocolRevision)
	if !strings.HasPrefix(string(out), "stacyvm-agent ") || !strings.Contains(string(out), want) {
		t.Errorf("--version printed %q, want the name, version and %q", out, want)
	}
}

func TestUnsupportedListenAddress(t *testing.T) {
	cmd := exec.Command(agenttest.Build(t), "--root", t.TempDir(), "--listen", "tcp:127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("run error = %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), "use unix:PATH") {
		t.Errorf("stderr = %q, want it to say which addresses work", stderr.String())
	}
}

func TestSocketIsOwnerOnly(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	info, err := os.Stat(a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Type() != os.ModeSocket {
		t.Errorf("%s has type %v, want a socket", a.Socket, info.Mode().Type())
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket permissions = %#o, want 0600", perm)
	}
}

// startCommand runs script through the agent in the background and waits
// until the script has created the file "started" in the workspace.
func startCommand(t *testing.T, a *agenttest.Agent, script string) <-chan execOutcome {
	t.Helper()
	done := make(chan execOutcome, 1)
	go func() {
		req := provider.ExecRequest{Argv: []string{"sh", "-c", script}, Workdir: "/workspace"}
		res, err := a.Client.Exec(context.Background(), req, nil)
		done <- execOutcome{res, err}
	}()

	started := filepath.Join(a.Root, "workspace", "started")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(started); err == nil {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not create %s within 10s", started)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type execOutcome struct {
	res provider.ExecResult
	err error
}

// modes are the two ways the agent runs: on the host as a child
// subreaper, and as PID 1 of a PID namespace as inside a sandbox.
var modes = []struct {
	name string
	opts agenttest.Options
}{
	{"subreaper", agenttest.Options{}},
	{"pid1", agenttest.Options{PIDNamespace: true}},
}

// startAgent starts an agent in mode, skipping PID 1 where it cannot run.
func startAgent(t *testing.T, opts agenttest.Options) *agenttest.Agent {
	t.Helper()
	if opts.PIDNamespace {
		agenttest.RequirePIDNamespace(t)
	}
	return agenttest.Start(t, opts)
}

func TestSIGTERMEndsCommandsAndExitsZero(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { testSIGTERMEndsCommands(t, mode.opts) })
	}
}

func testSIGTERMEndsCommands(t *testing.T, opts agenttest.Options) {
	a := startAgent(t, opts)
	done := startCommand(t, a, "touch started; exec sleep 60")

	start := time.Now()
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	outcome := <-done
	if outcome.err != nil {
		t.Fatalf("exec error = %v, want the result of a command ended by SIGTERM", outcome.err)
	}
	if outcome.res.ExitCode != 128+int(syscall.SIGTERM) || outcome.res.ExitReason != provider.ExitSignal {
		t.Errorf("result = %+v, want exit code 143 with reason %q", outcome.res, provider.ExitSignal)
	}
	if code := a.ExitCode(); code != 0 {
		t.Errorf("agent exit status = %d, want 0", code)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("agent took %v to stop, want well under the 5s grace period", elapsed)
	}
}

func TestSIGTERMKillsCommandsAfterGrace(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{Args: []string{"--shutdown-grace", "500ms"}})
	done := startCommand(t, a, `trap "" TERM; touch started; while :; do sleep 0.05; done`)

	start := time.Now()
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	outcome := <-done
	elapsed := time.Since(start)
	if !errors.Is(outcome.err, provider.ErrUnavailable) || !strings.Contains(fmt.Sprint(outcome.err), "shutting down") {
		t.Errorf("exec error = %v, want one matching provider.ErrUnavailable that says the agent is shutting down", outcome.err)
	}
	if elapsed < 500*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("exec ended %v after SIGTERM, want after the 500ms grace period and soon after it", elapsed)
	}
	if code := a.ExitCode(); code != 0 {
		t.Errorf("agent exit status = %d, want 0", code)
	}
}

// zombieChildren returns the pids of the zombie children of pid.
func zombieChildren(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var zombies []int
	for _, entry := range entries {
		child, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + entry.Name() + "/stat")
		if err != nil {
			continue
		}
		state, ppid, _, ok := parseStat(stat)
		if ok && ppid == pid && state == 'Z' {
			zombies = append(zombies, child)
		}
	}
	return zombies
}

func TestOrphansAreReaped(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { testOrphansAreReaped(t, mode.opts) })
	}
}

func testOrphansAreReaped(t *testing.T, opts agenttest.Options) {
	a := startAgent(t, opts)
	// Each script leaves orphans that end on their own after the command
	// returned: a plain background child, which procexec kills with the
	// tree, and one that dropped the exec marker with env -i and so
	// survives until its sleep ends.
	scripts := []string{
		"sleep 0.1 & exec true",
		"env -i /bin/sh -c 'sleep 0.3' & exec true",
		"setsid sh -c 'sleep 0.2' & echo spawned",
	}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			req := provider.ExecRequest{Argv: []string{"sh", "-c", scripts[i%len(scripts)]}}
			res, err := a.Client.Exec(t.Context(), req, nil)
			if err != nil || res.ExitCode != 0 {
				t.Errorf("exec %d: result %+v, error %v; want exit 0, because reaping orphans must not take procexec's exit statuses", i, res, err)
			}
		})
	}
	wg.Wait()

	// The orphans end within 0.3s; the agent reaps on SIGCHLD.
	deadline := time.Now().Add(5 * time.Second)
	var zombies []int
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if zombies = zombieChildren(t, a.Pid()); len(zombies) == 0 {
			return
		}
	}
	t.Errorf("agent still has %d zombie children 5s after its commands returned: %v", len(zombies), zombies)
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		stat   string
		state  byte
		ppid   int
		pgroup int
		ok     bool
	}{
		{"42 (sleep) S 1 42 42 0 -1", 'S', 1, 42, true},
		{"43 (a (weird) name) Z 7 9 9 0", 'Z', 7, 9, true},
		{"44 (x) R", 0, 0, 0, false},
		{"garbage", 0, 0, 0, false},
	}
	for _, tt := range tests {
		state, ppid, pgroup, ok := parseStat([]byte(tt.stat))
		if state != tt.state || ppid != tt.ppid || pgroup != tt.pgroup || ok != tt.ok {
			t.Errorf("parseStat(%q) = %q %d %d %v, want %q %d %d %v",
				tt.stat, state, ppid, pgroup, ok, tt.state, tt.ppid, tt.pgroup, tt.ok)
		}
	}
}
