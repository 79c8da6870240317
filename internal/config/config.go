// Package config defines StacyVM's configuration: one documented struct per
// component, the defaults in one place, and validation that reports every
// problem at once. Only this package and cmd read the environment.
package config

import (
	"path/filepath"
	"time"
)

// Config is the whole server configuration. The YAML keys mirror the flags;
// environment variables are STACYVM_ plus the upper-cased key path with
// dots as underscores (STACYVM_LIMITS_MAX_MEMORY_MB).
type Config struct {
	// Listen is the HTTP listen address. Default 127.0.0.1:7423.
	Listen string `yaml:"listen"`

	// DataDir holds the SQLite database and per-sandbox host directories.
	// Default: /var/lib/stacyvm as root, else $XDG_DATA_HOME/stacyvm or
	// ~/.local/share/stacyvm.
	DataDir string `yaml:"data_dir"`

	// DefaultProvider is the provider used when a spawn names none: a
	// registered name, or "auto" to pick the first usable of docker, native
	// and proot. Default "auto".
	DefaultProvider string `yaml:"default_provider"`

	// Log configures the server's structured logs.
	Log LogConfig `yaml:"log"`

	// Limits holds admission defaults and maximums.
	Limits Limits `yaml:"limits"`

	// Manager configures the sandbox manager's background loops.
	Manager ManagerConfig `yaml:"manager"`

	// Auth configures API authentication.
	Auth AuthConfig `yaml:"auth"`

	// CORS configures cross-origin access for browser clients.
	CORS CORSConfig `yaml:"cors"`

	// Images configures the image store that sandboxes of the native and
	// PRoot providers are unpacked from.
	Images ImagesConfig `yaml:"images"`

	// ShutdownTimeout bounds how long in-flight requests may run after
	// SIGINT or SIGTERM. Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Providers holds per-provider settings, keyed by provider name. Each
	// provider package decodes its own section.
	Providers map[string]map[string]any `yaml:"providers"`
}

// LogConfig configures log output.
type LogConfig struct {
	Format string `yaml:"format"` // "text" (default) or "json"
	Level  string `yaml:"level"`  // "debug", "info" (default), "warn" or "error"
}

// Limits are admission defaults and maximums. A request above a maximum is
// rejected with 429 RESOURCE_LIMIT naming the limit.
type Limits struct {
	DefaultMemoryMB int `yaml:"default_memory_mb"` // default 512
	MaxMemoryMB     int `yaml:"max_memory_mb"`     // default 8192
	DefaultVCPUs    int `yaml:"default_vcpus"`     // default 1
	MaxVCPUs        int `yaml:"max_vcpus"`         // default 8

	DefaultTTL time.Duration `yaml:"default_ttl"` // default 30m
	MaxTTL     time.Duration `yaml:"max_ttl"`     // default 24h

	DefaultExecTimeout time.Duration `yaml:"default_exec_timeout"` // default 60s
	MaxExecTimeout     time.Duration `yaml:"max_exec_timeout"`     // default 1h

	// MaxOutputBytes caps captured output per stream of one exec.
	// Default 10 MiB.
	MaxOutputBytes int64 `yaml:"max_output_bytes"`

	// MaxRequestBytes caps JSON request bodies. Default 32 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`

	// MaxUploadBytes caps raw file and archive uploads. Default 1 GiB.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`

	// MaxSandboxes caps live sandboxes in total; 0 means no cap. Default 100.
	MaxSandboxes int `yaml:"max_sandboxes"`

	// MaxSandboxesPerOwner caps live sandboxes per owner_id; 0 means no
	// cap. Default 0.
	MaxSandboxesPerOwner int `yaml:"max_sandboxes_per_owner"`

	// IdempotencyWindow is how long a spawn's Idempotency-Key is kept: a
	// retry with the key within it returns the same sandbox. Default 24h.
	IdempotencyWindow time.Duration `yaml:"idempotency_window"`
}

// ManagerConfig configures the sandbox manager's background loops.
type ManagerConfig struct {
	// ReapInterval is how often expired sandboxes are destroyed. Default 5s.
	ReapInterval time.Duration `yaml:"reap_interval"`

	// ReapParallelism bounds concurrent destroys by the reaper. Default 4.
	ReapParallelism int `yaml:"reap_parallelism"`

	// ReconcileInterval is how often store and providers are reconciled
	// after the startup pass. Default 1m.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`

	// EventRetention bounds how long lifecycle events are kept for replay.
	// Default 24h.
	EventRetention time.Duration `yaml:"event_retention"`
}

// AuthConfig configures API authentication.
type AuthConfig struct {
	// APIKey, when set, is required on every route except live and ready.
	APIKey Secret `yaml:"api_key"`

	// InsecureNoAuth allows a non-loopback listen address without an API key.
	InsecureNoAuth bool `yaml:"insecure_no_auth"`
}

// CORSConfig configures cross-origin resource sharing.
type CORSConfig struct {
	// AllowedOrigins lists origins allowed to call the API from a browser;
	// "*" allows any. Empty disables CORS headers.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// ImagesConfig configures the image store.
type ImagesConfig struct {
	// Dir is the image store directory. Default: the images directory
	// under DataDir; ImageDir returns the directory in effect.
	Dir string `yaml:"dir"`

	// InsecureRegistries lists registry hosts, "host" or "host:port", that
	// image pulls reach over plain HTTP. Loopback registries always use
	// plain HTTP. Default: none.
	InsecureRegistries []string `yaml:"insecure_registries"`
}

// ImageDir returns the image store directory: Images.Dir when set, else
// DataDir/images.
func (c Config) ImageDir() string {
	if c.Images.Dir != "" {
		return c.Images.Dir
	}
	if c.DataDir == "" {
		return ""
	}
	return filepath.Join(c.DataDir, "images")
}

// Secret is a string that never appears in logs or printed configuration.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Default returns the configuration with every default filled in except
// DataDir, which depends on the user and is filled in by Load.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:7423",
		DefaultProvider: "auto",
		Log:             LogConfig{Format: "text", Level: "info"},
		Limits: Limits{
			DefaultMemoryMB:    512,
			MaxMemoryMB:        8192,
			DefaultVCPUs:       1,
			MaxVCPUs:           8,
			DefaultTTL:         30 * time.Minute,
			MaxTTL:             24 * time.Hour,
			DefaultExecTimeout: 60 * time.Second,
			MaxExecTimeout:     time.Hour,
			MaxOutputBytes:     10 << 20,
			MaxRequestBytes:    32 << 20,
			MaxUploadBytes:     1 << 30,
			MaxSandboxes:       100,
			IdempotencyWindow:  24 * time.Hour,
		},
		Manager: ManagerConfig{
			ReapInterval:      5 * time.Second,
			ReapParallelism:   4,
			ReconcileInterval: time.Minute,
			EventRetention:    24 * time.Hour,
		},
		ShutdownTimeout: 15 * time.Second,
	}
}
