package proot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// A sandbox runs one agent under one PRoot per command in progress, and
// keeps at most maxIdleAgents of them running between commands.
//
// One agent cannot run several commands at once under PRoot 5.1.0, the
// version Debian and Ubuntu ship. The agent starts commands the way Go
// does, with clone(CLONE_VM|CLONE_VFORK), and PRoot shares its emulation
// of brk(2) among all processes created that way from one parent, then
// resets it whenever one of them calls execve. Two commands that overlap
// in time therefore corrupt each other's heap and crash with SIGSEGV.
// Commands run one after the other by one agent do not overlap, because
// the agent kills the rest of a command's process tree before Exec
// returns. Each agent has a PRoot of its own, so their commands never
// share that state.
const maxIdleAgents = 1

// userFile is the name of the file that records a sandbox's user. Spawn
// writes it before anything runs as that user, so that Destroy finds the
// user of a spawn that did not complete.
const userFile = "user.json"

// userRecord is the content of user.json.
type userRecord struct {
	UID uint32 `json:"uid"`
}

// Limits of starting and stopping agents.
const (
	agentStartLimit = 30 * time.Second       // from starting PRoot until the agent accepts a connection
	agentPoll       = 10 * time.Millisecond  // between connection attempts at start
	versionLimit    = 10 * time.Second       // proot --version in Health
	consoleTail     = 5                      // lines of console.log quoted when a start fails
	prootExitGrace  = 500 * time.Millisecond // for PRoot to exit by itself once its tracees are killed
)

// recordedUID returns the sandbox user recorded in dir, from user.json or
// else state.json.
func recordedUID(dir string) (uint32, bool) {
	var rec userRecord
	if err := readJSON(dir, userFile, &rec); err == nil && rec.UID != 0 {
		return rec.UID, true
	}
	if st, err := readState(dir); err == nil && st.UID != 0 {
		return st.UID, true
	}
	return 0, false
}

// agentConn is one agent running under its own PRoot.
type agentConn struct {
	proc   *agentProcess
	client *agent.Client
	socket string // host path of the agent's socket
}

// acquireAgent returns an idle agent of sb, or starts a new one. The
// caller gives it back with releaseAgent.
func (p *Provider) acquireAgent(ctx context.Context, sb *sandbox) (*agentConn, error) {
	sb.agentMu.Lock()
	for len(sb.idle) > 0 {
		c := sb.idle[len(sb.idle)-1]
		sb.idle = sb.idle[:len(sb.idle)-1]
		if c.proc.alive() {
			sb.agentMu.Unlock()
			return c, nil
		}
		go stopAgent(c)
	}
	n := sb.nextAgent
	sb.nextAgent++
	sb.agentMu.Unlock()

	return p.startAgent(ctx, sb, n)
}

// releaseAgent takes back an agent that acquireAgent returned. It keeps
// the agent for the next command unless the last call failed, because the
// agent may then still be killing that command's processes. It also stops
// agents beyond maxIdleAgents and those of a destroyed sandbox.
func (p *Provider) releaseAgent(sb *sandbox, c *agentConn, callErr error) {
	sb.agentMu.Lock()
	keep := callErr == nil && sb.ctx.Err() == nil && len(sb.idle) < maxIdleAgents && c.proc.alive()
	if keep {
		sb.idle = append(sb.idle, c)
	}
	sb.agentMu.Unlock()
	if !keep {
		go stopAgent(c)
	}
}

// closeAgents closes the connections to the idle agents of sb. It does not
// stop them: Destroy kills every process of the sandbox's user.
func (sb *sandbox) closeAgents() {
	sb.agentMu.Lock()
	defer sb.agentMu.Unlock()
	for _, c := range sb.idle {
		_ = c.client.Close()
	}
	sb.idle = nil
}

// stopAgent closes the connection to c and kills its PRoot and every
// process PRoot traces.
func stopAgent(c *agentConn) {
	_ = c.client.Close()
	killTraced(c.proc)
	_ = os.Remove(c.socket)
}

// startAgent starts PRoot with a new agent for sb, which listens on a
// socket numbered n, and waits until the agent accepts a connection. On
// failure it kills whatever it started.
func (p *Provider) startAgent(ctx context.Context, sb *sandbox, n int) (conn *agentConn, err error) {
	binary, err := p.prootPath()
	if err != nil {
		return nil, err
	}
	agentBin, err := p.agentCopy()
	if err != nil {
		return nil, err
	}
	run := runDir(p.cfg.StateDir, sb.state.UID)
	socket := socketPath(p.cfg.StateDir, sb.state.UID, n)
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	start := time.Now()
	proc, err := launch(launchSpec{
		binary:   binary,
		agent:    agentBin,
		listen:   agent.SandboxDir + "/" + socketName(n),
		tree:     sb.tree,
		dir:      sb.dir,
		runDir:   run,
		uid:      sb.state.UID,
		network:  sb.state.Network,
		fakeRoot: p.cfg.FakeRoot,
	})
	if err != nil {
		return nil, fmt.Errorf("start proot: %w", err)
	}
	client, err := waitAgent(ctx, proc, socket)
	if err != nil {
		killTraced(proc)
		return nil, fmt.Errorf("%w%s", err, consoleQuote(sb.dir))
	}
	sb.logf("agent %d started pid=%d in %s", n, proc.pid, time.Since(start).Round(time.Millisecond))
	return &agentConn{proc: proc, client: client, socket: socket}, nil
}

