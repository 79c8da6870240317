package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// pythonTemplate returns a template with every field set, for the fake
// provider.
func pythonTemplate() store.Template {
	return store.Template{
		Name:         "python",
		Description:  "Python with test tools",
		Image:        "python:3.12-slim",
		Provider:     "fake",
		Runtime:      "fast",
		MemoryMB:     1024,
		VCPUs:        2,
		TTL:          2 * time.Hour,
		Network:      true,
		Env:          map[string]string{"LANG": "C.UTF-8", "MODE": "template"},
		Setup:        []string{"pip install pytest", "touch ready"},
		SetupTimeout: 3 * time.Minute,
		Metadata:     map[string]string{"team": "ml", "tier": "gold"},
	}
}

// createTemplate stores tpl through the manager and fails the test on
// error.
func (e *testEnv) createTemplate(t *testing.T, tpl store.Template) store.Template {
	t.Helper()
	created, err := e.m.CreateTemplate(t.Context(), tpl)
	if err != nil {
		t.Fatalf("CreateTemplate(%s): %v", tpl.Name, err)
	}
	return created
}

// execRequests returns every request that the fake's Exec received.
func (f *fakeProvider) execRequests() []provider.ExecRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.execReqs)
}

func TestTemplateLifecycle(t *testing.T) {
	env := newEnv(t)
	created := env.createTemplate(t, pythonTemplate())
	if !created.CreatedAt.Equal(env.clock.Now()) || !created.UpdatedAt.Equal(env.clock.Now()) {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v, want the clock's %v", created.CreatedAt, created.UpdatedAt, env.clock.Now())
	}
	if created.Image != "python:3.12-slim" || !slices.Equal(created.Setup, pythonTemplate().Setup) {
		t.Errorf("created template = %+v, want the fields as given", created)
	}

	_, err := env.m.CreateTemplate(t.Context(), pythonTemplate())
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("second CreateTemplate error = %v, want ErrConflict", err)
	}

	changed := pythonTemplate()
	changed.Image = "python:3.13-slim"
	changed.Setup = nil
	updated, err := env.m.UpdateTemplate(t.Context(), changed)
	if err != nil {
		t.Fatalf("UpdateTemplate: %v", err)
	}
	if updated.Image != "python:3.13-slim" || len(updated.Setup) != 0 {
		t.Errorf("updated template = %+v, want the new image and no setup", updated)
	}
	if !updated.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("CreatedAt after update = %v, want %v kept", updated.CreatedAt, created.CreatedAt)
	}

	env.createTemplate(t, store.Template{Name: "alpine"})
	list, err := env.m.ListTemplates(t.Context())
	if err != nil {
		t.Fatalf("ListTemplates: %v", err)
	}
	if len(list) != 2 || list[0].Name != "alpine" || list[1].Name != "python" {
		t.Errorf("ListTemplates = %d templates, want alpine and python in that order", len(list))
	}

	if err := env.m.DeleteTemplate(t.Context(), "python"); err != nil {
		t.Fatalf("DeleteTemplate: %v", err)
	}
	for name, err := range map[string]error{
		"get":    func() error { _, err := env.m.GetTemplate(t.Context(), "python"); return err }(),
		"delete": env.m.DeleteTemplate(t.Context(), "python"),
		"update": func() error { _, err := env.m.UpdateTemplate(t.Context(), changed); return err }(),
	} {
		if !errors.Is(err, store.ErrNotFound) || !strings.Contains(fmt.Sprint(err), `"python"`) {
			t.Errorf("%s after delete: error = %v, want ErrNotFound naming python", name, err)
		}
	}
}

func TestTemplateNameValidation(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
	}{
		{"a", true},
		{"7", true},
		{"python-3.12", true},
		{"go_1.22", true},
		{"0-start-digit", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{strings.Repeat("a", 64), false},
		{"Python", false},
		{"-dash-first", false},
		{".dot-first", false},
		{"_underscore-first", false},
		{"has space", false},
		{"slash/name", false},
		{"colon:name", false},
		{"ümlaut", false},
		{"tab\tname", false},
	}
	env := newEnv(t)
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			_, err := env.m.CreateTemplate(t.Context(), store.Template{Name: tt.name})
			if tt.valid {
				if err != nil {
					t.Fatalf("CreateTemplate(%q): %v, want success", tt.name, err)
				}
				return
			}

			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "name" {
				t.Fatalf("CreateTemplate(%q) error = %v, want a *FieldError for name", tt.name, err)
			}
			if !strings.Contains(err.Error(), templateNameRule) {
				t.Errorf("error %q does not state the rule", err)
			}
			if _, err := env.m.GetTemplate(t.Context(), tt.name); !errors.Is(err, provider.ErrInvalidArgument) {
				t.Errorf("GetTemplate(%q) error = %v, want ErrInvalidArgument", tt.name, err)
			}
		})
	}
}

func TestTemplateFieldValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(*store.Template)
		field  string
	}{
		{"negative memory", func(t *store.Template) { t.MemoryMB = -1 }, "memory_mb"},
		{"negative vcpus", func(t *store.Template) { t.VCPUs = -2 }, "vcpus"},
		{"negative ttl", func(t *store.Template) { t.TTL = -time.Minute }, "ttl"},
		{"negative setup timeout", func(t *store.Template) { t.SetupTimeout = -time.Second }, "setup_timeout"},
		{"bad image", func(t *store.Template) { t.Image = "alpine latest" }, "image"},
		{"runtime not offered", func(t *store.Template) { t.Runtime = "runsc" }, "runtime"},
		{"runtime bad syntax without provider", func(t *store.Template) { t.Provider, t.Runtime = "", "a/b" }, "runtime"},
		{"env key", func(t *store.Template) { t.Env = map[string]string{"MY-VAR": "x"} }, "env"},
		{"metadata key", func(t *store.Template) { t.Metadata = map[string]string{"a=b": "v"} }, "metadata"},
		{"blank setup command", func(t *store.Template) { t.Setup = []string{"true", "  "} }, "setup[1]"},
		{"setup command with NUL", func(t *store.Template) { t.Setup = []string{"echo a\x00b"} }, "setup[0]"},
		{"too many setup commands", func(t *store.Template) { t.Setup = make([]string, 33) }, "setup"},
		{"setup command too long", func(t *store.Template) { t.Setup = []string{strings.Repeat("x", 16<<10+1)} }, "setup[0]"},
		{"description control character", func(t *store.Template) { t.Description = "bell\a" }, "description"},
		{"description too long", func(t *store.Template) { t.Description = strings.Repeat("d", 1025) }, "description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			tpl := pythonTemplate()
			tt.change(&tpl)

			for op, call := range map[string]func() error{
				"create": func() error { _, err := env.m.CreateTemplate(t.Context(), tpl); return err },
				"update": func() error { _, err := env.m.UpdateTemplate(t.Context(), tpl); return err },
			} {
				err := call()
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("%s error = %v, want a *FieldError for %s", op, err, tt.field)
				}
			}
			if list, _ := env.m.ListTemplates(t.Context()); len(list) != 0 {
				t.Errorf("ListTemplates = %d templates, want none after a rejected create", len(list))
			}
		})
	}
}

func TestTemplateUnknownProvider(t *testing.T) {
	env := newEnv(t)
	tpl := pythonTemplate()
	tpl.Provider = "firecracker"
	_, err := env.m.CreateTemplate(t.Context(), tpl)
	if !errors.Is(err, provider.ErrProviderNotFound) || !strings.Contains(err.Error(), "firecracker") {
		t.Errorf("error = %v, want ErrProviderNotFound naming firecracker", err)
	}
}

func TestTemplateLimitsCheckedAtSpawn(t *testing.T) {
	env := newEnv(t)
	tpl := pythonTemplate()
	tpl.Name = "huge"
	tpl.MemoryMB = 999999
	env.createTemplate(t, tpl)

	_, err := env.m.Spawn(t.Context(), SpawnRequest{Template: "huge"})
	var le *provider.LimitError
	if !errors.As(err, &le) || le.Limit != "max_memory_mb" || le.Got != "999999" {
		t.Fatalf("Spawn error = %v, want a LimitError for max_memory_mb with 999999", err)
	}

	// A request value replaces the template's, so it passes the limit.
	if _, err := env.m.Spawn(t.Context(), SpawnRequest{Template: "huge", MemoryMB: 512}); err != nil {
		t.Errorf("Spawn with a memory override: %v", err)
	}
}

