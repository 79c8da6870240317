package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
)

// newMockStack is newStack with the mock provider's root directory
// returned, so that tests can check which runtimes exist on disk.
func newMockStack(t *testing.T, limits func(*config.Limits)) (*stack, string) {
	t.Helper()
	logger := testLogger(t)
	dir := t.TempDir()

	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "stacyvm.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })

	root := filepath.Join(dir, "mock")
	prov, err := mock.New(mock.Config{Root: root})
	if err != nil {
		t.Fatalf("create mock provider: %v", err)
	}
	registry := orchestrator.NewRegistry("mock")
	registry.Register(prov)

	cfg := config.Default().Limits
	if limits != nil {
		limits(&cfg)
	}
	manager, err := orchestrator.New(orchestrator.Options{Store: st, Registry: registry, Limits: cfg, Logger: logger})
	if err != nil {
		t.Fatalf("create manager: %v", err)
	}
	if err := manager.Start(context.Background()); err != nil {
		t.Fatalf("start manager: %v", err)
	}
	t.Cleanup(func() { manager.Close() })

	srv := httptest.NewServer(New(Options{Manager: manager, Logger: logger, Limits: cfg, Version: "test"}))
	t.Cleanup(srv.Close)
	return &stack{t: t, srv: srv, manager: manager}, root
}

// runtimeDirs returns the sandbox directories in the mock's root.
func runtimeDirs(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read mock root: %v", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	return dirs
}

