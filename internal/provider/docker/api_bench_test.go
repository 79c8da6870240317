package docker

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stacyvm/stacyvm/internal/api"
	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
	"github.com/stacyvm/stacyvm/pkg/client"
)

// BenchmarkAPIExec measures the exec round trip of `true` as a user of the
// REST API sees it: the Go client, HTTP on loopback, the manager with its
// SQLite store, the provider and the agent. Compare it with the agent and
// docker exec figures of BenchmarkExec from the same run.
func BenchmarkAPIExec(b *testing.B) {
	for _, runtime := range benchRuntimes(b) {
		b.Run(runtime, func(b *testing.B) {
			c := benchAPIClient(b)
			ctx := context.Background()
			sb, err := c.Spawn(ctx, client.SpawnRequest{Provider: "docker", Image: testImage, Runtime: runtime})
			if err != nil {
				b.Fatalf("spawn: %v", err)
			}
			b.Cleanup(func() { _ = c.Destroy(context.Background(), sb.ID) })

			req := client.ExecRequest{Command: "true"}
			var l latencies
			for b.Loop() {
				l.time(func() {
					res, err := c.Exec(ctx, sb.ID, req)
					if err != nil || res.ExitCode != 0 {
						b.Fatalf("exec true: %+v, %v", res, err)
					}
				})
			}
			l.report(b)
		})
	}
}

// benchAPIClient serves the REST API on loopback over a real SQLite store
// and a docker provider, and returns a client of it.
func benchAPIClient(b *testing.B) *client.Client {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)

	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "stacyvm.db"))
	if err != nil {
		b.Fatalf("open store: %v", err)
	}
	b.Cleanup(func() { st.Close() })

	registry := orchestrator.NewRegistry("docker")
	registry.Register(benchProvider(b))
	limits := config.Default().Limits
	manager, err := orchestrator.New(orchestrator.Options{Store: st, Registry: registry, Limits: limits, Logger: logger})
	if err != nil {
		b.Fatalf("create manager: %v", err)
	}
	if err := manager.Start(context.Background()); err != nil {
		b.Fatalf("start manager: %v", err)
	}
	b.Cleanup(func() { manager.Close() })

	srv := httptest.NewServer(api.New(api.Options{Manager: manager, Logger: logger, Limits: limits, Version: "bench"}))
	b.Cleanup(srv.Close)

	c, err := client.New(srv.URL)
	if err != nil {
		b.Fatalf("create client: %v", err)
	}
	return c
}
