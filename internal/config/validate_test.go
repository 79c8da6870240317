package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	cfg := Default()
	cfg.DataDir = "/var/lib/stacyvm"
	return cfg
}

func TestValidateDefaults(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Errorf("defaults with a data dir: %v", err)
	}
}

func TestValidateProblems(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, `listen "127.0.0.1" is invalid`},
		{"listen bad port", func(c *Config) { c.Listen = "127.0.0.1:http" }, "invalid port"},
		{"listen port too large", func(c *Config) { c.Listen = "127.0.0.1:70000" }, "invalid port"},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "data_dir is empty"},
		{"empty provider", func(c *Config) { c.DefaultProvider = "" }, "default_provider is empty"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format "xml" is invalid: use one of text, json`},
		{"log level", func(c *Config) { c.Log.Level = "trace" }, `log.level "trace" is invalid`},
		{"zero memory", func(c *Config) { c.Limits.MaxMemoryMB = 0 }, "limits.max_memory_mb is 0"},
		{"default above max", func(c *Config) { c.Limits.DefaultVCPUs = 16 }, "limits.default_vcpus (16) is greater than limits.max_vcpus (8)"},
		{"ttl above max", func(c *Config) { c.Limits.DefaultTTL = 48 * time.Hour }, "limits.default_ttl (48h0m0s) is greater than limits.max_ttl"},
		{"negative exec timeout", func(c *Config) { c.Limits.MaxExecTimeout = -time.Second }, "limits.max_exec_timeout is -1s"},
		{"negative sandbox cap", func(c *Config) { c.Limits.MaxSandboxes = -1 }, "limits.max_sandboxes is -1"},
		{"zero idempotency window", func(c *Config) { c.Limits.IdempotencyWindow = 0 }, "limits.idempotency_window is 0s"},
		{"zero reap interval", func(c *Config) { c.Manager.ReapInterval = 0 }, "manager.reap_interval is 0s"},
		{"zero shutdown", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout is 0s"},
		{"key whitespace", func(c *Config) { c.Auth.APIKey = " key" }, "auth.api_key contains whitespace"},
		{"cors origin", func(c *Config) { c.CORS.AllowedOrigins = []string{"example.com"} }, `"example.com" is invalid`},
		{"exposed without key", func(c *Config) { c.Listen = "0.0.0.0:7423" }, `listen "0.0.0.0:7423" accepts connections from other hosts`},
		{"every interface without key", func(c *Config) { c.Listen = ":7423" }, "set an API key (--api-key or STACYVM_API_KEY)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the change, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := validConfig()
	cfg.Listen = "nowhere"
	cfg.Log.Level = "loud"
	cfg.Limits.MaxVCPUs = -2
	cfg.Manager.ReapParallelism = 0

	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted four problems")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("error %T is not a joined error", err)
	}
	if got := len(joined.Unwrap()); got != 4 {
		t.Errorf("got %d problems, want 4:\n%v", got, err)
	}
	for _, key := range []string{"listen", "log.level", "limits.max_vcpus", "manager.reap_parallelism"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestValidateExposureAllowed(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"with api key", func(c *Config) { c.Listen = "0.0.0.0:7423"; c.Auth.APIKey = "k" }},
		{"insecure no auth", func(c *Config) { c.Listen = "0.0.0.0:7423"; c.Auth.InsecureNoAuth = true }},
		{"ipv6 loopback", func(c *Config) { c.Listen = "[::1]:7423" }},
		{"localhost", func(c *Config) { c.Listen = "localhost:7423" }},
		{"cors any", func(c *Config) { c.CORS.AllowedOrigins = []string{"*", "http://localhost:3000"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:7423", true},
		{"127.0.0.2:7423", true},
		{"[::1]:7423", true},
		{"localhost:7423", true},
		{"LOCALHOST:0", true},
		{"0.0.0.0:7423", false},
		{":7423", false},
		{"[::]:7423", false},
		{"192.168.1.10:7423", false},
		{"example.com:7423", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := IsLoopback(tt.listen); got != tt.want {
			t.Errorf("IsLoopback(%q): got %v, want %v", tt.listen, got, tt.want)
		}
	}
}
