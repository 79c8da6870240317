package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Sandbox states, as reported in Sandbox.State.
const (
	StateCreating   = "creating"
	StateRunning    = "running"
	StateError      = "error"
	StateDestroying = "destroying"
	StateDestroyed  = "destroyed"
)

// Sandbox is a sandbox as the server reports it.
type Sandbox struct {
	ID          string
	State       string // one of the State* constants
	Provider    string
	Image       string
	Runtime     string // runtime variant; empty for the provider's default
	MemoryMB    int
	VCPUs       int
	Network     bool
	OwnerID     string
	Metadata    map[string]string
	Error       string // cause of the error state, for people
	CreatedAt   time.Time
	UpdatedAt   time.Time
	ExpiresAt   time.Time
	DestroyedAt time.Time // zero until destroyed
}

// sandboxJSON is the wire form of Sandbox: times are RFC 3339 strings, and
// "" or an absent field is the zero time.
type sandboxJSON struct {
	ID          string            `json:"id"`
	State       string            `json:"state"`
	Provider    string            `json:"provider"`
	Image       string            `json:"image"`
	MemoryMB    int               `json:"memory_mb"`
	VCPUs       int               `json:"vcpus"`
	OwnerID     string            `json:"owner_id"`
	CreatedAt   string            `json:"created_at"`
	ExpiresAt   string            `json:"expires_at"`
	Metadata    map[string]string `json:"metadata"`
	Runtime     string            `json:"runtime"`
	Network     bool              `json:"network"`
	Error       string            `json:"error,omitempty"`
	UpdatedAt   string            `json:"updated_at"`
	DestroyedAt string            `json:"destroyed_at,omitempty"`
}

// UnmarshalJSON decodes the wire form of a sandbox.
func (sb *Sandbox) UnmarshalJSON(b []byte) error {
	var w sandboxJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*sb = Sandbox{
		ID:       w.ID,
		State:    w.State,
		Provider: w.Provider,
		Image:    w.Image,
		Runtime:  w.Runtime,
		MemoryMB: w.MemoryMB,
		VCPUs:    w.VCPUs,
		Network:  w.Network,
		OwnerID:  w.OwnerID,
		Metadata: w.Metadata,
		Error:    w.Error,
	}

	times := []struct {
		dst *time.Time
		src string
	}{
		{&sb.CreatedAt, w.CreatedAt},
		{&sb.UpdatedAt, w.UpdatedAt},
		{&sb.ExpiresAt, w.ExpiresAt},
		{&sb.DestroyedAt, w.DestroyedAt},
	}
	for _, t := range times {
		parsed, err := parseTime(t.src)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", w.ID, err)
		}
		*t.dst = parsed
	}
	return nil
}

// MarshalJSON encodes the sandbox in its wire form, so that printed
// sandboxes look like the API's.
func (sb Sandbox) MarshalJSON() ([]byte, error) {
	metadata := sb.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	return json.Marshal(sandboxJSON{
		ID:          sb.ID,
		State:       sb.State,
		Provider:    sb.Provider,
		Image:       sb.Image,
		MemoryMB:    sb.MemoryMB,
		VCPUs:       sb.VCPUs,
		OwnerID:     sb.OwnerID,
		CreatedAt:   formatTime(sb.CreatedAt),
		ExpiresAt:   formatTime(sb.ExpiresAt),
		Metadata:    metadata,
		Runtime:     sb.Runtime,
		Network:     sb.Network,
		Error:       sb.Error,
		UpdatedAt:   formatTime(sb.UpdatedAt),
		DestroyedAt: formatTime(sb.DestroyedAt),
	})
}

// SpawnRequest describes a sandbox to create. Zero fields take the server's
// defaults.
type SpawnRequest struct {
	Image    string            // image reference; empty for the provider's default
	Provider string            // provider name; empty for the server's default
	Runtime  string            // runtime variant such as "runsc"; empty for the provider's default
	MemoryMB int               // memory limit in MiB
	VCPUs    int               // CPU limit in whole CPUs
	TTL      time.Duration     // lifetime before the server destroys the sandbox
	OwnerID  string            // owner, for listing and per-owner limits
	Network  bool              // true to give the sandbox network access
	Env      map[string]string // environment applied to every command
	Metadata map[string]string // free-form labels
}