// waitAgent connects to the agent on socket, retrying until a connection
// succeeds, PRoot exits, agentStartLimit passes or ctx ends.
func waitAgent(ctx context.Context, proc *agentProcess, socket string) (*agent.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, agentStartLimit)
	defer cancel()
	for {
		if _, err := os.Stat(socket); err == nil {
			client, err := agent.Dial(ctx, agent.UnixDialer(socket))
			if err == nil {
				return client, nil
			}
		}
		if !proc.alive() {
			return nil, fmt.Errorf("proot exited before the agent accepted a connection: %w", provider.ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to the agent on %s timed out: %w: %w", socket, provider.ErrUnavailable, ctx.Err())
		case <-time.After(agentPoll):
		}
	}
}

// consoleQuote returns the last lines of the console log in dir, formatted
// to follow an error message, or "" when there are none.
func consoleQuote(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, consoleFile))
	if err != nil || len(data) == 0 {
		return ""
	}
	return "; console log: " + strings.Join(lastLines(data, consoleTail), " | ")
}

// prootPath returns the path of the proot binary from Config.Binary.
func (p *Provider) prootPath() (string, error) {
	path, err := exec.LookPath(p.cfg.Binary)
	if err != nil {
		return "", fmt.Errorf("proot: binary %q not found; install PRoot (`apt-get install proot` on Debian and Ubuntu) "+
			"or set providers.proot.binary: %w: %w", p.cfg.Binary, provider.ErrUnavailable, err)
	}
	return path, nil
}

// checkVersion runs `proot --version` and returns an error wrapping
// ErrUnavailable, with its output, when it fails.
func checkVersion(ctx context.Context, binary string) error {
	ctx, cancel := context.WithTimeout(ctx, versionLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--version")
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("proot: `%s --version` failed; reinstall PRoot (`apt-get install proot`) or set providers.proot.binary: %w: %w: %s",
			binary, provider.ErrUnavailable, err, bytes.TrimSpace(out))
	}
	return nil
}

// agentSource returns the agent binary that Config.AgentPath names, or
// that agent.BinaryPath finds.
func (p *Provider) agentSource() (string, error) {
	if p.cfg.AgentPath != "" {
		if _, err := os.Stat(p.cfg.AgentPath); err != nil {
			return "", fmt.Errorf("proot: agent binary: %w: %w", provider.ErrUnavailable, err)
		}
		return p.cfg.AgentPath, nil
	}
	path, err := agent.BinaryPath()
	if err != nil {
		return "", fmt.Errorf("proot: %w: %w", provider.ErrUnavailable, err)
	}
	return path, nil
}

// agentCopy returns a copy of the agent binary under StateDir/bin, named by
// its SHA-256, that every sandbox user can read and run. The agent's own
// location may be in a directory that those users cannot search. The copy
// is made once per Provider; copies of other versions are removed, which
// does not affect agents that are running.
func (p *Provider) agentCopy() (string, error) {
	p.agentMu.Lock()
	defer p.agentMu.Unlock()
	if p.agentBin != "" {
		if _, err := os.Stat(p.agentBin); err == nil {
			return p.agentBin, nil
		}
	}
	src, err := p.agentSource()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("proot: read agent binary: %w", err)
	}
	sum := sha256.Sum256(data)
	binDir := filepath.Join(p.cfg.StateDir, "bin")
	name := agent.BinaryName + "-" + hex.EncodeToString(sum[:8])
	dst := filepath.Join(binDir, name)

	if _, err := os.Stat(dst); errors.Is(err, os.ErrNotExist) {
		if err := writeExecutable(dst, data); err != nil {
			return "", fmt.Errorf("proot: copy agent binary: %w", err)
		}
	}
	removeOtherCopies(binDir, name)
	p.agentBin = dst
	return dst, nil
}

// writeExecutable writes data to path with mode 0755 through a temporary
// file and a rename.
func writeExecutable(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".agent-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// removeOtherCopies removes the agent copies in binDir other than keep.
func removeOtherCopies(binDir, keep string) {
	entries, err := os.ReadDir(binDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != keep && strings.HasPrefix(e.Name(), agent.BinaryName+"-") {
			_ = os.Remove(filepath.Join(binDir, e.Name()))
		}
	}
}
