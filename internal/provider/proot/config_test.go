package proot

import (
	"errors"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestParseSettings(t *testing.T) {
	var cfg Config
	err := cfg.ParseSettings(map[string]any{
		"binary":        "/opt/proot/bin/proot",
		"default_image": "stacyvm/python",
		"agent_path":    "/usr/local/bin/stacyvm-agent",
		"uid_start":     "3000000",
		"uid_count":     100,
		"fake_root":     "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Binary:       "/opt/proot/bin/proot",
		DefaultImage: "stacyvm/python",
		AgentPath:    "/usr/local/bin/stacyvm-agent",
		UIDStart:     3000000,
		UIDCount:     100,
		FakeRoot:     true,
	}
	if cfg != want {
		t.Errorf("ParseSettings = %+v, want %+v", cfg, want)
	}
}

func TestParseSettingsReportsEveryError(t *testing.T) {
	var cfg Config
	err := cfg.ParseSettings(map[string]any{
		"binary":    42,
		"uid_start": "many",
		"fake_root": "perhaps",
		"color":     "blue",
	})
	if !errors.Is(err, provider.ErrInvalidArgument) {
		t.Fatalf("error = %v, want ErrInvalidArgument", err)
	}
	for _, key := range []string{"providers.proot.binary", "providers.proot.uid_start", "providers.proot.fake_root", "providers.proot.color"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestValidate(t *testing.T) {
	store := &image.Store{}
	cases := []struct {
		name string
		cfg  Config
		want string // part of the error; empty for none
	}{
		{"defaults", Config{StateDir: "/var/lib/stacyvm/providers/proot", Images: store}, ""},
		{"no state directory", Config{Images: store}, "state directory is empty"},
		{"no image store", Config{StateDir: "/var/lib/stacyvm/proot"}, "image store is missing"},
		{"socket path too long", Config{StateDir: "/" + strings.Repeat("d", 90), Images: store}, "too long"},
		{"uid range past int32", Config{StateDir: "/s", Images: store, UIDStart: 2147483000, UIDCount: 1000}, "uid range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.withDefaults().Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, c.want)
			case c.want != "" && !errors.Is(err, provider.ErrInvalidArgument):
				t.Errorf("Validate: %v, want ErrInvalidArgument", err)
			}
		})
	}
}
