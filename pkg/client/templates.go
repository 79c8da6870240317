package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Template is a named set of spawn settings stored on the server. A spawn
// from a template takes every field that the spawn leaves zero from it.
type Template struct {
	Name         string            // 1 to 63 of a-z 0-9 - _ . starting with a letter or digit
	Description  string            // free text for people
	Image        string            // image reference; empty for the provider's default
	Provider     string            // provider name; empty for the server's default
	Runtime      string            // runtime variant such as "runsc"
	MemoryMB     int               // memory limit in MiB; 0 for the server default
	VCPUs        int               // CPU limit in whole CPUs; 0 for the server default
	TTL          time.Duration     // lifetime of spawned sandboxes; 0 for the server default
	Network      bool              // give spawned sandboxes network access
	Env          map[string]string // environment applied to every command
	Setup        []string          // shell commands run in order in /workspace after spawn
	SetupTimeout time.Duration     // bound of each setup command; 0 for the exec default
	Metadata     map[string]string // labels copied to spawned sandboxes
	CreatedAt    time.Time         // set by the server
	UpdatedAt    time.Time         // set by the server
}

// templateJSON is the wire form of Template: durations are Go duration
// strings and times RFC 3339 strings, "" for zero.
type templateJSON struct {
	Name         string            `json:"name"`
	Description  string            `json:"description,omitempty"`
	Image        string            `json:"image,omitempty"`
	Provider     string            `json:"provider,omitempty"`
	Runtime      string            `json:"runtime,omitempty"`
	MemoryMB     int               `json:"memory_mb,omitempty"`
	VCPUs        int               `json:"vcpus,omitempty"`
	TTL          string            `json:"ttl,omitempty"`
	Network      bool              `json:"network,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Setup        []string          `json:"setup,omitempty"`
	SetupTimeout string            `json:"setup_timeout,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	CreatedAt    string            `json:"created_at,omitempty"`
	UpdatedAt    string            `json:"updated_at,omitempty"`
}

// MarshalJSON encodes the template in its wire form.
func (t Template) MarshalJSON() ([]byte, error) {
	return json.Marshal(templateJSON{
		Name:         t.Name,
		Description:  t.Description,
		Image:        t.Image,
		Provider:     t.Provider,
		Runtime:      t.Runtime,
		MemoryMB:     t.MemoryMB,
		VCPUs:        t.VCPUs,
		TTL:          formatDuration(t.TTL),
		Network:      t.Network,
		Env:          t.Env,
		Setup:        t.Setup,
		SetupTimeout: formatDuration(t.SetupTimeout),
		Metadata:     t.Metadata,
		CreatedAt:    formatTime(t.CreatedAt),
		UpdatedAt:    formatTime(t.UpdatedAt),
	})
}

// UnmarshalJSON decodes the wire form of a template.
func (t *Template) UnmarshalJSON(b []byte) error {
	var w templateJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*t = Template{
		Name:        w.Name,
		Description: w.Description,
		Image:       w.Image,
		Provider:    w.Provider,
		Runtime:     w.Runtime,
		MemoryMB:    w.MemoryMB,
		VCPUs:       w.VCPUs,
		Network:     w.Network,
		Env:         w.Env,
		Setup:       w.Setup,
		Metadata:    w.Metadata,
	}

	var err error
	if t.TTL, err = parseDuration("ttl", w.TTL); err != nil {
		return fmt.Errorf("template %s: %w", w.Name, err)
	}
	if t.SetupTimeout, err = parseDuration("setup_timeout", w.SetupTimeout); err != nil {
		return fmt.Errorf("template %s: %w", w.Name, err)
	}
	if t.CreatedAt, err = parseTime(w.CreatedAt); err != nil {
		return fmt.Errorf("template %s: %w", w.Name, err)
	}
	if t.UpdatedAt, err = parseTime(w.UpdatedAt); err != nil {
		return fmt.Errorf("template %s: %w", w.Name, err)
	}
	return nil
}

// templatePath returns the API path of a template, with the name escaped.
func templatePath(name, sub string) string {
	return "/templates/" + url.PathEscape(name) + sub
}

// CreateTemplate stores a new template and returns it as the server stored
// it. A template with the same name gives an error matching ErrConflict.
func (c *Client) CreateTemplate(ctx context.Context, t Template) (Template, error) {
	var created Template
	err := c.doJSON(ctx, http.MethodPost, "/templates", nil, t, &created)
	return created, err
}

