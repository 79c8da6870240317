package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/store"
)

// Headers of spawns with an idempotency key.
const (
	headerIdempotencyKey      = "Idempotency-Key"
	headerIdempotencyReplayed = "Idempotency-Replayed"
)

// templateJSON is the wire form of a template, both request body and
// response. Durations are Go duration strings; a zero one is "".
type templateJSON struct {
	Name         string            `json:"name"`
	Description  string            `json:"description"`
	Image        string            `json:"image"`
	Provider     string            `json:"provider"`
	Runtime      string            `json:"runtime"`
	MemoryMB     int               `json:"memory_mb"`
	VCPUs        int               `json:"vcpus"`
	TTL          string            `json:"ttl"`
	Network      bool              `json:"network"`
	Env          map[string]string `json:"env"`
	Setup        []string          `json:"setup"`
	SetupTimeout string            `json:"setup_timeout"`
	Metadata     map[string]string `json:"metadata"`

	// Set by the server; ignored in requests.
	CreatedAt string `json:"created_at,omitempty"`
	UpdatedAt string `json:"updated_at,omitempty"`
}

func toTemplateJSON(t store.Template) templateJSON {
	return templateJSON{
		Name:         t.Name,
		Description:  t.Description,
		Image:        t.Image,
		Provider:     t.Provider,
		Runtime:      t.Runtime,
		MemoryMB:     t.MemoryMB,
		VCPUs:        t.VCPUs,
		TTL:          formatDuration(t.TTL),
		Network:      t.Network,
		Env:          nonNilMap(t.Env),
		Setup:        nonNilList(t.Setup),
		SetupTimeout: formatDuration(t.SetupTimeout),
		Metadata:     nonNilMap(t.Metadata),
		CreatedAt:    formatTime(t.CreatedAt),
		UpdatedAt:    formatTime(t.UpdatedAt),
	}
}

// toStore parses the request form of a template.
func (body templateJSON) toStore() (store.Template, error) {
	if body.MemoryMB < 0 {
		return store.Template{}, invalidf("memory_mb must not be negative, got %d; omit it or send 0 for the server default", body.MemoryMB)
	}
	if body.VCPUs < 0 {
		return store.Template{}, invalidf("vcpus must not be negative, got %d; omit it or send 0 for the server default", body.VCPUs)
	}
	ttl, err := parseDuration("ttl", body.TTL)
	if err != nil {
		return store.Template{}, err
	}
	setupTimeout, err := parseDuration("setup_timeout", body.SetupTimeout)
	if err != nil {
		return store.Template{}, err
	}

	return store.Template{
		Name:         body.Name,
		Description:  body.Description,
		Image:        body.Image,
		Provider:     body.Provider,
		Runtime:      body.Runtime,
		MemoryMB:     body.MemoryMB,
		VCPUs:        body.VCPUs,
		TTL:          ttl,
		Network:      body.Network,
		Env:          body.Env,
		Setup:        body.Setup,
		SetupTimeout: setupTimeout,
		Metadata:     body.Metadata,
	}, nil
}

// createTemplate stores a new template and responds 201 with it.
func (s *server) createTemplate(w http.ResponseWriter, r *http.Request) error {
	var body templateJSON
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	t, err := body.toStore()
	if err != nil {
		return err
	}

	created, err := s.manager.CreateTemplate(r.Context(), t)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/templates/"+created.Name)
	writeJSON(w, http.StatusCreated, toTemplateJSON(created))
	return nil
}

// listTemplates responds with every template, sorted by name.
func (s *server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	templates, err := s.manager.ListTemplates(r.Context())
	if err != nil {
		return err
	}
	list := make([]templateJSON, len(templates))
	for i, t := range templates {
		list[i] = toTemplateJSON(t)
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// getTemplate responds with one template.
func (s *server) getTemplate(w http.ResponseWriter, r *http.Request) error {
	t, err := s.manager.GetTemplate(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toTemplateJSON(t))
	return nil
}

// updateTemplate replaces every field of an existing template with the
// body's. The body may leave out the name, or repeat the one in the path.
func (s *server) updateTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var body templateJSON
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.Name != "" && body.Name != name {
		return invalidf("name %q in the body differs from %q in the path; a template cannot be renamed, "+
			"so create the new name and delete the old one", body.Name, name)
	}
	body.Name = name
	t, err := body.toStore()
	if err != nil {
		return err
	}

	updated, err := s.manager.UpdateTemplate(r.Context(), t)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toTemplateJSON(updated))
	return nil
}

// deleteTemplate deletes a template. Sandboxes spawned from it keep running.
func (s *server) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.manager.DeleteTemplate(r.Context(), name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "deleted", "name": name})
	return nil
}

// spawnFromTemplate spawns a sandbox from the template in the path. The
// body takes the fields of POST /sandboxes, which override the template's.
func (s *server) spawnFromTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var body spawnRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.Template != "" && body.Template != name {
		return invalidf("template %q in the body differs from %q in the path; leave it out", body.Template, name)
	}
	body.Template = name

	req, err := body.toManager()
	if err != nil {
		return err
	}
	return s.spawn(w, r, req)
}

// setupErrorJSON is the 400 body of a spawn whose setup command failed:
// the error body plus the command's details.
type setupErrorJSON struct {
	errorBody
	Setup setupFailureJSON `json:"setup"`
}

type setupFailureJSON struct {
	SandboxID  string `json:"sandbox_id"` // the destroyed sandbox
	Index      int    `json:"index"`      // position in the setup list, from 0
	Command    string `json:"command"`
	ExitCode   int    `json:"exit_code"`
	TimedOut   bool   `json:"timed_out"`
	StderrTail string `json:"stderr_tail"` // the last 20 lines, at most 2 KiB
}

// spawn runs a spawn for both spawn routes and responds 201 with the
// sandbox. With an Idempotency-Key header, a retry gets the sandbox of the
// first request, also with 201, and the header Idempotency-Replayed: true.
func (s *server) spawn(w http.ResponseWriter, r *http.Request, req orchestrator.SpawnRequest) error {
	key := r.Header.Get(headerIdempotencyKey)
	sb, replayed, err := s.manager.SpawnIdempotent(r.Context(), key, req)

	var setupErr *orchestrator.SetupError
	if errors.As(err, &setupErr) && !clientGone(r) {
		requestInfoFrom(r.Context()).sandboxID = setupErr.SandboxID
		status, body := s.logError(r, err)
		writeJSON(w, status, setupErrorJSON{
			errorBody: body,
			Setup: setupFailureJSON{
				SandboxID:  setupErr.SandboxID,
				Index:      setupErr.Index,
				Command:    setupErr.Command,
				ExitCode:   setupErr.ExitCode,
				TimedOut:   setupErr.TimedOut,
				StderrTail: setupErr.StderrTail,
			},
		})
		return nil
	}
	if err != nil {
		return err
	}

	requestInfoFrom(r.Context()).sandboxID = sb.ID
	w.Header().Set("Location", "/api/v1/sandboxes/"+sb.ID)
	if replayed {
		w.Header().Set(headerIdempotencyReplayed, "true")
	}
	writeJSON(w, http.StatusCreated, toSandboxJSON(sb))
	return nil
}

// formatDuration formats d as a Go duration string, and zero as "".
func formatDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilList(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
