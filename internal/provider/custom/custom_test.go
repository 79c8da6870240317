package custom

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
)

const testToken = "test-token-6f1c2a9e"

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newMock returns a mock provider in a temporary directory.
func newMock(t *testing.T) *mock.Provider {
	t.Helper()
	p, err := mock.New(mock.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// backend is a provider server for p on a loopback httptest server.
type backend struct {
	*httptest.Server
	logs *syncBuffer // the server's debug log
}

func startBackend(t *testing.T, p provider.Provider) *backend {
	t.Helper()
	logs := &syncBuffer{}
	srv, err := NewServer(p, ServerOptions{
		Token:   testToken,
		Version: "v0.0.0-test",
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{Server: httptest.NewServer(srv), logs: logs}
	t.Cleanup(func() {
		b.Close()
		if t.Failed() {
			t.Logf("provider server log:\n%s", logs.String())
		}
	})
	return b
}

// newClient returns a client of baseURL with the test token, after tweak
// changed its configuration.
func newClient(t *testing.T, baseURL string, tweak func(*Config)) provider.Provider {
	t.Helper()
	cfg := Config{BaseURL: baseURL, APIKey: testToken}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.(interface{ Close() error }).Close() })
	return p
}

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		New: func(t *testing.T) provider.Provider {
			return newClient(t, startBackend(t, newMock(t)).URL, nil)
		},
		HostPaths: true,
	})
}

// spawn creates a sandbox through p and destroys it when the test ends.
func spawn(t *testing.T, p provider.Provider, id string) {
	t.Helper()
	if err := p.Spawn(t.Context(), provider.SpawnSpec{ID: id}); err != nil {
		t.Fatalf("Spawn(%s): %v", id, err)
	}
	t.Cleanup(func() { _ = p.Destroy(context.Background(), id) })
}

func TestOptionalInterfacesFollowBackend(t *testing.T) {
	t.Parallel()
	p := newClient(t, startBackend(t, newMock(t)).URL, nil)

	if _, ok := p.(provider.Inventory); !ok {
		t.Error("client of a mock backend does not implement Inventory")
	}
	if _, ok := p.(provider.LogReader); !ok {
		t.Error("client of a mock backend does not implement LogReader")
	}
	if _, ok := p.(provider.StatsReader); ok {
		t.Error("client of a mock backend implements StatsReader, which the mock lacks")
	}
	caps := p.Capabilities()
	if caps.Isolation != "none" {
		t.Errorf("Isolation = %q, want the backend's %q", caps.Isolation, "none")
	}
	if !strings.Contains(caps.Description, "mock provider") {
		t.Errorf("Description = %q, want it to name the backend's provider", caps.Description)
	}
}

// statsProvider is the mock with a fixed resource sample.
type statsProvider struct {
	*mock.Provider
}

func (p statsProvider) Capabilities() provider.Capabilities {
	caps := p.Provider.Capabilities()
	caps.Stats = true
	return caps
}

func (p statsProvider) Stats(ctx context.Context, id string) (provider.Stats, error) {
	if err := p.Recover(ctx, id); err != nil {
		return provider.Stats{}, err
	}
	return provider.Stats{CPUPercent: 12.5, MemoryBytes: 1 << 20, MemoryLimitBytes: 1 << 30, Pids: 3}, nil
}

func TestStatsCrossTheWire(t *testing.T) {
	t.Parallel()
	p := newClient(t, startBackend(t, statsProvider{newMock(t)}).URL, nil)
	reader, ok := p.(provider.StatsReader)
	if !ok {
		t.Fatal("client of a backend with stats does not implement StatsReader")
	}
	spawn(t, p, "stats-1")

	got, err := reader.Stats(t.Context(), "stats-1")
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := provider.Stats{CPUPercent: 12.5, MemoryBytes: 1 << 20, MemoryLimitBytes: 1 << 30, Pids: 3}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if _, err := reader.Stats(t.Context(), "missing"); !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Stats(missing): %v, want ErrSandboxNotFound", err)
	}
}

func TestNewWithUnreachableBackend(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()

	p := newClient(t, url, nil)
	if _, ok := p.(provider.Inventory); ok {
		t.Error("client of an unreachable backend implements Inventory")
	}
	caps := p.Capabilities()
	if caps.Isolation != "unknown" || caps.Inventory || caps.Stats || caps.Logs {
		t.Errorf("Capabilities = %+v, want isolation unknown and no optional interfaces", caps)
	}

	err := p.Health(t.Context())
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Health: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), url) {
		t.Errorf("Health error %q does not name the backend %s", err, url)
	}
}

