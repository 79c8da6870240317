// Package agenttest builds stacyvm-agent and runs it on the host in its
// host test mode (--root set to a temporary directory), for the tests of
// the agent and of providers that talk to it.
//
// The binary is built with CGO_ENABLED=0 and without -race, as releases
// build it, even when the test binary itself has the race detector, and it
// is built once per test binary process. Packages that use Build call Main
// from TestMain so that the build directory is removed at the end.
package agenttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
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
)

// agentPackage is the import path of the agent command.
const agentPackage = "github.com/stacyvm/stacyvm/cmd/stacyvm-agent"

// connectLimit bounds the wait for a started agent to accept connections.
const connectLimit = 10 * time.Second

// stopLimit bounds the wait for an agent to exit after SIGTERM before it
// is killed.
const stopLimit = 15 * time.Second

var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Build returns the path of a stacyvm-agent built from this module. It
// fails the test when the build fails.
func Build(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.path, built.dir, built.err = build()
	})
	if built.err != nil {
		t.Fatalf("build %s: %v", agent.BinaryName, built.err)
	}
	return built.path
}

func build() (path, dir string, err error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("the go command is needed to build the agent: %w", err)
	}
	dir, err = os.MkdirTemp("", "stacyvm-agenttest-")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, agent.BinaryName)
	cmd := exec.Command(goTool, "build", "-o", path, agentPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("%w\n%s", err, out)
	}
	return path, dir, nil
}

// Main runs the tests of a package and then removes the binary that Build
// made. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// Options adjust Launch.
type Options struct {
	// Args are extra command-line flags for the agent.
	Args []string

	// Log receives each line the agent writes to stderr. Nil discards
	// them.
	Log func(line string)

	// PIDNamespace runs the agent as PID 1 of a new PID namespace with its
	// own /proc, as inside a sandbox, through unshare(1). It needs root;
	// see RequirePIDNamespace.
	PIDNamespace bool
}

// Agent is a running stacyvm-agent process in the host test mode.
type Agent struct {
	Dir    string        // temporary directory that holds Root and Socket
	Root   string        // sandbox root: Dir/rootfs, with workspace, home and tmp
	Socket string        // unix socket the agent listens on
	Client *agent.Client // connected client

	cmd     *exec.Cmd     // the agent, or unshare running it
	pid     int           // the agent's process ID on the host
	exited  chan struct{} // closed when cmd has exited
	waitErr error         // written before exited is closed
}

// Launch starts the agent binary bin on a fresh root and connects to it.
// The caller stops it with Stop.
func Launch(ctx context.Context, bin string, opts Options) (a *Agent, err error) {
	// os.MkdirTemp keeps the socket path short: unix socket paths are
	// limited to 107 bytes.
	dir, err := os.MkdirTemp("", "sva-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()

	a = &Agent{
		Dir:    dir,
		Root:   filepath.Join(dir, "rootfs"),
		Socket: filepath.Join(dir, "agent.sock"),
		exited: make(chan struct{}),
	}
	if err := makeRoot(a.Root); err != nil {
		return nil, err
	}
	if err := a.start(bin, opts); err != nil {
		return nil, err
	}
	if err := a.connect(ctx); err != nil {
		a.kill()
		return nil, err
	}
	return a, nil
}

// makeRoot creates the directories every sandbox has at spawn.
func makeRoot(root string) error {
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o755}, {"workspace", 0o755}, {"home", 0o755}, {"tmp", 0o1777}} {
		path := filepath.Join(root, d.name)
		if err := os.Mkdir(path, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(path, d.mode); err != nil { // Mkdir applies the umask
			return err
		}
	}
	return nil
}

func (a *Agent) start(bin string, opts Options) error {
	args := append([]string{"--root", a.Root, "--listen", "unix:" + a.Socket}, opts.Args...)
	if opts.PIDNamespace {
		unshare := append([]string{"--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL", bin}, args...)
		a.cmd = exec.Command("unshare", unshare...)
	} else {
		a.cmd = exec.Command(bin, args...)
	}
	a.cmd.Dir = a.Dir
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := a.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", a.cmd.Path, err)
	}
	a.pid = a.cmd.Process.Pid

	// The log lines are read to the end before Wait is called, as
	// StderrPipe requires.
	go func() {
		copyLines(stderr, opts.Log)
		a.waitErr = a.cmd.Wait()
		close(a.exited)
	}()
	return nil
}

