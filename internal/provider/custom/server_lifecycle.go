package custom

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, versionInfo{
		Protocol:      ProtocolVersion,
		Revision:      ProtocolRevision,
		ServerVersion: s.version,
		Provider:      s.p.Name(),
		Capabilities:  s.p.Capabilities(),
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	if err := s.p.Health(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleSpawn creates a sandbox. The provider's spawn ends when the client
// goes away, and then leaves nothing behind.
func (s *Server) handleSpawn(w http.ResponseWriter, r *http.Request) error {
	var body spawnRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	start := time.Now()
	if err := s.p.Spawn(r.Context(), body.toProvider()); err != nil {
		return err
	}
	s.log.Info("sandbox spawned", "sandbox_id", body.ID, "provider", s.p.Name(),
		"duration_ms", time.Since(start).Milliseconds())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleRecover(w http.ResponseWriter, r *http.Request) error {
	if err := s.p.Recover(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleDestroy(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	start := time.Now()
	if err := s.p.Destroy(r.Context(), id); err != nil {
		return err
	}
	s.log.Info("sandbox destroyed", "sandbox_id", id, "provider", s.p.Name(),
		"duration_ms", time.Since(start).Milliseconds())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleRuntimes(w http.ResponseWriter, r *http.Request) error {
	inv, ok := s.p.(provider.Inventory)
	if !ok {
		return s.notImplemented("inventory")
	}
	runtimes, err := inv.ListRuntimes(r.Context())
	if err != nil {
		return err
	}
	wire := make([]runtimeInfo, len(runtimes))
	for i, rt := range runtimes {
		wire[i] = toWireRuntime(rt)
	}
	return writeJSON(w, wire)
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) error {
	reader, ok := s.p.(provider.StatsReader)
	if !ok {
		return s.notImplemented("stats")
	}
	stats, err := reader.Stats(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, stats)
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) error {
	reader, ok := s.p.(provider.LogReader)
	if !ok {
		return s.notImplemented("logs")
	}
	lines := 0
	if raw := r.URL.Query().Get("lines"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return fmt.Errorf("lines %q is not a non-negative integer: %w", raw, provider.ErrInvalidArgument)
		}
		lines = n
	}
	logs, err := reader.Logs(r.Context(), r.PathValue("id"), lines)
	if err != nil {
		return err
	}
	if logs == nil {
		logs = []string{}
	}
	return writeJSON(w, logsResponse{Lines: logs})
}

// notImplemented returns the error for an optional interface that the
// provider lacks.
func (s *Server) notImplemented(what string) error {
	return fmt.Errorf("provider %s does not implement %s: %w", s.p.Name(), what, provider.ErrNotImplemented)
}
