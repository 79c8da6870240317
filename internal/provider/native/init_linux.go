package native

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/agent"
)

// initArg0 is the argv[0] with which the provider re-executes its own
// binary as the setup step of a sandbox. Any program that links this
// package turns into that step when started with it; see init below.
const initArg0 = "stacyvm-native-init"

// File descriptors of the setup step, after stdin, stdout and stderr.
const (
	// initConfigFD is a pipe from which the step reads its initConfig.
	// The provider writes it once the step is in the sandbox's cgroups.
	initConfigFD = 3

	// initStatusFD is a pipe to which the step writes why it failed. It
	// is closed on exec, so end of file without a message means the agent
	// was started.
	initStatusFD = 4
)

// agentMount is the sandbox path of the read-only mount of the agent
// binary. It lies inside the run directory, so it needs no mount point in
// the image.
const agentMount = agent.SandboxDir + "/" + agent.BinaryName

// initConfig is the setup step's configuration of one sandbox. Host paths
// are absolute paths on the host.
type initConfig struct {
	Hostname string      `json:"hostname"`
	Root     string      `json:"root"`              // host directory on which the root file system is assembled
	Lower    string      `json:"lower,omitempty"`   // image tree, the overlay's lower layer; empty for the host view
	Upper    string      `json:"upper,omitempty"`   // overlay upper directory
	Work     string      `json:"work,omitempty"`    // overlay work directory
	Private  string      `json:"private,omitempty"` // host view: directory holding workspace, tmp, home and root
	Run      string      `json:"run"`               // host directory mounted at /run/stacyvm
	Agent    string      `json:"agent"`             // agent binary
	Cgroups  cgroupPaths `json:"cgroups"`
	Env      []string    `json:"env"` // the agent's environment, which commands inherit

	// Rootless is set when the step runs in a user namespace of its own,
	// where /proc and /sys must be mounted while the host's are visible.
	Rootless bool `json:"rootless,omitempty"`

	// NprocLimit, when positive, is the RLIMIT_NPROC of the agent, the
	// process bound of sandboxes without a pids cgroup.
	NprocLimit int `json:"nproc_limit,omitempty"`
}

// init runs the setup step when this binary was started as one. The step
// is PID 1 of the sandbox's new PID namespace and ends by executing the
// agent, so it never returns to the program's main.
func init() {
	if len(os.Args) == 0 || os.Args[0] != initArg0 {
		return
	}
	// Namespaces, capabilities and seccomp filters set by unshare, prctl
	// and seccomp apply to the calling thread, and execve keeps only that
	// thread, so everything runs on the main thread.
	runtime.LockOSThread()
	err := runInit()
	status := os.NewFile(initStatusFD, "status")
	fmt.Fprintf(status, "%v", err)
	os.Exit(1)
}

// runInit is the setup step. It returns only on failure.
func runInit() error {
	unix.CloseOnExec(initStatusFD)
	cfg, err := readInitConfig()
	if err != nil {
		return err
	}

	steps := []struct {
		name string
		run  func(initConfig) error
	}{
		{"enter cgroup namespace", func(initConfig) error { return unix.Unshare(unix.CLONE_NEWCGROUP) }},
		{"make mounts private", func(initConfig) error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"set hostname", func(c initConfig) error { return unix.Sethostname([]byte(c.Hostname)) }},
		{"bring up loopback", func(initConfig) error { return loopbackUp() }},
		{"build root file system", buildRoot},
		{"drop capabilities", func(initConfig) error { return dropCapabilities() }},
		{"install seccomp filter", func(initConfig) error { return installSeccomp() }},
		{"limit processes", limitProcesses},
	}
	for _, step := range steps {
		if err := step.run(cfg); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}

	argv := []string{agent.BinaryName}
	if err := unix.Exec(agentMount, argv, cfg.Env); err != nil {
		return fmt.Errorf("exec agent %s: %w", agentMount, err)
	}
	return nil
}

func readInitConfig() (initConfig, error) {
	var cfg initConfig
	f := os.NewFile(initConfigFD, "config")
	data, err := io.ReadAll(f)
	_ = f.Close()
	if err != nil {
		return cfg, fmt.Errorf("read configuration: %w", err)
	}
	if len(data) == 0 {
		return cfg, fmt.Errorf("read configuration: the provider sent none")
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("decode configuration: %w", err)
	}
	return cfg, nil
}

// loopbackUp sets the loopback interface of the new network namespace up,
// so that servers inside the sandbox reach each other on 127.0.0.1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// limitProcesses sets RLIMIT_NPROC to cfg.NprocLimit, when it is set. The
// kernel counts the tasks (threads included) of the real user ID, and
// since Linux 5.14 it counts them per user namespace, so each rootless
// sandbox gets its own count.
func limitProcesses(cfg initConfig) error {
	if cfg.NprocLimit <= 0 {
		return nil
	}
	limit := uint64(cfg.NprocLimit)
	return unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: limit, Max: limit})
}