// execOutput runs a shell command in the sandbox and returns its stdout,
// failing the test unless it exits with 0.
func (s *stack) execOutput(t *testing.T, id, command string) string {
	t.Helper()
	resp := s.do("POST", sandboxPath(id, "/exec"), map[string]any{"command": command})
	resp.wantStatus(t, http.StatusOK)
	res := decodeBody[execResultJSON](t, resp)
	if res.ExitCode != 0 {
		t.Fatalf("exec %q: exit code %d, stderr %q", command, res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

// createTemplate posts a template and fails the test unless it is created.
func (s *stack) createTemplate(t *testing.T, body map[string]any) templateJSON {
	t.Helper()
	resp := s.do("POST", "/api/v1/templates", body)
	resp.wantStatus(t, http.StatusCreated)
	return decodeBody[templateJSON](t, resp)
}

func TestTemplateSpawnAppliesEverything(t *testing.T) {
	s, root := newMockStack(t, nil)
	s.createTemplate(t, map[string]any{
		"name":        "py-test",
		"description": "test template",
		"image":       "python:3.12-slim",
		"memory_mb":   768,
		"vcpus":       3,
		"ttl":         "45m",
		"network":     true,
		"env":         map[string]string{"GREETING": "hello from template", "MODE": "template"},
		"setup": []string{
			"echo setup-ran > ready.txt",
			`mkdir -p out && printf '%s' "$GREETING" > out/greeting`,
			"test -f ready.txt && echo second > second.txt",
		},
		"metadata": map[string]string{"team": "ml"},
	})

	resp := s.do("POST", "/api/v1/templates/py-test/spawn", map[string]any{
		"owner_id": "alice",
		"env":      map[string]string{"EXTRA": "1"},
	})
	resp.wantStatus(t, http.StatusCreated)
	sb := decodeBody[sandboxJSON](t, resp)

	if sb.MemoryMB != 768 || sb.VCPUs != 3 || !sb.Network || sb.Template != "py-test" || sb.Image != "python:3.12-slim" {
		t.Errorf("sandbox = %+v, want the template's memory 768, vcpus 3, network, image and name", sb)
	}
	if sb.Metadata["team"] != "ml" || sb.OwnerID != "alice" {
		t.Errorf("metadata, owner = %v, %q, want team=ml and alice", sb.Metadata, sb.OwnerID)
	}
	created := parseUTC(t, "created_at", sb.CreatedAt)
	if d := parseUTC(t, "expires_at", sb.ExpiresAt).Sub(created); d < 44*time.Minute || d > 46*time.Minute {
		t.Errorf("expires_at - created_at = %v, want the template's 45m", d)
	}

	got := decodeBody[sandboxJSON](t, s.do("GET", sandboxPath(sb.ID, ""), nil))
	if got.Template != "py-test" || got.MemoryMB != 768 || got.VCPUs != 3 {
		t.Errorf("GET sandbox = %+v, want template py-test, memory 768, vcpus 3", got)
	}

	envOut := s.execOutput(t, sb.ID, "env")
	for _, want := range []string{"GREETING=hello from template", "MODE=template", "EXTRA=1"} {
		if !strings.Contains(envOut, want+"\n") {
			t.Errorf("env output lacks %q:\n%s", want, envOut)
		}
	}
	files := map[string]string{
		"ready.txt":    "setup-ran\n",
		"out/greeting": "hello from template",
		"second.txt":   "second\n",
	}
	for name, want := range files {
		resp := s.do("GET", sandboxPath(sb.ID, "/files?path="+name), nil)
		resp.wantStatus(t, http.StatusOK)
		if string(resp.body) != want {
			t.Errorf("file %s = %q, want %q", name, resp.body, want)
		}
	}

	state, err := os.ReadFile(filepath.Join(root, sb.ID, "state.json"))
	if err != nil {
		t.Fatalf("read the mock's state of %s: %v", sb.ID, err)
	}
	var spec struct {
		Network  bool `json:"network"`
		MemoryMB int  `json:"memory_mb"`
	}
	if err := json.Unmarshal(state, &spec); err != nil {
		t.Fatalf("decode state.json: %v", err)
	}
	if !spec.Network || spec.MemoryMB != 768 {
		t.Errorf("provider spec network, memory = %v, %d, want true, 768", spec.Network, spec.MemoryMB)
	}

	// The template field of POST /sandboxes does the same.
	resp = s.do("POST", "/api/v1/sandboxes", map[string]any{"template": "py-test", "memory_mb": 256})
	resp.wantStatus(t, http.StatusCreated)
	other := decodeBody[sandboxJSON](t, resp)
	if other.Template != "py-test" || other.MemoryMB != 256 || other.VCPUs != 3 {
		t.Errorf("POST /sandboxes with template = %+v, want template py-test, memory 256, vcpus 3", other)
	}
	if out := s.execOutput(t, other.ID, "cat ready.txt"); out != "setup-ran\n" {
		t.Errorf("ready.txt = %q, want the setup's output", out)
	}
}

func TestTemplateSetupFailureLeavesNoSandbox(t *testing.T) {
	s, root := newMockStack(t, nil)
	failing := `echo building; for i in $(seq 1 30); do echo problem $i >&2; done; exit 3`
	s.createTemplate(t, map[string]any{
		"name":  "broken",
		"setup": []string{"echo fine > ok.txt", failing, "echo never > never.txt"},
	})

	resp := s.do("POST", "/api/v1/templates/broken/spawn", nil)
	body := resp.wantError(t, http.StatusBadRequest, codeBadRequest,
		"setup[1]", failing, "exit status 3", "problem 30", "was destroyed")
	if strings.Contains(body.Message, "problem 10\n") {
		t.Errorf("message %q has more than the last 20 stderr lines", body.Message)
	}

	var detail struct {
		Setup setupFailureJSON `json:"setup"`
	}
	if err := json.Unmarshal(resp.body, &detail); err != nil {
		t.Fatalf("decode setup details: %v", err)
	}
	d := detail.Setup
	if d.Index != 1 || d.Command != failing || d.ExitCode != 3 || d.TimedOut {
		t.Errorf("setup details = %+v, want index 1, the failing command, exit code 3", d)
	}
	tail := strings.Split(d.StderrTail, "\n")
	if len(tail) != 20 || tail[0] != "problem 11" || tail[19] != "problem 30" {
		t.Errorf("stderr_tail = %q, want problem 11 to problem 30", d.StderrTail)
	}

	list := decodeBody[[]sandboxJSON](t, s.do("GET", "/api/v1/sandboxes", nil))
	if len(list) != 1 || list[0].ID != d.SandboxID {
		t.Fatalf("sandboxes = %+v, want only %s", list, d.SandboxID)
	}
	if list[0].State != "destroyed" || !strings.Contains(list[0].Error, "exit status 3") {
		t.Errorf("sandbox state, error = %s, %q, want destroyed with the setup failure", list[0].State, list[0].Error)
	}
	if dirs := runtimeDirs(t, root); len(dirs) != 0 {
		t.Errorf("mock root holds %v, want no runtime left", dirs)
	}
}

func TestTemplateSetupTimeout(t *testing.T) {
	s, root := newMockStack(t, nil)
	resp := s.do("POST", "/api/v1/sandboxes", map[string]any{
		"setup":         []string{"echo waiting >&2; sleep 30"},
		"setup_timeout": "300ms",
	})
	resp.wantError(t, http.StatusBadRequest, codeBadRequest, "timed out after 300ms", "waiting")

	var detail struct {
		Setup setupFailureJSON `json:"setup"`
	}
	if err := json.Unmarshal(resp.body, &detail); err != nil {
		t.Fatalf("decode setup details: %v", err)
	}
	if !detail.Setup.TimedOut || detail.Setup.StderrTail != "waiting" {
		t.Errorf("setup details = %+v, want timed_out and the stderr", detail.Setup)
	}
	if dirs := runtimeDirs(t, root); len(dirs) != 0 {
		t.Errorf("mock root holds %v, want no runtime left", dirs)
	}
}

func TestTemplateRoutes(t *testing.T) {
	s := newStack(t, stackOptions{})

	resp := s.do("POST", "/api/v1/templates", map[string]any{"name": "web", "image": "node:22", "ttl": "1h"})
	resp.wantStatus(t, http.StatusCreated)
	if got := resp.header.Get("Location"); got != "/api/v1/templates/web" {
		t.Errorf("Location = %q, want /api/v1/templates/web", got)
	}
	created := decodeBody[templateJSON](t, resp)
	if created.TTL != "1h0m0s" || created.Env == nil || created.Setup == nil || created.Metadata == nil {
		t.Errorf("created = %+v, want ttl 1h0m0s and non-null env, setup and metadata", created)
	}
	parseUTC(t, "created_at", created.CreatedAt)

	s.do("POST", "/api/v1/templates", map[string]any{"name": "web"}).
		wantError(t, http.StatusConflict, codeConflict, "web", "already exists")
	s.createTemplate(t, map[string]any{"name": "alpine"})

	list := decodeBody[[]templateJSON](t, s.do("GET", "/api/v1/templates", nil))
	if len(list) != 2 || list[0].Name != "alpine" || list[1].Name != "web" {
		t.Errorf("list = %+v, want alpine and web", list)
	}

	resp = s.do("PUT", "/api/v1/templates/web", map[string]any{"image": "node:23", "setup": []string{"npm ci"}})
	resp.wantStatus(t, http.StatusOK)
	updated := decodeBody[templateJSON](t, resp)
	if updated.Image != "node:23" || updated.TTL != "" || len(updated.Setup) != 1 || updated.CreatedAt != created.CreatedAt {
		t.Errorf("updated = %+v, want every field replaced and created_at kept", updated)
	}
	s.do("PUT", "/api/v1/templates/web", map[string]any{"name": "other"}).
		wantError(t, http.StatusBadRequest, codeBadRequest, `"other"`, `"web"`)
	s.do("PUT", "/api/v1/templates/ghost", map[string]any{}).
		wantError(t, http.StatusNotFound, codeNotFound, `"ghost"`)

	got := decodeBody[templateJSON](t, s.do("GET", "/api/v1/templates/web", nil))
	if got.Image != "node:23" {
		t.Errorf("GET after PUT: image = %q, want node:23", got.Image)
	}

	resp = s.do("DELETE", "/api/v1/templates/web", nil)
	resp.wantStatus(t, http.StatusOK)
	if body := decodeBody[map[string]string](t, resp); body["status"] != "deleted" || body["name"] != "web" {
		t.Errorf("DELETE body = %v, want status deleted and the name", body)
	}
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/templates/web"},
		{"DELETE", "/api/v1/templates/web"},
		{"POST", "/api/v1/templates/web/spawn"},
	} {
		s.do(req.method, req.path, nil).wantError(t, http.StatusNotFound, codeNotFound, `template "web" does not exist`)
	}
	s.do("POST", "/api/v1/sandboxes", map[string]any{"template": "web"}).
		wantError(t, http.StatusNotFound, codeNotFound, `"web"`)
	s.do("POST", "/api/v1/templates/alpine/spawn", map[string]any{"template": "web"}).
		wantError(t, http.StatusBadRequest, codeBadRequest, `"web"`, `"alpine"`)
}

func TestTemplateNameRules(t *testing.T) {
	s := newStack(t, stackOptions{})
	tests := []struct {
		name  string
		valid bool
	}{
		{"python", true},
		{"py-3.12_slim", true},
		{"9lives", true},
		{strings.Repeat("x", 63), true},
		{"", false},
		{strings.Repeat("x", 64), false},
		{"Python", false},
		{"-lead", false},
		{".lead", false},
		{"_lead", false},
		{"with space", false},
		{"semi;colon", false},
		{"snow☃", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			resp := s.do("POST", "/api/v1/templates", map[string]any{"name": tt.name})
			if tt.valid {
				resp.wantStatus(t, http.StatusCreated)
				return
			}
			resp.wantError(t, http.StatusBadRequest, codeBadRequest, "name must be 1 to 63 characters",
				"lowercase letters, digits", "starting with a letter or digit")
		})
	}
	s.do("GET", "/api/v1/templates/Upper", nil).
		wantError(t, http.StatusBadRequest, codeBadRequest, "starting with a letter or digit")
}

func TestTemplateFieldValidation(t *testing.T) {
	s := newStack(t, stackOptions{})
	tests := []struct {
		name     string
		body     string
		fragment string
	}{
		{"negative memory", `{"name":"a","memory_mb":-1}`, "memory_mb must not be negative"},
		{"negative vcpus", `{"name":"a","vcpus":-2}`, "vcpus must not be negative"},
		{"bad ttl", `{"name":"a","ttl":"forever"}`, "ttl must be a Go duration"},
		{"negative ttl", `{"name":"a","ttl":"-5m"}`, "ttl must not be negative"},
		{"bad setup timeout", `{"name":"a","setup_timeout":"soon"}`, "setup_timeout must be a Go duration"},
		{"memory as text", `{"name":"a","memory_mb":"lots"}`, "memory_mb must be an integer"},
		{"setup as text", `{"name":"a","setup":"make"}`, "setup must be an array"},
		{"blank setup command", `{"name":"a","setup":["true",""]}`, "setup[1] must not be empty"},
		{"unknown field", `{"name":"a","cpus":2}`, `unknown field "cpus"`},
		{"bad env key", `{"name":"a","env":{"1X":"y"}}`, "env key"},
		{"bad image", `{"name":"a","image":"a b"}`, "image contains"},
		{"runtime not offered", `{"name":"a","provider":"mock","runtime":"runsc"}`, "runtime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.do("POST", "/api/v1/templates", tt.body).wantError(t, http.StatusBadRequest, codeBadRequest, tt.fragment)
		})
	}
	s.do("POST", "/api/v1/templates", `{"name":"a","provider":"nope"}`).
		wantError(t, http.StatusNotFound, codeNotFound, `"nope"`)

	if list := decodeBody[[]templateJSON](t, s.do("GET", "/api/v1/templates", nil)); len(list) != 0 {
		t.Errorf("templates after rejected creates = %d, want 0", len(list))
	}
}

