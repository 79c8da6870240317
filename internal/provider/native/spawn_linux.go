package native

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// defaultPath is the PATH of the agent, and so of every command, unless
// SpawnSpec.Env sets one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// namespaceFlags are the namespaces every sandbox gets at clone. The cgroup
// namespace is entered by the setup step itself, after the provider has
// moved it into the sandbox's cgroups, so that those become its root.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC

// Spawn creates the sandbox: its host directory, its cgroups with the
// requested limits, and its init, which builds the root file system in new
// namespaces and becomes the agent. It returns once the agent answers.
//
// An ID that does not match [a-z0-9-]{1,64} or that exists already, a
// request for network access, an image that is not in the image store and
// negative limits give errors wrapping ErrInvalidArgument. On failure
// nothing is left behind.
func (p *Provider) Spawn(ctx context.Context, spec provider.SpawnSpec) (err error) {
	if err := p.checkSpawn(spec); err != nil {
		return err
	}
	agentPath, err := p.agentPath()
	if err != nil {
		return fmt.Errorf("native: %w: %w", provider.ErrUnavailable, err)
	}

	p.mu.Lock()
	if p.busy[spec.ID] || p.sandboxes[spec.ID] != nil {
		p.mu.Unlock()
		return fmt.Errorf("native: sandbox %s already exists: %w", spec.ID, provider.ErrInvalidArgument)
	}
	p.busy[spec.ID] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.busy, spec.ID)
		p.mu.Unlock()
	}()

	started := time.Now()
	s := &spawner{p: p, spec: spec, dir: p.sandboxDir(spec.ID), agentPath: agentPath, pidfd: -1}
	defer func() {
		if err != nil {
			s.undo()
		}
	}()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"create sandbox directory", s.makeDirs},
		{"resolve image", s.resolveImage},
		{"create cgroups", s.createCgroups},
		{"start init", s.startInit},
		{"set up sandbox", s.setUp},
		{"connect to agent", s.connect},
		{"record state", s.record},
	}
	for _, step := range steps {
		if err := step.run(ctx); err != nil {
			return fmt.Errorf("native: spawn %s: %s: %w", spec.ID, step.name, err)
		}
	}

	sb := newSandbox(s.dir, s.state, s.pidfd, s.client)
	sb.release = s.release
	p.mu.Lock()
	p.sandboxes[spec.ID] = sb
	p.mu.Unlock()
	sb.logf("spawned image=%q pid=%d duration=%s", s.state.Image, s.state.Pid, time.Since(started).Round(time.Microsecond))
	p.log.Info("sandbox spawned", "sandbox_id", spec.ID, "image", s.state.Image, "pid", s.state.Pid,
		"duration_ms", time.Since(started).Milliseconds())
	return nil
}

// checkSpawn validates spec and that the host can spawn at all.
func (p *Provider) checkSpawn(spec provider.SpawnSpec) error {
	switch {
	case !validID.MatchString(spec.ID):
		return fmt.Errorf("native: sandbox ID %q must match [a-z0-9-]{1,64}: %w", spec.ID, provider.ErrInvalidArgument)
	case spec.Network:
		return fmt.Errorf("native: network access was requested, but native sandboxes have loopback only; "+
			"spawn without network or use the docker provider: %w", provider.ErrInvalidArgument)
	case spec.MemoryMB < 0 || spec.VCPUs < 0:
		return fmt.Errorf("native: memory_mb %d and vcpus %d must not be negative: %w", spec.MemoryMB, spec.VCPUs, provider.ErrInvalidArgument)
	case rootless() && checkUserNamespaces() != nil:
		return fmt.Errorf("native: %w: %w", provider.ErrUnavailable, checkUserNamespaces())
	case p.cgErr != nil:
		return fmt.Errorf("native: %w: cgroups: %w", provider.ErrUnavailable, p.cgErr)
	}
	return nil
}

// spawner carries one spawn through its steps and undoes them on failure.
type spawner struct {
	p         *Provider
	spec      provider.SpawnSpec
	dir       string
	agentPath string

	imageName string // image to use; HostImage for the host view
	imageRoot string // unpacked image tree; empty for the host view
	release   func() // releases the image tree
	cgroups   cgroupPaths
	cmd       *exec.Cmd
	pidfd     int
	status    *os.File // read end of the setup step's status pipe
	config    *os.File // write end of the setup step's configuration pipe
	client    *agent.Client
	state     state
}