func TestMergeTemplatePrecedence(t *testing.T) {
	tpl := pythonTemplate()
	tests := []struct {
		name  string
		req   SpawnRequest
		check func(t *testing.T, got SpawnRequest)
	}{
		{"empty request takes every template field", SpawnRequest{}, func(t *testing.T, got SpawnRequest) {
			want := SpawnRequest{
				Image: tpl.Image, Provider: tpl.Provider, Runtime: tpl.Runtime,
				MemoryMB: tpl.MemoryMB, VCPUs: tpl.VCPUs, TTL: tpl.TTL, Network: true,
				Env: tpl.Env, Metadata: tpl.Metadata, Template: "python",
				Setup: tpl.Setup, SetupTimeout: tpl.SetupTimeout,
			}
			assertSpawnRequest(t, got, want)
		}},
		{"image", SpawnRequest{Image: "python:3.13"}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "Image", got.Image, "python:3.13")
		}},
		{"provider", SpawnRequest{Provider: "other"}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "Provider", got.Provider, "other")
		}},
		{"runtime", SpawnRequest{Runtime: "default"}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "Runtime", got.Runtime, "default")
		}},
		{"memory", SpawnRequest{MemoryMB: 256}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "MemoryMB", got.MemoryMB, 256)
			wantField(t, "VCPUs", got.VCPUs, tpl.VCPUs)
		}},
		{"vcpus", SpawnRequest{VCPUs: 4}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "VCPUs", got.VCPUs, 4)
			wantField(t, "MemoryMB", got.MemoryMB, tpl.MemoryMB)
		}},
		{"ttl", SpawnRequest{TTL: time.Minute}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "TTL", got.TTL, time.Minute)
		}},
		{"setup timeout", SpawnRequest{SetupTimeout: time.Second}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "SetupTimeout", got.SetupTimeout, time.Second)
		}},
		{"network false given", SpawnRequest{NetworkSet: true}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "Network", got.Network, false)
		}},
		{"network false not given", SpawnRequest{}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "Network", got.Network, true)
		}},
		{"setup replaced", SpawnRequest{Setup: []string{"make"}}, func(t *testing.T, got SpawnRequest) {
			if !slices.Equal(got.Setup, []string{"make"}) {
				t.Errorf("Setup = %q, want only the request's [make]", got.Setup)
			}
		}},
		{"env merged request wins", SpawnRequest{Env: map[string]string{"MODE": "request", "EXTRA": "1"}},
			func(t *testing.T, got SpawnRequest) {
				want := map[string]string{"LANG": "C.UTF-8", "MODE": "request", "EXTRA": "1"}
				if !maps.Equal(got.Env, want) {
					t.Errorf("Env = %v, want %v", got.Env, want)
				}
			}},
		{"metadata merged request wins", SpawnRequest{Metadata: map[string]string{"tier": "free"}},
			func(t *testing.T, got SpawnRequest) {
				want := map[string]string{"team": "ml", "tier": "free"}
				if !maps.Equal(got.Metadata, want) {
					t.Errorf("Metadata = %v, want %v", got.Metadata, want)
				}
			}},
		{"owner kept", SpawnRequest{OwnerID: "alice"}, func(t *testing.T, got SpawnRequest) {
			wantField(t, "OwnerID", got.OwnerID, "alice")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Template = "python"
			got := mergeTemplate(tpl, tt.req)
			tt.check(t, got)
		})
	}

	// The merge copies, so spawns cannot change the stored template.
	got := mergeTemplate(tpl, SpawnRequest{Env: map[string]string{"MODE": "x"}})
	got.Setup[0] = "changed"
	if tpl.Env["MODE"] != "template" || tpl.Setup[0] != "pip install pytest" {
		t.Errorf("template changed by the merge: env %v setup %q", tpl.Env, tpl.Setup)
	}
}

