package api

import (
	"net/http"
	"strconv"

	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// spawnRequest is the body of POST /sandboxes and, without template, of
// POST /templates/{name}/spawn.
type spawnRequest struct {
	Image    string            `json:"image"`
	Provider string            `json:"provider"`
	MemoryMB int               `json:"memory_mb"`
	VCPUs    int               `json:"vcpus"`
	TTL      string            `json:"ttl"` // Go duration string
	OwnerID  string            `json:"owner_id"`
	Metadata map[string]string `json:"metadata"`

	// Fields added to the v1 shape.
	Runtime      string            `json:"runtime"`
	Network      *bool             `json:"network"` // nil takes the template's, else false
	Env          map[string]string `json:"env"`
	Template     string            `json:"template"`
	Setup        []string          `json:"setup"`
	SetupTimeout string            `json:"setup_timeout"` // Go duration string
}

// spawnSandbox creates a sandbox and responds 201 with it once it runs.
func (s *server) spawnSandbox(w http.ResponseWriter, r *http.Request) error {
	var req spawnRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	spawn, err := req.toManager()
	if err != nil {
		return err
	}
	return s.spawn(w, r, spawn)
}

// toManager checks the fields that the HTTP layer parses and converts the
// request for the manager, which checks the rest.
func (req spawnRequest) toManager() (orchestrator.SpawnRequest, error) {
	if req.MemoryMB < 0 {
		return orchestrator.SpawnRequest{}, invalidf("memory_mb must not be negative, got %d; omit it or send 0 for the default", req.MemoryMB)
	}
	if req.VCPUs < 0 {
		return orchestrator.SpawnRequest{}, invalidf("vcpus must not be negative, got %d; omit it or send 0 for the default", req.VCPUs)
	}
	ttl, err := parseDuration("ttl", req.TTL)
	if err != nil {
		return orchestrator.SpawnRequest{}, err
	}
	setupTimeout, err := parseDuration("setup_timeout", req.SetupTimeout)
	if err != nil {
		return orchestrator.SpawnRequest{}, err
	}

	return orchestrator.SpawnRequest{
		Image:        req.Image,
		Provider:     req.Provider,
		Runtime:      req.Runtime,
		MemoryMB:     req.MemoryMB,
		VCPUs:        req.VCPUs,
		TTL:          ttl,
		OwnerID:      req.OwnerID,
		Network:      req.Network != nil && *req.Network,
		NetworkSet:   req.Network != nil,
		Env:          req.Env,
		Metadata:     req.Metadata,
		Template:     req.Template,
		Setup:        req.Setup,
		SetupTimeout: setupTimeout,
	}, nil
}

// listSandboxes lists sandboxes newest first, destroyed ones included
// unless ?state= selects otherwise. ?owner_id= filters by owner.
func (s *server) listSandboxes(w http.ResponseWriter, r *http.Request) error {
	query := r.URL.Query()
	filter := store.Filter{
		State:   store.State(query.Get("state")),
		OwnerID: query.Get("owner_id"),
	}
	if filter.State != "" && !filter.State.Valid() {
		return invalidf("state must be one of creating, running, error, destroying, destroyed, got %q", filter.State)
	}

	sandboxes, err := s.manager.List(r.Context(), filter)
	if err != nil {
		return err
	}
	list := make([]sandboxJSON, len(sandboxes))
	for i, sb := range sandboxes {
		list[i] = toSandboxJSON(sb)
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// getSandbox returns one sandbox. A destroyed sandbox is 404, with a
// message stating that it was destroyed and when.
func (s *server) getSandbox(w http.ResponseWriter, r *http.Request) error {
	sb, err := s.manager.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if sb.State == store.StateDestroyed {
		return destroyedError(sb)
	}
	writeJSON(w, http.StatusOK, toSandboxJSON(sb))
	return nil
}

// destroySandbox destroys a sandbox. It responds 200 for every sandbox the
// server issued, including one already destroyed, so clients can retry.
func (s *server) destroySandbox(w http.ResponseWriter, r *http.Request) error {
	if err := s.manager.Destroy(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "destroyed"})
	return nil
}

// extendRequest is the body of POST /sandboxes/{id}/extend.
type extendRequest struct {
	TTL string `json:"ttl"` // Go duration string, counted from now
}

// extendSandbox moves the sandbox's expiry to now plus ttl.
func (s *server) extendSandbox(w http.ResponseWriter, r *http.Request) error {
	var req extendRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	ttl, err := parseDuration("ttl", req.TTL)
	if err != nil {
		return err
	}
	if ttl == 0 {
		return invalidf("ttl is required and must be positive; send a Go duration such as \"10m\"")
	}

	sb, err := s.manager.Extend(r.Context(), r.PathValue("id"), ttl)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toSandboxJSON(sb))
	return nil
}

// logsJSON is the body of GET /sandboxes/{id}/logs.
type logsJSON struct {
	SandboxID string   `json:"sandbox_id"`
	Lines     []string `json:"lines"`
}

// sandboxLogs returns the last ?lines= lines of the sandbox's console log,
// or all of it when lines is absent or 0.
func (s *server) sandboxLogs(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	lines := 0
	if v := r.URL.Query().Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return invalidf("lines must be a non-negative integer, got %q; omit it or send 0 for the whole log", v)
		}
		lines = n
	}

	logLines, err := s.manager.Logs(r.Context(), id, lines)
	if err != nil {
		return err
	}
	if logLines == nil {
		logLines = []string{}
	}
	writeJSON(w, http.StatusOK, logsJSON{SandboxID: id, Lines: logLines})
	return nil
}

// sandboxStats returns a resource sample, or 501 when the provider cannot
// measure its sandboxes.
func (s *server) sandboxStats(w http.ResponseWriter, r *http.Request) error {
	stats, err := s.manager.Stats(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, stats)
	return nil
}

// destroyedError returns the 404 error for a read of the destroyed record
// sb, with the time and, when recorded, the reason.
func destroyedError(sb store.Sandbox) error {
	msg := "sandbox " + sb.ID + " was destroyed"
	if !sb.DestroyedAt.IsZero() {
		msg += " at " + formatTime(sb.DestroyedAt)
	}
	if sb.Error != "" {
		msg += " (" + sb.Error + ")"
	}
	return &requestError{kind: provider.ErrSandboxDestroyed, msg: msg}
}