// undo removes everything the steps made, in reverse order.
func (s *spawner) undo() {
	ctx, cancel := context.WithTimeout(context.Background(), destroyLimit)
	defer cancel()
	if s.client != nil {
		_ = s.client.Close()
	}
	for _, f := range []*os.File{s.status, s.config} {
		if f != nil {
			_ = f.Close()
		}
	}
	if s.pidfd >= 0 {
		_ = killProcess(s.pidfd)
		_ = waitExit(ctx, s.pidfd)
		_ = unix.Close(s.pidfd)
	}
	if s.cgroups.Version != 0 {
		if err := s.cgroups.remove(ctx); err != nil {
			s.p.log.Warn("remove cgroups of a failed spawn", "sandbox_id", s.spec.ID, "error", err)
		}
	}
	if s.release != nil {
		s.release()
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.p.log.Warn("remove directory of a failed spawn", "sandbox_id", s.spec.ID, "error", err)
	}
}

// makeDirs creates the sandbox's host directory and its subdirectories.
func (s *spawner) makeDirs(context.Context) error {
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("sandbox %s already exists: %w", s.spec.ID, provider.ErrInvalidArgument)
		}
		return err
	}
	for _, sub := range []string{runDir, rootDir} {
		if err := os.Mkdir(filepath.Join(s.dir, sub), 0o755); err != nil {
			return err
		}
	}
	// The agent binary is mounted on this empty file inside the sandbox.
	return os.WriteFile(filepath.Join(s.dir, runDir, filepath.Base(agentMount)), nil, 0o755)
}

