package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFile writes a config file into a temporary directory and returns
// its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stacyvm.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, `
listen: 127.0.0.1:1001
log:
  level: warn
limits:
  max_memory_mb: 1000
  default_ttl: 10m
`)

	tests := []struct {
		name    string
		environ []string
		flags   map[string]string
		want    func(Config) (got, want any)
	}{
		{
			name: "default when no layer sets it",
			want: func(c Config) (any, any) { return c.Log.Format, "text" },
		},
		{
			name: "file over default",
			want: func(c Config) (any, any) { return c.Limits.MaxMemoryMB, 1000 },
		},
		{
			name:    "env over file",
			environ: []string{"STACYVM_LOG_LEVEL=debug"},
			want:    func(c Config) (any, any) { return c.Log.Level, "debug" },
		},
		{
			name:    "flag over env",
			environ: []string{"STACYVM_LISTEN=127.0.0.1:2002"},
			flags:   map[string]string{"listen": "127.0.0.1:3003"},
			want:    func(c Config) (any, any) { return c.Listen, "127.0.0.1:3003" },
		},
		{
			name:  "flag over file",
			flags: map[string]string{"limits.default_ttl": "20m"},
			want:  func(c Config) (any, any) { return c.Limits.DefaultTTL, 20 * time.Minute },
		},
		{
			name:    "env over default",
			environ: []string{"STACYVM_SHUTDOWN_TIMEOUT=3s"},
			want:    func(c Config) (any, any) { return c.ShutdownTimeout, 3 * time.Second },
		},
		{
			name:    "empty env value clears file value",
			environ: []string{"STACYVM_LISTEN="},
			want:    func(c Config) (any, any) { return c.Listen, "" },
		},
		{
			name: "file keeps keys it does not set",
			want: func(c Config) (any, any) { return c.Limits.MaxVCPUs, Default().Limits.MaxVCPUs },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			environ := append([]string{"HOME=/home/test"}, tt.environ...)
			cfg, err := Load(LoadOptions{File: file, Flags: tt.flags, Environ: environ})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got, want := tt.want(cfg)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// sampleValue returns a string form of a value of v's type that differs
// from the default, and the value it should decode to.
func sampleValue(t *testing.T, v reflect.Value) (string, any) {
	t.Helper()
	if v.Type() == durationType {
		return "42m", 42 * time.Minute
	}
	switch v.Kind() {
	case reflect.String:
		return "sample-value", reflect.ValueOf("sample-value").Convert(v.Type()).Interface()
	case reflect.Bool:
		return "true", true
	case reflect.Int:
		return "4242", 4242
	case reflect.Int64:
		return "4242", int64(4242)
	case reflect.Slice:
		return "https://a.example, https://b.example", []string{"https://a.example", "https://b.example"}
	}
	t.Fatalf("no sample for type %s", v.Type())
	return "", nil
}

func TestEnvSetsEveryKey(t *testing.T) {
	t.Chdir(t.TempDir())

	all := settings()
	if len(all) < 20 {
		t.Fatalf("got %d settings, want every leaf key of Config", len(all))
	}
	for _, s := range all {
		t.Run(s.Key, func(t *testing.T) {
			field := reflect.ValueOf(Default()).FieldByIndex(s.index)
			raw, want := sampleValue(t, field)

			cfg, err := Load(LoadOptions{Environ: []string{"HOME=/home/test", s.Env + "=" + raw}})
			if err != nil {
				t.Fatalf("Load with %s: %v", s.Env, err)
			}
			got := reflect.ValueOf(cfg).FieldByIndex(s.index).Interface()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s=%q: got %v, want %v", s.Env, raw, got, want)
			}
		})
	}
}

func TestFileSetsEveryKey(t *testing.T) {
	var b strings.Builder
	var wants []func(Config) error
	for _, s := range settings() {
		field := reflect.ValueOf(Default()).FieldByIndex(s.index)
		raw, want := sampleValue(t, field)
		if field.Kind() == reflect.Slice {
			raw = "[" + raw + "]"
		}

		// Write each key as a nested mapping on its own.
		parts := strings.Split(s.Key, ".")
		for i, part := range parts[:len(parts)-1] {
			fmt.Fprintf(&b, "%s%s:\n", strings.Repeat("  ", i), part)
		}
		fmt.Fprintf(&b, "%s%s: %s\n", strings.Repeat("  ", len(parts)-1), parts[len(parts)-1], raw)

		index := s.index
		key := s.Key
		wants = append(wants, func(c Config) error {
			got := reflect.ValueOf(c).FieldByIndex(index).Interface()
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("%s: got %v, want %v", key, got, want)
			}
			return nil
		})
	}

	// Repeated parent keys are not allowed in YAML, so load one file per key.
	for i, doc := range splitDocuments(b.String()) {
		cfg, err := Load(LoadOptions{File: writeFile(t, doc), Environ: []string{"HOME=/home/test"}})
		if err != nil {
			t.Fatalf("Load:\n%s\nerror: %v", doc, err)
		}
		if err := wants[i](cfg); err != nil {
			t.Error(err)
		}
	}
}

// splitDocuments splits the generated text into one document per leaf key:
// each document starts at a line with no indentation.
func splitDocuments(text string) []string {
	var docs []string
	var cur strings.Builder
	for line := range strings.Lines(text) {
		cur.WriteString(line)
		if strings.HasSuffix(strings.TrimSpace(line), ":") {
			continue // a parent key; the leaf follows
		}
		docs = append(docs, cur.String())
		cur.Reset()
	}
	return docs
}

func TestEnvNames(t *testing.T) {
	want := map[string]string{
		"listen":                "STACYVM_LISTEN",
		"data_dir":              "STACYVM_DATA_DIR",
		"default_provider":      "STACYVM_DEFAULT_PROVIDER",
		"auth.api_key":          "STACYVM_API_KEY",
		"auth.insecure_no_auth": "STACYVM_AUTH_INSECURE_NO_AUTH",
		"log.format":            "STACYVM_LOG_FORMAT",
		"log.level":             "STACYVM_LOG_LEVEL",
		"limits.max_memory_mb":  "STACYVM_LIMITS_MAX_MEMORY_MB",
		"manager.reap_interval": "STACYVM_MANAGER_REAP_INTERVAL",
		"cors.allowed_origins":  "STACYVM_CORS_ALLOWED_ORIGINS",
		"shutdown_timeout":      "STACYVM_SHUTDOWN_TIMEOUT",
	}
	got := make(map[string]string)
	seen := make(map[string]string)
	for _, s := range Settings() {
		got[s.Key] = s.Env
		if other, dup := seen[s.Env]; dup {
			t.Errorf("%s is the variable of both %s and %s", s.Env, other, s.Key)
		}
		seen[s.Env] = s.Key
	}
	for key, env := range want {
		if got[key] != env {
			t.Errorf("env for %s: got %q, want %q", key, got[key], env)
		}
	}
}

func TestLoadProviderKeys(t *testing.T) {
	file := writeFile(t, `