func wantField[T comparable](t *testing.T, name string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func assertSpawnRequest(t *testing.T, got, want SpawnRequest) {
	t.Helper()
	wantField(t, "Image", got.Image, want.Image)
	wantField(t, "Provider", got.Provider, want.Provider)
	wantField(t, "Runtime", got.Runtime, want.Runtime)
	wantField(t, "MemoryMB", got.MemoryMB, want.MemoryMB)
	wantField(t, "VCPUs", got.VCPUs, want.VCPUs)
	wantField(t, "TTL", got.TTL, want.TTL)
	wantField(t, "Network", got.Network, want.Network)
	wantField(t, "Template", got.Template, want.Template)
	wantField(t, "SetupTimeout", got.SetupTimeout, want.SetupTimeout)
	if !maps.Equal(got.Env, want.Env) {
		t.Errorf("Env = %v, want %v", got.Env, want.Env)
	}
	if !maps.Equal(got.Metadata, want.Metadata) {
		t.Errorf("Metadata = %v, want %v", got.Metadata, want.Metadata)
	}
	if !slices.Equal(got.Setup, want.Setup) {
		t.Errorf("Setup = %q, want %q", got.Setup, want.Setup)
	}
}

func TestSpawnFromTemplateAppliesEverything(t *testing.T) {
	env := newEnv(t)
	env.createTemplate(t, pythonTemplate())

	sb := env.spawn(t, SpawnRequest{Template: "python", OwnerID: "alice", Env: map[string]string{"EXTRA": "1"}})

	stored := env.get(t, sb.ID)
	wantField(t, "record Template", stored.Template, "python")
	wantField(t, "record MemoryMB", stored.MemoryMB, 1024)
	wantField(t, "record VCPUs", stored.VCPUs, 2)
	wantField(t, "record Image", stored.Image, "python:3.12-slim")
	wantField(t, "record Runtime", stored.Runtime, "fast")
	wantField(t, "record Network", stored.Network, true)
	wantField(t, "record Metadata tier", stored.Metadata["tier"], "gold")
	wantField(t, "record Env EXTRA", stored.Env["EXTRA"], "1")
	wantField(t, "record Env MODE", stored.Env["MODE"], "template")
	if want := stored.CreatedAt.Add(2 * time.Hour); !stored.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want CreatedAt + the template's 2h = %v", stored.ExpiresAt, want)
	}

	env.fake.mu.Lock()
	spec := env.fake.runtimes[sb.ID]
	env.fake.mu.Unlock()
	if !spec.Network || spec.Runtime != "fast" || spec.MemoryMB != 1024 || spec.VCPUs != 2 || spec.Env["MODE"] != "template" {
		t.Errorf("provider spec = %+v, want the template's network, runtime, resources and env", spec)
	}

	reqs := env.fake.execRequests()
	if len(reqs) != 2 {
		t.Fatalf("provider Exec calls = %d, want one per setup command (2)", len(reqs))
	}
	for i, command := range pythonTemplate().Setup {
		req := reqs[i]
		if !slices.Equal(req.Argv, []string{"sh", "-c", command}) {
			t.Errorf("setup[%d] argv = %q, want sh -c %q", i, req.Argv, command)
		}
		wantField(t, fmt.Sprintf("setup[%d] Workdir", i), req.Workdir, "/workspace")
		wantField(t, fmt.Sprintf("setup[%d] Timeout", i), req.Timeout, 3*time.Minute)
		wantField(t, fmt.Sprintf("setup[%d] Env MODE", i), req.Env["MODE"], "template")
		wantField(t, fmt.Sprintf("setup[%d] Env EXTRA", i), req.Env["EXTRA"], "1")
	}

	got := env.eventTypes(t, sb.ID)
	if want := []string{EventCreated, EventRunning}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestSpawnUnknownTemplate(t *testing.T) {
	env := newEnv(t)
	_, err := env.m.Spawn(t.Context(), SpawnRequest{Template: "missing"})
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("error = %v, want ErrNotFound naming the template", err)
	}
	if n, _ := env.store.CountLive(t.Context(), ""); n != 0 {
		t.Errorf("live records = %d, want 0", n)
	}
}

func TestSpawnSetupWithoutTemplate(t *testing.T) {
	env := newEnv(t)
	env.spawn(t, SpawnRequest{Setup: []string{"echo one"}})
	if reqs := env.fake.execRequests(); len(reqs) != 1 || reqs[0].Timeout != env.m.Limits().DefaultExecTimeout {
		t.Errorf("setup exec requests = %+v, want one with the default exec timeout", reqs)
	}
}

func TestSpawnSetupFailureDestroys(t *testing.T) {
	env := newEnv(t)
	var stderr strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&stderr, "error line %d\n", i)
	}
	env.fake.set(func(f *fakeProvider) {
		f.execFunc = func(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
			if req.Argv[2] == "make deps" {
				out(provider.Stdout, []byte("building\n"))
				out(provider.Stderr, []byte(stderr.String()))
				return provider.ExecResult{ExitCode: 2}, nil
			}
			return provider.ExecResult{}, nil
		}
	})

	_, err := env.m.Spawn(t.Context(), SpawnRequest{Setup: []string{"true", "make deps", "never run"}})
	var se *SetupError
	if !errors.As(err, &se) {
		t.Fatalf("Spawn error = %v, want a *SetupError", err)
	}
	if !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("error %v does not wrap ErrInvalidArgument", err)
	}
	wantField(t, "Index", se.Index, 1)
	wantField(t, "Command", se.Command, "make deps")
	wantField(t, "ExitCode", se.ExitCode, 2)
	wantField(t, "TimedOut", se.TimedOut, false)

	lines := strings.Split(se.StderrTail, "\n")
	if len(lines) != 20 || lines[0] != "error line 11" || lines[19] != "error line 30" {
		t.Errorf("StderrTail = %q, want lines 11 to 30", se.StderrTail)
	}
	for _, part := range []string{`"make deps"`, "exit status 2", "error line 30", se.SandboxID} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("message %q does not contain %q", err.Error(), part)
		}
	}

	if n := len(env.fake.execRequests()); n != 2 {
		t.Errorf("provider Exec calls = %d, want 2: setup stops at the failing command", n)
	}
	if env.fake.hasRuntime(se.SandboxID) {
		t.Errorf("runtime of %s still exists after the failed setup", se.SandboxID)
	}
	stored := env.get(t, se.SandboxID)
	wantField(t, "state", stored.State, store.StateDestroyed)
	if !strings.Contains(stored.Error, "make deps") {
		t.Errorf("record Error = %q, want it to name the failed command", stored.Error)
	}
	if got := env.eventTypes(t, se.SandboxID); !slices.Equal(got, []string{EventCreated, EventError}) {
		t.Errorf("events = %v, want created then error", got)
	}
}