// resolveImage finds the image tree, or selects the host view, and makes
// the directories that mode needs.
func (s *spawner) resolveImage(ctx context.Context) error {
	s.imageName = s.spec.Image
	if s.imageName == "" {
		s.imageName = s.p.cfg.DefaultImage
	}
	if s.imageName == HostImage {
		for _, name := range privateDirs {
			mode := os.FileMode(0o755)
			if name == "tmp" {
				mode = os.ModeSticky | 0o777
			}
			if err := mkdirMode(filepath.Join(s.dir, privateDir, name), mode); err != nil {
				return err
			}
		}
		return nil
	}

	if s.p.cfg.Images == nil {
		return fmt.Errorf("image %q: no image store is configured, so only the %q image is available: %w",
			s.imageName, HostImage, provider.ErrInvalidArgument)
	}
	root, release, err := s.p.cfg.Images.RootFS(ctx, s.imageName)
	if errors.Is(err, image.ErrNotFound) {
		return fmt.Errorf("%w: %w", provider.ErrInvalidArgument, err)
	}
	if err != nil {
		return err
	}
	s.imageRoot, s.release = root, release
	if strings.ContainsAny(root, ",:") {
		return fmt.Errorf("image tree %s contains ',' or ':', which overlay mount options cannot hold; "+
			"move the image store: %w", root, provider.ErrUnavailable)
	}
	for _, sub := range []string{"upper", "work"} {
		if err := os.MkdirAll(filepath.Join(s.dir, layerDir, sub), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// createCgroups makes the sandbox's cgroups with its limits. A limit whose
// controller this host lacks fails the spawn rather than being ignored.
func (s *spawner) createCgroups(context.Context) error {
	if s.p.unlimited {
		return nil
	}
	limits := cgroupLimits{
		memoryBytes: int64(s.spec.MemoryMB) << 20,
		pids:        s.p.cfg.PidsLimit,
		cpus:        s.spec.VCPUs,
	}
	cg := s.p.cgroups.paths(s.p.cfg.CgroupParent, s.spec.ID)
	if missing := cg.missingLimit(limits); missing != "" {
		return fmt.Errorf("the %s cgroup controller is not available on this host: %w", missing, provider.ErrUnavailable)
	}
	cg, err := s.p.cgroups.create(s.p.cfg.CgroupParent, s.spec.ID, limits)
	s.cgroups = cg
	return err
}

// startInit starts the setup step as a detached process in new
// namespaces: its own session, so it survives the server, and PID 1 of
// its PID namespace. It waits for its configuration on a pipe.
func (s *spawner) startInit(context.Context) error {
	configR, configW, err := os.Pipe()
	if err != nil {
		return err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		configR.Close()
		configW.Close()
		return err
	}
	s.config, s.status = configW, statusR
	console, err := os.OpenFile(filepath.Join(s.dir, consoleFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		configR.Close()
		statusW.Close()
		return err
	}

	s.cmd = &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{initArg0},
		Env:        []string{},
		Stdout:     console,
		Stderr:     console,
		ExtraFiles: []*os.File{configR, statusW},
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:     true,
			Cloneflags: namespaceFlags,
		},
	}
	if rootless() {
		userNamespaceAttr(s.cmd.SysProcAttr)
	}
	err = s.cmd.Start()
	configR.Close()
	statusW.Close()
	console.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", initArg0, err)
	}

	// The pidfd is opened before anything can reap the child, so it
	// refers to this process even after its pid is reused.
	pid := s.cmd.Process.Pid
	s.pidfd, err = unix.PidfdOpen(pid, 0)
	go func() { _ = s.cmd.Wait() }()
	if err != nil {
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return nil
}

// setUp moves the setup step into the sandbox's cgroups, sends it its
// configuration and waits until it has executed the agent or failed.
func (s *spawner) setUp(ctx context.Context) error {
	pid := s.cmd.Process.Pid
	if err := s.cgroups.addProcess(pid); err != nil {
		return err
	}
	startTime, err := processStartTime(pid)
	if err != nil {
		return fmt.Errorf("read start time of init %d: %w", pid, err)
	}
	boot, err := bootID()
	if err != nil {
		return err
	}
	s.state = state{
		ID:        s.spec.ID,
		Image:     s.imageName,
		ImageRoot: s.imageRoot,
		MemoryMB:  s.spec.MemoryMB,
		VCPUs:     s.spec.VCPUs,
		Env:       s.spec.Env,
		OwnerID:   s.spec.OwnerID,
		Metadata:  s.spec.Metadata,
		CreatedAt: time.Now().UTC(),
		Pid:       pid,
		StartTime: startTime,
		BootID:    boot,
		Cgroups:   s.cgroups,
	}

	cfg, err := json.Marshal(s.initConfig())
	if err != nil {
		return err
	}
	_, err = s.config.Write(cfg)
	s.config.Close()
	s.config = nil
	if err != nil {
		return fmt.Errorf("send configuration: %w", err)
	}
	return s.waitStatus(ctx)
}

// initConfig returns the setup step's configuration.
func (s *spawner) initConfig() initConfig {
	cfg := initConfig{
		Hostname: s.spec.ID,
		Root:     filepath.Join(s.dir, rootDir),
		Run:      filepath.Join(s.dir, runDir),
		Agent:    s.agentPath,
		Cgroups:  s.cgroups,
		Env:      agentEnv(s.spec.Env),
		Rootless: rootless(),
	}
	if s.p.unlimited {
		cfg.NprocLimit = s.p.cfg.PidsLimit
	}
	if s.imageRoot != "" {
		cfg.Lower = s.imageRoot
		cfg.Upper = filepath.Join(s.dir, layerDir, "upper")
		cfg.Work = filepath.Join(s.dir, layerDir, "work")
	} else {
		cfg.Private = filepath.Join(s.dir, privateDir)
	}
	return cfg
}

// agentEnv returns the agent's environment, which every command inherits:
// the defaults overridden by the sandbox's Env, sorted by name.
func agentEnv(env map[string]string) []string {
	vars := map[string]string{
		"PATH": defaultPath,
		"HOME": "/root",
		"LANG": "C.UTF-8",
	}
	maps.Copy(vars, env)
	out := make([]string, 0, len(vars))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// waitStatus reads the status pipe: end of file alone means the setup step
// executed the agent, a message is the step's error.
func (s *spawner) waitStatus(ctx context.Context) error {
	type result struct {
		msg []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		msg, err := io.ReadAll(s.status)
		done <- result{msg, err}
	}()
	select {
	case r := <-done:
		s.status.Close()
		s.status = nil
		if r.err != nil {
			return r.err
		}
		if len(r.msg) > 0 {
			return errors.New(string(r.msg))
		}
		return nil
	case <-ctx.Done():
		_ = killProcess(s.pidfd) // ends the read above with end of file
		return ctx.Err()
	}
}

// connect dials the agent until it responds, its init exits or ctx is
// done. The agent creates its socket within milliseconds of its start.
func (s *spawner) connect(ctx context.Context) error {
	socket := filepath.Join(s.dir, runDir, socketName)
	for {
		client, err := dialAgent(ctx, socket)
		if err == nil {
			s.client = client
			return nil
		}
		if exited(s.pidfd) {
			return fmt.Errorf("the agent exited; its log ends with %q", consoleTail(s.dir, 5))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last dial error: %w)", ctx.Err(), err)
		case <-time.After(time.Millisecond):
		}
	}
}

// record writes the state file, which marks the sandbox complete.
func (s *spawner) record(context.Context) error {
	return writeState(s.dir, s.state)
}