func TestNotAProviderServer(t *testing.T) {
	t.Parallel()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(other.Close)

	p := newClient(t, other.URL, nil)
	err := p.Health(t.Context())
	if !errors.Is(err, provider.ErrUnavailable) || !errors.Is(err, ErrProtocol) {
		t.Errorf("Health: %v, want ErrUnavailable and ErrProtocol", err)
	}
}

func TestWrongAPIKey(t *testing.T) {
	t.Parallel()
	b := startBackend(t, newMock(t))
	p := newClient(t, b.URL, func(c *Config) { c.APIKey = "wrong-key-31d7" })

	err := p.Health(t.Context())
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("Health with a wrong key: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "api_key") {
		t.Errorf("Health error %q does not point at providers.custom.api_key", err)
	}
	if strings.Contains(err.Error(), "wrong-key-31d7") {
		t.Errorf("Health error %q contains the key", err)
	}
}

func TestServerRejectsCallsWithoutToken(t *testing.T) {
	t.Parallel()
	b := startBackend(t, newMock(t))

	cases := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"wrong token", "Bearer not-the-token-8a2b"},
		{"token with another scheme", "Basic " + testToken},
		{"token without scheme", testToken},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1]},
	}
	for _, c := range cases {
		for _, path := range []string{pathVersion, pathHealth, "/v1/sandboxes/x/files/stat?path=/etc/passwd"} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: GET %s: status %d, want 401", c.name, path, resp.StatusCode)
			}
			if !strings.Contains(string(body), `"code":"unauthorized"`) {
				t.Errorf("%s: GET %s: body %s, want code unauthorized", c.name, path, body)
			}
		}
	}

	logs := b.logs.String()
	for _, secret := range []string{testToken, "not-the-token-8a2b", testToken[:len(testToken)-1]} {
		if strings.Contains(logs, secret) {
			t.Errorf("server log contains the token %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "rejected a call without a valid token") {
		t.Errorf("server log does not record the rejected calls:\n%s", logs)
	}
}

func TestNewServerRequiresToken(t *testing.T) {
	t.Parallel()
	if _, err := NewServer(newMock(t), ServerOptions{}); !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("NewServer without a token: %v, want ErrInvalidArgument", err)
	}
}

func TestTokenNotLoggedOnSuccess(t *testing.T) {
	t.Parallel()
	b := startBackend(t, newMock(t))
	p := newClient(t, b.URL, nil)
	spawn(t, p, "logged-1")
	conformance.Shell(t, p, "logged-1", "echo hi")

	logs := b.logs.String()
	if !strings.Contains(logs, "sandbox spawned") {
		t.Fatalf("server log lacks the spawn:\n%s", logs)
	}
	if strings.Contains(logs, testToken) {
		t.Errorf("server log contains the token:\n%s", logs)
	}
}

func TestParseSettings(t *testing.T) {
	t.Parallel()
	cfg, err := ParseSettings(map[string]any{
		"base_url":           "http://127.0.0.1:7424/",
		"api_key":            "k",
		"heartbeat_interval": "500ms",
		"exec_grace":         "3s",
	})
	if err != nil {
		t.Fatalf("ParseSettings: %v", err)
	}
	if cfg.BaseURL != "http://127.0.0.1:7424/" || cfg.APIKey != config.Secret("k") ||
		cfg.HeartbeatInterval != 500*time.Millisecond || cfg.ExecGrace != 3*time.Second {
		t.Errorf("ParseSettings = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	bad := []struct {
		name     string
		settings map[string]any
		want     string
	}{
		{"unknown key", map[string]any{"base_url": "http://h", "bse_url": "x"}, "unknown key providers.custom.bse_url"},
		{"bad duration", map[string]any{"base_url": "http://h", "idle_timeout": "soon"}, "providers.custom.idle_timeout"},
		{"number as key", map[string]any{"base_url": "http://h", "api_key": 123456789}, "providers.custom.api_key must be a string"},
	}
	for _, c := range bad {
		_, err := ParseSettings(c.settings)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "123456789") {
			t.Errorf("%s: error %q contains the key's value", c.name, err)
		}
	}
}

func TestValidateBaseURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url  string
		want string
	}{
		{"", "base_url is not set"},
		{"ftp://h", "must start with http:// or https://"},
		{"http://user:secret@h", "user name or password"},
		{"http://h?x=1", "query or fragment"},
		{"http://", "has no host"},
	}
	for _, c := range cases {
		err := Config{BaseURL: c.url}.Validate()
		if !errors.Is(err, provider.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%q) = %v, want ErrInvalidArgument containing %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Validate(%q) = %v, which contains the password", c.url, err)
		}
	}
	if err := (Config{BaseURL: "http://h", HeartbeatInterval: time.Hour}).Validate(); err == nil {
		t.Error("Validate accepted a heartbeat interval of 1h")
	}
}
