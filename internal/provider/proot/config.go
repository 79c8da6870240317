package proot

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/settings"
)

// Defaults of the Config fields.
const (
	DefaultBinary   = "proot"
	DefaultImage    = "stacyvm/minimal"
	DefaultUIDStart = 2_000_000_000
	DefaultUIDCount = 65536
)

// maxSocketPath is the longest path a unix socket address can hold on
// Linux: 108 bytes of sun_path including the terminating NUL.
const maxSocketPath = 107

// Config configures the PRoot provider. The zero value of every field
// except StateDir and Images selects its default.
type Config struct {
	// StateDir holds one directory per sandbox (state, console log and
	// writable directories) and the agents' sockets under run/. It is
	// created with mode 0711 when missing, because every sandbox user
	// must be able to pass through it. Required.
	StateDir string

	// Images is the image store that sandboxes run from. Required.
	Images *image.Store

	// DefaultImage is the image of spawns that name none. Default
	// "stacyvm/minimal".
	DefaultImage string

	// Binary is the proot executable, as a path or a name looked up in
	// PATH. Default "proot".
	Binary string

	// AgentPath is the stacyvm-agent binary that serves exec inside every
	// sandbox. Default: agent.BinaryPath at each spawn.
	AgentPath string

	// UIDStart and UIDCount give the range of host user and group IDs
	// that sandboxes run as, one ID per live sandbox. No other user or
	// group on the host may use an ID in the range. Defaults 2000000000
	// and 65536. They apply only when the server runs as root.
	UIDStart int
	UIDCount int

	// FakeRoot makes commands see themselves as root (proot -0). They
	// still run as the sandbox's unprivileged user, so this changes what
	// getuid and stat report, not what commands may do. Default false.
	FakeRoot bool

	// Logger receives lifecycle logs. Default: discarded.
	Logger *slog.Logger
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.DefaultImage == "" {
		c.DefaultImage = DefaultImage
	}
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.UIDStart == 0 {
		c.UIDStart = DefaultUIDStart
	}
	if c.UIDCount == 0 {
		c.UIDCount = DefaultUIDCount
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
	} else if n := len(socketPath(c.StateDir, math.MaxUint32, math.MaxInt32)); n > maxSocketPath {
		errs = append(errs, fmt.Errorf("state directory %s is too long: agent socket paths under it reach %d bytes, and unix sockets allow %d; choose a shorter directory",
			c.StateDir, n, maxSocketPath))
	}
	if c.Images == nil {
		errs = append(errs, errors.New("image store is missing; set Config.Images"))
	}
	if c.UIDStart <= 0 || c.UIDCount <= 0 || int64(c.UIDStart)+int64(c.UIDCount) > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("uid range %d+%d must be positive and end below %d", c.UIDStart, c.UIDCount, math.MaxInt32))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("proot: invalid configuration: %w: %w", provider.ErrInvalidArgument, err)
	}
	return nil
}

// Settings keys accepted by ParseSettings, as written under
// providers.proot in the server configuration.
var settingKeys = []string{"binary", "default_image", "agent_path", "uid_start", "uid_count", "fake_root"}

// ParseSettings sets the fields of c named by the keys of a server
// configuration section: binary, default_image, agent_path, uid_start,
// uid_count and fake_root. Values may be strings, as environment variables
// give them, or YAML numbers and booleans. Unknown keys and values of the
// wrong type are reported together.
func (c *Config) ParseSettings(section map[string]any) error {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(section)) {
		value := section[key]
		var err error
		switch key {
		case "binary":
			c.Binary, err = settings.String(value)
		case "default_image":
			c.DefaultImage, err = settings.String(value)
		case "agent_path":
			c.AgentPath, err = settings.String(value)
		case "uid_start":
			c.UIDStart, err = settings.Int(value)
		case "uid_count":
			c.UIDCount, err = settings.Int(value)
		case "fake_root":
			c.FakeRoot, err = settings.Bool(value)
		default:
			err = fmt.Errorf("unknown key; known keys are %s", strings.Join(settingKeys, ", "))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("providers.proot.%s: %w", key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("proot: invalid settings: %w: %w", provider.ErrInvalidArgument, err)
	}
	return nil
}

// socketPath returns the host path of the socket of agent n of the
// sandbox that runs as uid. The directory is keyed by the uid rather than
// the sandbox ID, which may be 64 bytes long, to keep the path within
// maxSocketPath.
func socketPath(stateDir string, uid uint32, n int) string {
	return filepath.Join(runDir(stateDir, uid), socketName(n))
}

// socketName returns the file name of the socket of agent n.
func socketName(n int) string {
	return "agent-" + strconv.Itoa(n) + ".sock"
}

// runDir returns the host directory mounted at /run/stacyvm in the sandbox
// that runs as uid.
func runDir(stateDir string, uid uint32) string {
	return filepath.Join(stateDir, "run", strconv.FormatUint(uint64(uid), 10))
}
