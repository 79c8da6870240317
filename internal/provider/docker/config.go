package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultRuntime      = "runc"
	DefaultPidsLimit    = 512
	DefaultImage        = "stacyvm/minimal:latest"
	DefaultNetworkName  = "bridge"
	DefaultAgentTimeout = 30 * time.Second
)

// defaultRuntimes are the runtimes a spawn may select unless the
// configuration lists others. A runtime is offered only while the engine
// reports it registered.
var defaultRuntimes = []string{"runc", "runsc", "kata-runtime"}

// defaultOfflineRuntimes are the runtimes whose sandboxes cannot have a
// network unless the configuration lists others. gVisor's runsc is
// registered with --network=none in the setup docs/providers/docker.md
// describes, because without it the runsc of Debian bookworm (release
// 20221219) fails to start any container.
var defaultOfflineRuntimes = []string{"runsc"}

// Config configures the docker provider. Settings reads it from the
// provider's section of the server configuration, and WithDefaults fills in
// every empty field.
type Config struct {
	// Host is the engine address, such as unix:///var/run/docker.sock or
	// tcp://127.0.0.1:2375. Empty means the engine's default socket,
	// unix:///var/run/docker.sock. The server must share the engine's
	// host, because sandboxes bind-mount host directories.
	Host string

	// Runtime is the OCI runtime of spawns that name none. Default "runc".
	Runtime string

	// Runtimes lists the runtimes a spawn may select. Each is offered only
	// while the engine reports it registered. Default runc, runsc and
	// kata-runtime.
	Runtimes []string

	// OfflineRuntimes lists the runtimes that cannot give a sandbox a
	// network; a spawn that requests one with a network is rejected.
	// Default runsc.
	OfflineRuntimes []string

	// PidsLimit caps the processes and threads of one sandbox. With runsc
	// the threads of gVisor's kernel count too. Default 512.
	PidsLimit int64

	// ReadOnlyRootfs mounts the image read-only, with writable tmpfs
	// mounts at /tmp and /workspace whose pages count against the
	// sandbox's memory limit. Default false.
	ReadOnlyRootfs bool

	// AgentPath is the stacyvm-agent binary mounted into every sandbox.
	// Empty means agent.BinaryPath().
	AgentPath string

	// StateDir holds one host directory per sandbox, mounted at
	// /run/stacyvm for the agent's socket. It also identifies this
	// server's containers: a server lists and recovers only the
	// containers created with its StateDir. Default
	// <data_dir>/providers/docker.
	StateDir string

	// DefaultImage is the image of spawns that name none. Default
	// "stacyvm/minimal:latest".
	DefaultImage string

	// NetworkName is the Docker network of sandboxes spawned with a
	// network. Others get none. Default "bridge".
	NetworkName string

	// AgentTimeout bounds the wait for a started container's agent to
	// respond. Default 30s.
	AgentTimeout time.Duration

	// Logger receives lifecycle logs. Nil discards them.
	Logger *slog.Logger
}

// settingKeys are the keys of the provider's configuration section.
var settingKeys = []string{
	"host", "runtime", "runtimes", "offline_runtimes", "pids_limit", "read_only_rootfs",
	"agent_path", "state_dir", "default_image", "network_name", "agent_timeout",
}

// Settings decodes the provider's configuration section, such as
// cfg.Providers["docker"], and fills in the defaults. dataDir is the
// server's data directory. Values may be YAML values or the strings that
// environment variables give, and lists may be comma-separated strings.
// Every unknown key and malformed value is reported at once.
func Settings(settings map[string]any, dataDir string) (Config, error) {
	var cfg Config
	d := decoder{settings: settings}
	cfg.Host = d.str("host")
	cfg.Runtime = d.str("runtime")
	cfg.Runtimes = d.list("runtimes")
	cfg.OfflineRuntimes = d.list("offline_runtimes")
	cfg.PidsLimit = d.integer("pids_limit")
	cfg.ReadOnlyRootfs = d.boolean("read_only_rootfs")
	cfg.AgentPath = d.str("agent_path")
	cfg.StateDir = d.str("state_dir")
	cfg.DefaultImage = d.str("default_image")
	cfg.NetworkName = d.str("network_name")
	cfg.AgentTimeout = d.duration("agent_timeout")
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		if !slices.Contains(settingKeys, key) {
			d.errs = append(d.errs, fmt.Errorf("providers.docker.%s: unknown key; known keys: %s",
				key, strings.Join(settingKeys, ", ")))
		}
	}
	if len(d.errs) > 0 {
		return Config{}, errors.Join(d.errs...)
	}

	if cfg.StateDir == "" && dataDir != "" {
		cfg.StateDir = filepath.Join(dataDir, "providers", "docker")
	}
	cfg = cfg.WithDefaults()
	return cfg, cfg.Validate()
}