func TestTemplateOverridePrecedence(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.createTemplate(t, map[string]any{
		"name":      "base",
		"memory_mb": 1024,
		"vcpus":     2,
		"ttl":       "2h",
		"network":   true,
		"env":       map[string]string{"A": "template", "B": "template"},
		"setup":     []string{"echo template > setup.txt"},
		"metadata":  map[string]string{"team": "ml", "tier": "gold"},
	})

	tests := []struct {
		name      string
		overrides map[string]any
		memory    int
		vcpus     int
		ttl       time.Duration
		network   bool
		metadata  map[string]string
		env       string // output of: echo "$A $B $C"
		setup     string // content of setup.txt
	}{
		{"no overrides", nil, 1024, 2, 2 * time.Hour, true,
			map[string]string{"team": "ml", "tier": "gold"}, "template template ", "template\n"},
		{"resources", map[string]any{"memory_mb": 256, "vcpus": 1, "ttl": "10m"}, 256, 1, 10 * time.Minute, true,
			map[string]string{"team": "ml", "tier": "gold"}, "template template ", "template\n"},
		{"network off", map[string]any{"network": false}, 1024, 2, 2 * time.Hour, false,
			map[string]string{"team": "ml", "tier": "gold"}, "template template ", "template\n"},
		{"maps merged", map[string]any{"env": map[string]string{"B": "request", "C": "new"}, "metadata": map[string]string{"tier": "free"}},
			1024, 2, 2 * time.Hour, true, map[string]string{"team": "ml", "tier": "free"}, "template request new", "template\n"},
		{"setup replaced", map[string]any{"setup": []string{"echo request > setup.txt"}}, 1024, 2, 2 * time.Hour, true,
			map[string]string{"team": "ml", "tier": "gold"}, "template template ", "request\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.do("POST", "/api/v1/templates/base/spawn", tt.overrides)
			resp.wantStatus(t, http.StatusCreated)
			sb := decodeBody[sandboxJSON](t, resp)
			t.Cleanup(func() { s.do("DELETE", sandboxPath(sb.ID, ""), nil) })

			if sb.MemoryMB != tt.memory || sb.VCPUs != tt.vcpus || sb.Network != tt.network {
				t.Errorf("memory, vcpus, network = %d, %d, %v, want %d, %d, %v",
					sb.MemoryMB, sb.VCPUs, sb.Network, tt.memory, tt.vcpus, tt.network)
			}
			ttl := parseUTC(t, "expires_at", sb.ExpiresAt).Sub(parseUTC(t, "created_at", sb.CreatedAt))
			if ttl < tt.ttl-time.Minute || ttl > tt.ttl+time.Minute {
				t.Errorf("lifetime = %v, want about %v", ttl, tt.ttl)
			}
			if fmt.Sprint(sb.Metadata) != fmt.Sprint(tt.metadata) {
				t.Errorf("metadata = %v, want %v", sb.Metadata, tt.metadata)
			}
			if got := s.execOutput(t, sb.ID, `printf '%s %s %s' "$A" "$B" "$C"`); got != tt.env {
				t.Errorf("env = %q, want %q", got, tt.env)
			}
			if got := s.execOutput(t, sb.ID, "cat setup.txt"); got != tt.setup {
				t.Errorf("setup.txt = %q, want %q", got, tt.setup)
			}
		})
	}
}