// ListTemplates returns every template, sorted by name.
func (c *Client) ListTemplates(ctx context.Context) ([]Template, error) {
	var list []Template
	if err := c.doJSON(ctx, http.MethodGet, "/templates", nil, nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// GetTemplate returns the template named name, or an error matching
// ErrNotFound.
func (c *Client) GetTemplate(ctx context.Context, name string) (Template, error) {
	var t Template
	err := c.doJSON(ctx, http.MethodGet, templatePath(name, ""), nil, nil, &t)
	return t, err
}

// UpdateTemplate replaces every field of the template named t.Name and
// returns the stored template. Sandboxes spawned before keep their settings.
func (c *Client) UpdateTemplate(ctx context.Context, t Template) (Template, error) {
	var updated Template
	err := c.doJSON(ctx, http.MethodPut, templatePath(t.Name, ""), nil, t, &updated)
	return updated, err
}

// DeleteTemplate deletes the template named name. Sandboxes spawned from it
// keep running.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	return c.doJSON(ctx, http.MethodDelete, templatePath(name, ""), nil, nil, nil)
}

// TemplateSpawnRequest overrides fields of a template for one spawn. Zero
// fields keep the template's values; Env and Metadata are merged into the
// template's, with these keys winning, and a non-empty Setup replaces the
// template's list.
type TemplateSpawnRequest struct {
	Image        string
	Provider     string
	Runtime      string
	MemoryMB     int
	VCPUs        int
	TTL          time.Duration
	OwnerID      string
	Network      *bool // nil keeps the template's setting
	Env          map[string]string
	Metadata     map[string]string
	Setup        []string
	SetupTimeout time.Duration

	// IdempotencyKey, when set, is sent as the Idempotency-Key header: a
	// retry with the same key and request returns the sandbox of the first
	// request instead of spawning another.
	IdempotencyKey string
}

// templateSpawnBody is the wire form of TemplateSpawnRequest.
type templateSpawnBody struct {
	Image        string            `json:"image,omitempty"`
	Provider     string            `json:"provider,omitempty"`
	Runtime      string            `json:"runtime,omitempty"`
	MemoryMB     int               `json:"memory_mb,omitempty"`
	VCPUs        int               `json:"vcpus,omitempty"`
	TTL          string            `json:"ttl,omitempty"`
	OwnerID      string            `json:"owner_id,omitempty"`
	Network      *bool             `json:"network,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Setup        []string          `json:"setup,omitempty"`
	SetupTimeout string            `json:"setup_timeout,omitempty"`
}

// SpawnTemplate creates a sandbox from the template named name, with req's
// overrides, and returns it once it is running and its setup commands have
// succeeded. A failed setup command gives an error matching ErrBadRequest
// whose message names the command, its exit status and its last stderr
// lines. The server destroys the sandbox of a failed setup.
func (c *Client) SpawnTemplate(ctx context.Context, name string, req TemplateSpawnRequest) (Sandbox, error) {
	body := templateSpawnBody{
		Image:        req.Image,
		Provider:     req.Provider,
		Runtime:      req.Runtime,
		MemoryMB:     req.MemoryMB,
		VCPUs:        req.VCPUs,
		TTL:          formatDuration(req.TTL),
		OwnerID:      req.OwnerID,
		Network:      req.Network,
		Env:          req.Env,
		Metadata:     req.Metadata,
		Setup:        req.Setup,
		SetupTimeout: formatDuration(req.SetupTimeout),
	}
	var sb Sandbox
	err := c.doJSONWithKey(ctx, templatePath(name, "/spawn"), req.IdempotencyKey, body, &sb)
	return sb, err
}

// SpawnIdempotent is Spawn with an Idempotency-Key header: a retry with the
// same key and request, within the server's idempotency window, returns the
// sandbox of the first request instead of spawning another. Use it to retry
// a spawn whose response was lost.
func (c *Client) SpawnIdempotent(ctx context.Context, key string, req SpawnRequest) (Sandbox, error) {
	body := spawnBody{
		Image:    req.Image,
		Provider: req.Provider,
		Runtime:  req.Runtime,
		MemoryMB: req.MemoryMB,
		VCPUs:    req.VCPUs,
		TTL:      formatDuration(req.TTL),
		OwnerID:  req.OwnerID,
		Network:  req.Network,
		Env:      req.Env,
		Metadata: req.Metadata,
	}
	var sb Sandbox
	err := c.doJSONWithKey(ctx, "/sandboxes", key, body, &sb)
	return sb, err
}

// doJSONWithKey POSTs in as JSON with the Idempotency-Key header, when key
// is set, and decodes a 2xx response into out.
func (c *Client) doJSONWithKey(ctx context.Context, path, key string, in, out any) error {
	body, err := jsonBody(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path, nil), body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return readAPIError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response of POST %s: %w", path, err)
	}
	return nil
}

// formatDuration formats d as a Go duration string, and zero as "".
func formatDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// parseDuration parses a Go duration string of field; "" is zero.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a Go duration: %w", field, s, err)
	}
	return d, nil
}
