package native

import (
	"errors"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestParseSettings(t *testing.T) {
	var cfg Config
	err := cfg.ParseSettings(map[string]any{
		"state_dir":     "/var/lib/stacyvm/native",
		"default_image": "stacyvm/python",
		"agent_path":    "/usr/local/bin/stacyvm-agent",
		"cgroup_parent": "stacyvm/sandboxes",
		"pids_limit":    "256",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		StateDir:     "/var/lib/stacyvm/native",
		DefaultImage: "stacyvm/python",
		AgentPath:    "/usr/local/bin/stacyvm-agent",
		CgroupParent: "stacyvm/sandboxes",
		PidsLimit:    256,
	}
	if cfg != want {
		t.Errorf("ParseSettings = %+v, want %+v", cfg, want)
	}
}

func TestParseSettingsRejects(t *testing.T) {
	var cfg Config
	err := cfg.ParseSettings(map[string]any{"pids_limit": "many", "cgroup_parent": 3, "network": true})
	if !errors.Is(err, provider.ErrInvalidArgument) {
		t.Fatalf("ParseSettings: %v, want ErrInvalidArgument", err)
	}
	for _, key := range []string{"pids_limit", "cgroup_parent", "network"} {
		if !strings.Contains(err.Error(), "providers.native."+key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestValidateCgroupParent(t *testing.T) {
	tests := []struct {
		parent string
		ok     bool
	}{
		{"stacyvm", true},
		{"stacyvm/sandboxes", true},
		{"../escape", false},
		{"a/../b", false},
		{".", false},
		{"/absolute", false},
		{"a//b", false},
	}
	for _, tt := range tests {
		err := Config{StateDir: "/tmp/x", CgroupParent: tt.parent}.withDefaults().Validate()
		if (err == nil) != tt.ok {
			t.Errorf("Validate with cgroup parent %q: %v, want ok %v", tt.parent, err, tt.ok)
		}
	}
}