func TestIdempotencyKeyRetry(t *testing.T) {
	s := newStack(t, stackOptions{})
	spawn := func(path string, body any, key string) response {
		req := s.newRequest(t.Context(), "POST", path, body)
		req.Header.Set("Idempotency-Key", key)
		return s.send(req)
	}

	body := map[string]any{"memory_mb": 256, "ttl": "1h"}
	first := spawn("/api/v1/sandboxes", body, "retry-1")
	first.wantStatus(t, http.StatusCreated)
	if first.header.Get("Idempotency-Replayed") != "" {
		t.Errorf("first response has Idempotency-Replayed %q, want none", first.header.Get("Idempotency-Replayed"))
	}
	sb := decodeBody[sandboxJSON](t, first)

	second := spawn("/api/v1/sandboxes", map[string]any{"ttl": "60m", "memory_mb": 256}, "retry-1")
	second.wantStatus(t, http.StatusCreated)
	if got := second.header.Get("Idempotency-Replayed"); got != "true" {
		t.Errorf("Idempotency-Replayed = %q, want true", got)
	}
	if got := decodeBody[sandboxJSON](t, second); got.ID != sb.ID || got.MemoryMB != 256 {
		t.Errorf("retry returned %s, want %s", got.ID, sb.ID)
	}
	if got := second.header.Get("Location"); got != "/api/v1/sandboxes/"+sb.ID {
		t.Errorf("retry Location = %q, want the first sandbox's", got)
	}

	spawn("/api/v1/sandboxes", map[string]any{"memory_mb": 512}, "retry-1").
		wantError(t, http.StatusConflict, codeConflict, "Idempotency-Key was used with a different request")
	spawn("/api/v1/sandboxes", body, "has space").
		wantError(t, http.StatusBadRequest, codeBadRequest, "Idempotency-Key must contain only printable ASCII")

	s.createTemplate(t, map[string]any{"name": "tiny"})
	firstT := spawn("/api/v1/templates/tiny/spawn", nil, "retry-2")
	firstT.wantStatus(t, http.StatusCreated)
	againT := spawn("/api/v1/templates/tiny/spawn", nil, "retry-2")
	againT.wantStatus(t, http.StatusCreated)
	if decodeBody[sandboxJSON](t, firstT).ID != decodeBody[sandboxJSON](t, againT).ID || againT.header.Get("Idempotency-Replayed") != "true" {
		t.Errorf("template spawn retry did not return the first sandbox")
	}
	// The same key on the other route is a different request.
	spawn("/api/v1/sandboxes", nil, "retry-2").wantError(t, http.StatusConflict, codeConflict, "different request")

	list := decodeBody[[]sandboxJSON](t, s.do("GET", "/api/v1/sandboxes", nil))
	if len(list) != 2 {
		t.Errorf("sandboxes = %d, want 2: one per key", len(list))
	}
}

