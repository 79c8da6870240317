package client_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/api"
	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
	"github.com/stacyvm/stacyvm/pkg/client"
)

// testLogWriter sends component logs to t.Log, so they show only when a
// test fails.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// startServer runs the real server stack (SQLite store, mock provider,
// manager and API) behind an HTTP server on loopback and returns its URL.
func startServer(t *testing.T, apiKey string) string {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "stacyvm.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })

	mp, err := mock.New(mock.Config{Root: filepath.Join(dir, "mock")})
	if err != nil {
		t.Fatalf("mock provider: %v", err)
	}
	registry := orchestrator.NewRegistry("mock")
	registry.Register(mp)

	limits := config.Default().Limits
	mgr, err := orchestrator.New(orchestrator.Options{
		Store:    st,
		Registry: registry,
		Limits:   limits,
		Logger:   log,
	})
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	if err := mgr.Start(context.WithoutCancel(t.Context())); err != nil {
		t.Fatalf("start manager: %v", err)
	}
	t.Cleanup(func() { mgr.Close() })

	srv := httptest.NewServer(api.New(api.Options{
		Manager: mgr,
		Logger:  log,
		Limits:  limits,
		Version: "v9.9.9-test",
		APIKey:  config.Secret(apiKey),
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// newClient starts a server without authentication and returns a client
// for it.
func newClient(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(startServer(t, ""))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// spawn creates a sandbox that the test destroys when it ends.
func spawn(t *testing.T, c *client.Client) client.Sandbox {
	t.Helper()
	sb, err := c.Spawn(t.Context(), client.SpawnRequest{})
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Destroy(ctx, sb.ID)
	})
	return sb
}