func TestSpawnSetupTimeout(t *testing.T) {
	env := newEnv(t)
	env.fake.set(func(f *fakeProvider) {
		f.execFunc = func(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
			return provider.ExecResult{ExitCode: 137, TimedOut: true, ExitReason: provider.ExitTimeout}, nil
		}
	})

	_, err := env.m.Spawn(t.Context(), SpawnRequest{Setup: []string{"sleep 600"}, SetupTimeout: 2 * time.Second})
	var se *SetupError
	if !errors.As(err, &se) || !se.TimedOut {
		t.Fatalf("Spawn error = %v, want a *SetupError with TimedOut", err)
	}
	if !strings.Contains(err.Error(), "timed out after 2s") {
		t.Errorf("message %q does not give the timeout", err)
	}
	if env.fake.hasRuntime(se.SandboxID) {
		t.Errorf("runtime of %s still exists after the setup timeout", se.SandboxID)
	}
}

func TestSpawnSetupProviderError(t *testing.T) {
	env := newEnv(t)
	env.fake.set(func(f *fakeProvider) {
		f.execFunc = func(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
			return provider.ExecResult{}, fmt.Errorf("agent gone: %w", provider.ErrUnavailable)
		}
	})

	_, err := env.m.Spawn(t.Context(), SpawnRequest{Setup: []string{"true"}})
	var se *SetupError
	if errors.As(err, &se) || !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Spawn error = %v, want the provider's ErrUnavailable, not a *SetupError", err)
	}
	list, _ := env.store.ListSandboxes(t.Context(), store.Filter{})
	if len(list) != 1 || list[0].State != store.StateDestroyed || env.fake.hasRuntime(list[0].ID) {
		t.Errorf("records = %+v, want one destroyed sandbox without a runtime", list)
	}
}

func TestSpawnSetupTimeoutLimit(t *testing.T) {
	env := newEnv(t)
	_, err := env.m.Spawn(t.Context(), SpawnRequest{Setup: []string{"true"}, SetupTimeout: 2 * time.Hour})
	var le *provider.LimitError
	if !errors.As(err, &le) || le.Limit != "max_exec_timeout" {
		t.Fatalf("Spawn error = %v, want a LimitError for max_exec_timeout", err)
	}
	env.fake.mu.Lock()
	spawned := len(env.fake.spawned)
	env.fake.mu.Unlock()
	if spawned != 0 {
		t.Errorf("provider spawns = %d, want 0 for a rejected request", spawned)
	}
}

func TestTailBuffer(t *testing.T) {
	var big tailBuffer
	for range 1000 {
		big.write([]byte(strings.Repeat("x", 1023) + "\n"))
	}
	if len(big.buf) > setupTailMaxBuffer {
		t.Errorf("buffer holds %d bytes, want at most %d", len(big.buf), setupTailMaxBuffer)
	}
	if got := big.tail(20, 2048); len(got) > 2048 {
		t.Errorf("tail is %d bytes, want at most 2048", len(got))
	}

	tests := []struct {
		name     string
		input    string
		maxLines int
		maxBytes int
		want     string
	}{
		{"empty", "", 20, 2048, ""},
		{"final newline dropped", "a\nb\n", 20, 2048, "a\nb"},
		{"last lines", "1\n2\n3\n4\n", 2, 2048, "3\n4"},
		{"last bytes", "abcdef", 20, 3, "def"},
		{"cut character dropped", "aé", 20, 1, ""},
		{"whole character kept", "aéb", 20, 3, "éb"},
		{"invalid bytes replaced", "a\xffb", 20, 2048, "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b tailBuffer
			b.write([]byte(tt.input))
			if got := b.tail(tt.maxLines, tt.maxBytes); got != tt.want {
				t.Errorf("tail(%d, %d) of %q = %q, want %q", tt.maxLines, tt.maxBytes, tt.input, got, tt.want)
			}
		})
	}
}