// spawnBody is the wire form of SpawnRequest: the TTL is a Go duration
// string such as "30m0s".
type spawnBody struct {
	Image    string            `json:"image,omitempty"`
	Provider string            `json:"provider,omitempty"`
	Runtime  string            `json:"runtime,omitempty"`
	MemoryMB int               `json:"memory_mb,omitempty"`
	VCPUs    int               `json:"vcpus,omitempty"`
	TTL      string            `json:"ttl,omitempty"`
	OwnerID  string            `json:"owner_id,omitempty"`
	Network  bool              `json:"network,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Spawn creates a sandbox and returns it once it is running.
func (c *Client) Spawn(ctx context.Context, req SpawnRequest) (Sandbox, error) {
	body := spawnBody{
		Image:    req.Image,
		Provider: req.Provider,
		Runtime:  req.Runtime,
		MemoryMB: req.MemoryMB,
		VCPUs:    req.VCPUs,
		OwnerID:  req.OwnerID,
		Network:  req.Network,
		Env:      req.Env,
		Metadata: req.Metadata,
	}
	if req.TTL != 0 {
		body.TTL = req.TTL.String()
	}

	var sb Sandbox
	err := c.doJSON(ctx, http.MethodPost, "/sandboxes", nil, body, &sb)
	return sb, err
}

// ListOptions filters List. Zero fields match every sandbox.
type ListOptions struct {
	State   string // one of the State* constants
	OwnerID string
}

// List returns the sandboxes that match opts, including destroyed ones
// unless opts.State excludes them, newest first.
func (c *Client) List(ctx context.Context, opts ListOptions) ([]Sandbox, error) {
	query := url.Values{}
	if opts.State != "" {
		query.Set("state", opts.State)
	}
	if opts.OwnerID != "" {
		query.Set("owner_id", opts.OwnerID)
	}

	var list []Sandbox
	if err := c.doJSON(ctx, http.MethodGet, "/sandboxes", query, nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// Get returns one sandbox, including a destroyed one.
func (c *Client) Get(ctx context.Context, id string) (Sandbox, error) {
	var sb Sandbox
	err := c.doJSON(ctx, http.MethodGet, sandboxPath(id, ""), nil, nil, &sb)
	return sb, err
}

// Destroy destroys a sandbox. Destroying a destroyed sandbox succeeds.
func (c *Client) Destroy(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, sandboxPath(id, ""), nil, nil, nil)
}

// Extend sets the sandbox's expiry to now plus ttl, bounded by the server's
// maximum TTL, and returns the updated sandbox.
func (c *Client) Extend(ctx context.Context, id string, ttl time.Duration) (Sandbox, error) {
	body := struct {
		TTL string `json:"ttl"`
	}{TTL: ttl.String()}

	var sb Sandbox
	err := c.doJSON(ctx, http.MethodPost, sandboxPath(id, "/extend"), nil, body, &sb)
	return sb, err
}

// Logs returns up to lines of the last lines of the sandbox's console log;
// lines <= 0 returns the server's default amount.
func (c *Client) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	query := url.Values{}
	if lines > 0 {
		query.Set("lines", strconv.Itoa(lines))
	}

	var body struct {
		SandboxID string   `json:"sandbox_id"`
		Lines     []string `json:"lines"`
	}
	if err := c.doJSON(ctx, http.MethodGet, sandboxPath(id, "/logs"), query, nil, &body); err != nil {
		return nil, err
	}
	return body.Lines, nil
}

// Stats is a sample of a sandbox's resource use.
type Stats struct {
	CPUPercent       float64 `json:"cpu_percent"`
	MemoryBytes      int64   `json:"memory_bytes"`
	MemoryLimitBytes int64   `json:"memory_limit_bytes"`
	Pids             int     `json:"pids"`
}

// Stats returns a resource sample of the sandbox. Providers that cannot
// measure use return an error.
func (c *Client) Stats(ctx context.Context, id string) (Stats, error) {
	var st Stats
	err := c.doJSON(ctx, http.MethodGet, sandboxPath(id, "/stats"), nil, nil, &st)
	return st, err
}