func TestIdempotencyKeyConcurrent(t *testing.T) {
	s := newStack(t, stackOptions{})
	const requests = 6
	responses := make([]response, requests)
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			req := s.newRequest(t.Context(), "POST", "/api/v1/sandboxes", map[string]any{
				"setup": []string{"sleep 0.3"},
			})
			req.Header.Set("Idempotency-Key", "concurrent")
			responses[i] = s.send(req)
		})
	}
	wg.Wait()

	ids := map[string]bool{}
	replayed := 0
	for _, resp := range responses {
		resp.wantStatus(t, http.StatusCreated)
		ids[decodeBody[sandboxJSON](t, resp).ID] = true
		if resp.header.Get("Idempotency-Replayed") == "true" {
			replayed++
		}
	}
	if len(ids) != 1 || replayed != requests-1 {
		t.Errorf("sandbox IDs = %v with %d replays, want one ID and %d replays", ids, replayed, requests-1)
	}
	if list := decodeBody[[]sandboxJSON](t, s.do("GET", "/api/v1/sandboxes", nil)); len(list) != 1 {
		t.Errorf("sandboxes = %d, want 1", len(list))
	}
}

func TestLimitsThroughAPI(t *testing.T) {
	s := newStack(t, stackOptions{limits: func(l *config.Limits) {
		l.MaxMemoryMB = 1024
		l.MaxVCPUs = 2
		l.MaxTTL = time.Hour
		l.MaxExecTimeout = 10 * time.Second
		l.MaxSandboxes = 3
		l.MaxSandboxesPerOwner = 1
	}})
	s.createTemplate(t, map[string]any{"name": "big", "memory_mb": 4096, "setup_timeout": "1m"})
	id := s.spawn()

	tests := []struct {
		name      string
		method    string
		path      string
		body      any
		fragments []string
	}{
		{"memory", "POST", "/api/v1/sandboxes", map[string]any{"memory_mb": 2048}, []string{"max_memory_mb=1024", "2048"}},
		{"vcpus", "POST", "/api/v1/sandboxes", map[string]any{"vcpus": 3}, []string{"max_vcpus=2", "requested 3"}},
		{"ttl", "POST", "/api/v1/sandboxes", map[string]any{"ttl": "2h"}, []string{"max_ttl=1h0m0s", "2h0m0s"}},
		{"setup timeout", "POST", "/api/v1/sandboxes", map[string]any{"setup": []string{"true"}, "setup_timeout": "1m"},
			[]string{"max_exec_timeout=10s", "1m0s"}},
		{"template memory", "POST", "/api/v1/templates/big/spawn", nil, []string{"max_memory_mb=1024", "4096"}},
		{"template setup timeout", "POST", "/api/v1/templates/big/spawn", map[string]any{"memory_mb": 512},
			[]string{"max_exec_timeout=10s"}},
		{"exec timeout", "POST", sandboxPath(id, "/exec"), map[string]any{"command": "true", "timeout": "20s"},
			[]string{"max_exec_timeout=10s", "20s"}},
		{"extend", "POST", sandboxPath(id, "/extend"), map[string]any{"ttl": "3h"}, []string{"max_ttl=1h0m0s", "3h0m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.do(tt.method, tt.path, tt.body).wantError(t, http.StatusTooManyRequests, codeResourceLimit, tt.fragments...)
		})
	}

	t.Run("per owner", func(t *testing.T) {
		s.do("POST", "/api/v1/sandboxes", map[string]any{"owner_id": "bob"}).wantStatus(t, http.StatusCreated)
		s.do("POST", "/api/v1/sandboxes", map[string]any{"owner_id": "bob"}).
			wantError(t, http.StatusTooManyRequests, codeResourceLimit, "max_sandboxes_per_owner=1")
	})
	t.Run("total", func(t *testing.T) {
		s.spawn()
		s.do("POST", "/api/v1/sandboxes", nil).
			wantError(t, http.StatusTooManyRequests, codeResourceLimit, "max_sandboxes=3")
	})

	malformed := []struct {
		name     string
		path     string
		body     string
		fragment string
	}{
		{"negative memory", "/api/v1/sandboxes", `{"memory_mb":-1}`, "memory_mb must not be negative"},
		{"memory as text", "/api/v1/sandboxes", `{"memory_mb":"lots"}`, "memory_mb must be an integer"},
		{"fractional vcpus", "/api/v1/sandboxes", `{"vcpus":1.5}`, "vcpus must be an integer"},
		{"negative vcpus", "/api/v1/sandboxes", `{"vcpus":-1}`, "vcpus must not be negative"},
		{"bad ttl", "/api/v1/sandboxes", `{"ttl":"forever"}`, "ttl must be a Go duration"},
		{"negative ttl", "/api/v1/sandboxes", `{"ttl":"-5m"}`, "ttl must not be negative"},
		{"bad setup timeout", "/api/v1/sandboxes", `{"setup_timeout":"1 minute"}`, "setup_timeout must be a Go duration"},
		{"bad exec timeout", sandboxPath(id, "/exec"), `{"command":"true","timeout":"x"}`, "timeout must be a Go duration"},
		{"negative exec timeout", sandboxPath(id, "/exec"), `{"command":"true","timeout":"-1s"}`, "timeout must not be negative"},
		{"bad extend ttl", sandboxPath(id, "/extend"), `{"ttl":"later"}`, "ttl must be a Go duration"},
		{"template negative memory", "/api/v1/templates/big/spawn", `{"memory_mb":-5}`, "memory_mb must not be negative"},
	}
	for _, tt := range malformed {
		t.Run(tt.name, func(t *testing.T) {
			s.do("POST", tt.path, tt.body).wantError(t, http.StatusBadRequest, codeBadRequest, tt.fragment)
		})
	}
}