providers:
  docker:
    host: unix:///run/docker.sock
    pull_timeout: 5m
`)
	cfg, err := Load(LoadOptions{
		File: file,
		Environ: []string{
			"HOME=/home/test",
			"STACYVM_PROVIDERS_DOCKER_HOST=tcp://127.0.0.1:2375",
			"STACYVM_PROVIDERS_PROOT_MAX_PROCS=64",
		},
		Flags: map[string]string{"providers.proot.enabled": "false"},
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	checks := []struct {
		provider, key string
		want          any
	}{
		{"docker", "host", "tcp://127.0.0.1:2375"},
		{"docker", "pull_timeout", "5m"},
		{"proot", "max_procs", 64},
		{"proot", "enabled", false},
	}
	for _, c := range checks {
		if got := cfg.Providers[c.provider][c.key]; got != c.want {
			t.Errorf("providers.%s.%s: got %#v, want %#v", c.provider, c.key, got, c.want)
		}
	}
}

func TestLoadUnknownKey(t *testing.T) {
	file := writeFile(t, "listen: 127.0.0.1:7423\nlimits:\n  max_memroy_mb: 10\nlogs: {}\n")

	_, err := Load(LoadOptions{File: file, Environ: []string{"HOME=/home/test"}})
	if err == nil {
		t.Fatal("Load accepted unknown keys")
	}
	msg := err.Error()
	for _, want := range []string{
		file + `:3: unknown key "limits.max_memroy_mb"`,
		file + `:4: unknown key "logs"`,
		"max_memory_mb",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    LoadOptions
		wantErr string
	}{
		{
			name:    "missing explicit file",
			opts:    LoadOptions{File: filepath.Join(t.TempDir(), "absent.yaml")},
			wantErr: "absent.yaml",
		},
		{
			name:    "bad env integer",
			opts:    LoadOptions{Environ: []string{"STACYVM_LIMITS_MAX_VCPUS=eight"}},
			wantErr: `STACYVM_LIMITS_MAX_VCPUS="eight": invalid integer`,
		},
		{
			name:    "bad env duration",
			opts:    LoadOptions{Environ: []string{"STACYVM_LIMITS_MAX_TTL=10"}},
			wantErr: `STACYVM_LIMITS_MAX_TTL="10": invalid duration`,
		},
		{
			name:    "bad flag bool",
			opts:    LoadOptions{Flags: map[string]string{"auth.insecure_no_auth": "maybe"}},
			wantErr: `"auth.insecure_no_auth"="maybe": invalid boolean`,
		},
		{
			name:    "unknown flag key",
			opts:    LoadOptions{Flags: map[string]string{"lisen": "x"}},
			wantErr: `unknown key "lisen"`,
		},
		{
			name:    "file duration as number",
			opts:    LoadOptions{File: writeFile(t, "shutdown_timeout: 15\n")},
			wantErr: "line 1",
		},
		{
			name:    "file top level not a mapping",
			opts:    LoadOptions{File: writeFile(t, "- listen\n")},
			wantErr: "top level must be a mapping",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Environ == nil {
				tt.opts.Environ = []string{"HOME=/home/test"}
			}
			if tt.opts.File == "" {
				t.Chdir(t.TempDir())
			}
			_, err := Load(tt.opts)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadFileDiscovery(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	other := writeFile(t, "listen: 127.0.0.1:2002\n")

	cfg, err := Load(LoadOptions{Environ: []string{"HOME=/home/test"}})
	if err != nil {
		t.Fatalf("Load without any file: %v", err)
	}
	if cfg.Listen != Default().Listen {
		t.Errorf("without a file: listen got %q, want %q", cfg.Listen, Default().Listen)
	}

	if err := os.WriteFile(filepath.Join(dir, DefaultFile), []byte("listen: 127.0.0.1:1001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(LoadOptions{Environ: []string{"HOME=/home/test"}})
	if err != nil {
		t.Fatalf("Load with ./%s: %v", DefaultFile, err)
	}
	if cfg.Listen != "127.0.0.1:1001" {
		t.Errorf("with ./%s: listen got %q, want 127.0.0.1:1001", DefaultFile, cfg.Listen)
	}

	cfg, err = Load(LoadOptions{Environ: []string{"HOME=/home/test", EnvConfigFile + "=" + other}})
	if err != nil {
		t.Fatalf("Load with %s: %v", EnvConfigFile, err)
	}
	if cfg.Listen != "127.0.0.1:2002" {
		t.Errorf("with %s: listen got %q, want 127.0.0.1:2002", EnvConfigFile, cfg.Listen)
	}

	empty := writeFile(t, "")
	if _, err := Load(LoadOptions{File: empty, Environ: []string{"HOME=/home/test"}}); err != nil {
		t.Errorf("Load with an empty file: %v", err)
	}
}

func TestDefaultDataDir(t *testing.T) {
	tests := []struct {
		name string
		euid int
		env  map[string]string
		want string
	}{
		{"root", 0, map[string]string{"HOME": "/root"}, "/var/lib/stacyvm"},
		{"xdg", 1000, map[string]string{"HOME": "/home/u", "XDG_DATA_HOME": "/data"}, "/data/stacyvm"},
		{"relative xdg ignored", 1000, map[string]string{"HOME": "/home/u", "XDG_DATA_HOME": "data"}, "/home/u/.local/share/stacyvm"},
		{"home", 1000, map[string]string{"HOME": "/home/u"}, "/home/u/.local/share/stacyvm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := defaultDataDir(tt.euid, tt.env); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSettingsKeys(t *testing.T) {
	keys := make([]string, 0)
	for _, s := range Settings() {
		keys = append(keys, s.Key)
	}
	if !slices.Contains(keys, "limits.max_sandboxes_per_owner") {
		t.Errorf("Settings lacks limits.max_sandboxes_per_owner: %v", keys)
	}
	if slices.Contains(keys, "providers") {
		t.Errorf("Settings lists the open-ended providers map: %v", keys)
	}
}