func copyLines(r io.Reader, log func(string)) {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		if log != nil {
			log(scanner.Text())
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// connect dials the socket until the agent accepts, the agent exits or
// connectLimit passes.
func (a *Agent) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectLimit)
	defer cancel()
	for {
		client, err := agent.Dial(ctx, agent.UnixDialer(a.Socket))
		if err == nil {
			a.Client = client
			return a.findAgentPid()
		}
		select {
		case <-a.exited:
			return fmt.Errorf("agent exited before it accepted connections: %v", a.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("agent did not accept connections on %s: %w", a.Socket, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// findAgentPid sets a.pid to the agent's host process ID when unshare
// runs it: the only child of unshare.
func (a *Agent) findAgentPid() error {
	if filepath.Base(a.cmd.Path) != "unshare" {
		return nil
	}
	unshare := strconv.Itoa(a.cmd.Process.Pid)
	data, err := os.ReadFile("/proc/" + unshare + "/task/" + unshare + "/children")
	if err != nil {
		return fmt.Errorf("find the agent under unshare: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 1 {
		return fmt.Errorf("unshare has children %q, want only the agent", fields)
	}
	a.pid, err = strconv.Atoi(fields[0])
	return err
}

// Pid returns the agent's process ID on the host.
func (a *Agent) Pid() int { return a.pid }

// Signal sends sig to the agent process.
func (a *Agent) Signal(sig os.Signal) error {
	return syscall.Kill(a.pid, sig.(syscall.Signal))
}

// Exited returns a channel that is closed when the agent process has exited.
func (a *Agent) Exited() <-chan struct{} { return a.exited }

// ExitCode waits for the agent to exit and returns its exit status, or -1
// when a signal killed it. unshare exits with the agent's status.
func (a *Agent) ExitCode() int {
	<-a.exited
	return a.cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM, waits for the agent to exit (killing it after
// stopLimit), closes the client and removes the directory. It returns an
// error when the agent did not exit 0 on its own. Stop may be called more
// than once.
func (a *Agent) Stop() error {
	if a.Client != nil {
		_ = a.Client.Close()
	}
	_ = a.Signal(syscall.SIGTERM)

	var err error
	select {
	case <-a.exited:
		if a.waitErr != nil {
			err = fmt.Errorf("agent exited with %v after SIGTERM", a.waitErr)
		}
	case <-time.After(stopLimit):
		a.kill()
		err = errors.New("agent did not exit within 15s of SIGTERM and was killed")
	}
	if rmErr := os.RemoveAll(a.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

func (a *Agent) kill() {
	_ = a.cmd.Process.Kill() // unshare's --kill-child then kills the agent
	<-a.exited
}

// RequirePIDNamespace skips the test unless Options.PIDNamespace can work
// here: it needs root and unshare(1). With STACYVM_REQUIRE_HOST_FEATURES=1,
// as CI sets, it fails the test instead.
func RequirePIDNamespace(t testing.TB) {
	t.Helper()
	reason := ""
	if _, err := exec.LookPath("unshare"); err != nil {
		reason = "unshare(1) is not installed (Debian package util-linux)"
	} else if os.Geteuid() != 0 {
		reason = "creating a PID namespace needs root"
	}
	if reason == "" {
		return
	}
	if os.Getenv("STACYVM_REQUIRE_HOST_FEATURES") == "1" {
		t.Fatalf("%s, and STACYVM_REQUIRE_HOST_FEATURES=1 makes that a failure", reason)
	}
	t.Skip(reason)
}

// Start builds the agent once per test binary, launches it, logs its
// stderr to t and stops it when the test ends, failing the test when the
// agent does not exit cleanly.
func Start(t testing.TB, opts Options) *Agent {
	t.Helper()
	bin := Build(t)
	if opts.Log == nil {
		opts.Log = func(line string) { t.Log("agent: " + line) }
	}
	a, err := Launch(t.Context(), bin, opts)
	if err != nil {
		t.Fatalf("launch agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("stop agent: %v", err)
		}
	})
	return a
}
