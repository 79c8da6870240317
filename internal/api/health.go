package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// healthCheckTimeout bounds each provider's Health call in /health and
// /ready, so that a hung runtime cannot hang the probe.
const healthCheckTimeout = 5 * time.Second

// live handles the liveness probe: the process is up and serving.
func (s *server) live(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// ready handles the readiness probe: 200 when the default provider can
// spawn sandboxes, else 503 with the reason.
func (s *server) ready(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), healthCheckTimeout)
	defer cancel()

	if err := s.manager.Ready(ctx); err != nil {
		return unavailable(err)
	}
	name, err := s.manager.Providers().DefaultName(ctx)
	if err != nil {
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "provider": name})
	return nil
}

// unavailable makes sure a readiness failure maps to 503, keeping the
// reason in the message.
func unavailable(err error) error {
	if errors.Is(err, provider.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", provider.ErrUnavailable, err)
}

// healthJSON is the body of GET /health.
type healthJSON struct {
	Status          string                        `json:"status"` // "ok", or "degraded" when a provider is unhealthy
	Version         string                        `json:"version"`
	UptimeSeconds   int64                         `json:"uptime_seconds"`
	DefaultProvider string                        `json:"default_provider"`
	Providers       map[string]providerHealthJSON `json:"providers"`
}

type providerHealthJSON struct {
	Healthy      bool                  `json:"healthy"`
	Error        string                `json:"error,omitempty"`
	Capabilities provider.Capabilities `json:"capabilities"`
}

// health reports the version, the uptime and the health of every
// registered provider. It responds 200 even when degraded, because /ready
// is the probe that fails.
func (s *server) health(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), healthCheckTimeout)
	defer cancel()

	body := healthJSON{
		Status:        "ok",
		Version:       s.version,
		UptimeSeconds: int64(time.Since(s.started).Seconds()),
		Providers:     s.checkProviders(ctx),
	}
	for _, ph := range body.Providers {
		if !ph.Healthy {
			body.Status = "degraded"
		}
	}

	// An "auto" default with no usable provider has no name, and the
	// providers map shows why.
	body.DefaultProvider, _ = s.manager.Providers().DefaultName(ctx)

	writeJSON(w, http.StatusOK, body)
	return nil
}

// checkProviders calls Health on every registered provider concurrently.
func (s *server) checkProviders(ctx context.Context) map[string]providerHealthJSON {
	all := s.manager.Providers().All()
	results := make(map[string]providerHealthJSON, len(all))

	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, p := range all {
		wg.Go(func() {
			ph := providerHealthJSON{Healthy: true, Capabilities: p.Capabilities()}
			if ph.Capabilities.Runtimes == nil {
				ph.Capabilities.Runtimes = []string{} // an array on the wire, never null
			}
			if err := p.Health(ctx); err != nil {
				ph.Healthy = false
				ph.Error = err.Error()
			}
			mu.Lock()
			results[p.Name()] = ph
			mu.Unlock()
		})
	}
	wg.Wait()
	return results
}