// WithDefaults returns c with every empty field set to its default, except
// StateDir and AgentPath, which depend on the server.
func (c Config) WithDefaults() Config {
	if c.Runtime == "" {
		c.Runtime = DefaultRuntime
	}
	if c.Runtimes == nil {
		c.Runtimes = slices.Clone(defaultRuntimes)
	}
	if c.OfflineRuntimes == nil {
		c.OfflineRuntimes = slices.Clone(defaultOfflineRuntimes)
	}
	if c.PidsLimit == 0 {
		c.PidsLimit = DefaultPidsLimit
	}
	if c.DefaultImage == "" {
		c.DefaultImage = DefaultImage
	}
	if c.NetworkName == "" {
		c.NetworkName = DefaultNetworkName
	}
	if c.AgentTimeout == 0 {
		c.AgentTimeout = DefaultAgentTimeout
	}
	return c
}

// Validate checks a configuration with its defaults filled in and returns
// every problem at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.StateDir == "" {
		add("providers.docker.state_dir is empty: set a directory for the sandboxes' socket directories")
	} else if !filepath.IsAbs(c.StateDir) {
		add("providers.docker.state_dir %q is not an absolute path", c.StateDir)
	}
	if c.AgentPath != "" && !filepath.IsAbs(c.AgentPath) {
		add("providers.docker.agent_path %q is not an absolute path", c.AgentPath)
	}
	if !slices.Contains(c.Runtimes, c.Runtime) {
		add("providers.docker.runtime %q is not in providers.docker.runtimes (%s): add it there",
			c.Runtime, strings.Join(c.Runtimes, ", "))
	}
	if c.PidsLimit < 16 {
		add("providers.docker.pids_limit %d is below 16: a sandbox needs processes for the agent and its commands", c.PidsLimit)
	}
	if c.AgentTimeout < 0 {
		add("providers.docker.agent_timeout %s is negative", c.AgentTimeout)
	}
	for _, name := range append(slices.Clone(c.Runtimes), c.NetworkName) {
		if strings.TrimSpace(name) == "" {
			add("providers.docker: runtime and network names must not be empty")
			break
		}
	}
	return errors.Join(errs...)
}

// decoder reads typed values from a settings map and collects the errors.
type decoder struct {
	settings map[string]any
	errs     []error
}

func (d *decoder) fail(key string, v any, want string) {
	d.errs = append(d.errs, fmt.Errorf("providers.docker.%s: got %v (%T), want %s", key, v, v, want))
}

func (d *decoder) str(key string) string {
	v, ok := d.settings[key]
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.fail(key, v, "a string")
	}
	return strings.TrimSpace(s)
}

func (d *decoder) list(key string) []string {
	v, ok := d.settings[key]
	if !ok || v == nil {
		return nil
	}
	var items []string
	switch v := v.(type) {
	case string:
		items = strings.Split(v, ",")
	case []string:
		items = v
	case []any:
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				d.fail(key, v, "a list of strings")
				return nil
			}
			items = append(items, s)
		}
	default:
		d.fail(key, v, "a list of strings or a comma-separated string")
		return nil
	}
	out := []string{}
	for _, item := range items {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (d *decoder) integer(key string) int64 {
	v, ok := d.settings[key]
	if !ok || v == nil {
		return 0
	}
	switch v := v.(type) {
	case int:
		return int64(v)
	case int64:
		return v
	case uint64:
		return int64(v)
	case float64:
		if v == float64(int64(v)) {
			return int64(v)
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err == nil {
			return n
		}
	}
	d.fail(key, v, "an integer")
	return 0
}

func (d *decoder) boolean(key string) bool {
	v, ok := d.settings[key]
	if !ok || v == nil {
		return false
	}
	switch v := v.(type) {
	case bool:
		return v
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err == nil {
			return b
		}
	}
	d.fail(key, v, "true or false")
	return false
}

func (d *decoder) duration(key string) time.Duration {
	v, ok := d.settings[key]
	if !ok || v == nil {
		return 0
	}
	s, ok := v.(string)
	if ok {
		if dur, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			return dur
		}
	}
	d.fail(key, v, `a duration such as "30s"`)
	return 0
}

// engineProbeTimeout bounds the engine ping of ForServer.
const engineProbeTimeout = 3 * time.Second

// ForServer builds the provider for the server: settings is the provider's
// configuration section (nil when there is none), dataDir the server's
// data directory, and dockerHost the DOCKER_HOST of the server's
// environment, used when settings name no host. Without a configuration
// section the provider is built only when an engine responds, so that a
// host without Docker does not list a provider that can never work. With
// one it is built in any case, and Health reports the engine's state.
func ForServer(settings map[string]any, dataDir, dockerHost string, log *slog.Logger) (*Provider, error) {
	cfg, err := Settings(settings, dataDir)
	if err != nil {
		return nil, err
	}
	if cfg.Host == "" {
		cfg.Host = dockerHost
	}
	cfg.Logger = log
	p, err := New(cfg)
	if err != nil || settings != nil {
		return p, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), engineProbeTimeout)
	defer cancel()
	if err := p.Health(ctx); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("%w; add a providers.docker section to the configuration to register the provider anyway", err)
	}
	return p, nil
}
