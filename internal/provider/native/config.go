// Package native is the provider that isolates sandboxes with the Linux
// kernel's own mechanisms and needs no daemon. Each sandbox gets new mount,
// PID, network, UTS, IPC and cgroup namespaces, cgroups with its limits, a
// root file system set up with pivot_root (an image under a writable
// overlay layer, or a read-only view of the host), reduced capabilities
// and a seccomp filter. The agent runs as PID 1 and serves exec and file
// calls on a unix socket in the sandbox's host directory, mounted at
// /run/stacyvm.
//
// The provider starts each sandbox by re-executing its own binary as a
// setup step (see initArg0), so every program that links this package can
// spawn native sandboxes. Sandboxes outlive the server, and a new Provider
// over the same StateDir recovers them. docs/providers/native.md describes
// the design, the seccomp filter and the known gaps. On systems other than
// Linux every call fails with ErrUnavailable.
package native

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/settings"
)

// Name is the registry name of the native provider.
const Name = "native"

// HostImage is the image name that selects the host view root filesystem:
// read-only host /usr, /bin, /lib and selected /etc files, with private
// writable /workspace, /tmp, /home and /root. An empty SpawnSpec.Image
// selects Config.DefaultImage, which is HostImage when that is empty too.
const HostImage = "host"

// Defaults of the Config fields.
const (
	DefaultCgroupParent = "stacyvm"
	DefaultPidsLimit    = 1024
)

// Config configures the native provider. The zero value of every field
// except StateDir selects its default.
type Config struct {
	// StateDir holds one directory per sandbox: its state file, console
	// log, writable layer and the socket of its agent. It is created with
	// mode 0700 when missing. Required.
	StateDir string

	// Images is the image store that image sandboxes are unpacked from.
	// Nil allows only HostImage sandboxes.
	Images *image.Store

	// DefaultImage is the image of spawns that name none. Default
	// HostImage.
	DefaultImage string

	// AgentPath is the stacyvm-agent binary that runs as PID 1 of every
	// sandbox. Default: agent.BinaryPath at each spawn.
	AgentPath string

	// CgroupParent is the cgroup, relative to the root of each hierarchy,
	// under which every sandbox gets a cgroup named by its ID. Default
	// "stacyvm". Every cgroup under it without a sandbox of this StateDir
	// is treated as an orphan and removed, so two providers must not
	// share a parent.
	CgroupParent string

	// PidsLimit is the maximum number of processes and threads in one
	// sandbox, the agent included. Default 1024.
	PidsLimit int

	// Logger receives lifecycle logs. Default: discarded.
	Logger *slog.Logger
}

// validCgroupParent matches relative cgroup paths made of ID-like
// elements, so that a parent can never leave the cgroup hierarchy.
var validCgroupParent = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.DefaultImage == "" {
		c.DefaultImage = HostImage
	}
	if c.CgroupParent == "" {
		c.CgroupParent = DefaultCgroupParent
	}
	if c.PidsLimit == 0 {
		c.PidsLimit = DefaultPidsLimit
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field of c at once. It expects c after
// withDefaults.
func (c Config) Validate() error {
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("state directory is empty; set Config.StateDir"))
	}
	if !validCgroupParent.MatchString(c.CgroupParent) || slices.Contains(strings.Split(c.CgroupParent, "/"), "..") ||
		slices.Contains(strings.Split(c.CgroupParent, "/"), ".") {
		errs = append(errs, fmt.Errorf("cgroup parent %q must be a clean relative path of letters, digits, '_', '.' and '-'", c.CgroupParent))
	}
	if c.PidsLimit < 0 {
		errs = append(errs, fmt.Errorf("pids limit %d is negative", c.PidsLimit))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("native: invalid configuration: %w: %w", provider.ErrInvalidArgument, err)
	}
	return nil
}

// settingKeys are the keys of the providers.native configuration section.
var settingKeys = []string{"agent_path", "cgroup_parent", "default_image", "pids_limit", "state_dir"}

// ParseSettings sets c's fields from the providers.native section of the
// server configuration: state_dir, default_image, agent_path,
// cgroup_parent and pids_limit. Numbers may be given as strings, as
// environment variables give them. It reports every invalid key at once.
func (c *Config) ParseSettings(section map[string]any) error {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(section)) {
		value := section[key]
		var err error
		switch key {
		case "state_dir":
			c.StateDir, err = settings.String(value)
		case "default_image":
			c.DefaultImage, err = settings.String(value)
		case "agent_path":
			c.AgentPath, err = settings.String(value)
		case "cgroup_parent":
			c.CgroupParent, err = settings.String(value)
		case "pids_limit":
			c.PidsLimit, err = settings.Int(value)
		default:
			err = fmt.Errorf("unknown key; known keys are %s", strings.Join(settingKeys, ", "))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("providers.native.%s: %w", key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("native: invalid settings: %w: %w", provider.ErrInvalidArgument, err)
	}
	return nil
}
