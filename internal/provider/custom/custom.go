package custom

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Provider is the client side of the protocol: a provider.Provider whose
// calls go to a provider server at Config.BaseURL. It is safe for
// concurrent use.
//
// The optional interfaces (provider.Inventory, provider.StatsReader,
// provider.LogReader) are those the backend reported when New ran, so New
// returns a value of a type that implements exactly those.
type Provider struct {
	cfg  Config
	base string // Config.BaseURL without a trailing slash; request paths are appended to it

	fast *http.Transport // calls bounded by cfg.ResponseHeaderTimeout
	slow *http.Transport // Spawn and Destroy

	optional provider.Capabilities // Inventory, Stats and Logs as implemented

	mu      sync.Mutex
	backend versionInfo // from the last successful handshake
	known   bool        // backend is set
}

var _ provider.Provider = (*Provider)(nil)

// New returns a client for the provider server at cfg.BaseURL. It calls the
// backend once, within ctx, to learn its capabilities. When the backend
// cannot be reached then, New logs a warning and still returns a provider,
// without the optional interfaces. Its Health returns the cause until the
// backend responds. New returns an error only for an invalid cfg.
//
// NOTE: the optional interfaces are fixed for the life of the returned
// value, so a backend that was unreachable at start, or that gains
// inventory, stats or logs later, gets them only after a restart of
// StacyVM. The description from Capabilities then mentions it.
func New(ctx context.Context, cfg Config) (provider.Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	baseURL, _ := parseBaseURL(cfg.BaseURL)
	p := &Provider{cfg: cfg, base: baseURL.String()}
	p.fast, p.slow = newTransports(cfg)

	info, err := p.handshake(ctx)
	if err != nil {
		cfg.Logger.Warn("custom provider backend unreachable at start; inventory, stats and logs stay off until a restart",
			"provider", Name, "base_url", p.base, "error", err)
		return p, nil
	}
	return p.withOptional(info.Capabilities), nil
}

// Close closes idle connections to the backend. Calls in progress are not
// affected.
func (p *Provider) Close() error {
	p.fast.CloseIdleConnections()
	p.slow.CloseIdleConnections()
	return nil
}

// Name returns "custom".
func (p *Provider) Name() string { return Name }

// Capabilities returns what the backend reported at the last successful
// handshake (New or Health), with the Inventory, Stats and Logs flags of
// the interfaces this value implements.
func (p *Provider) Capabilities() provider.Capabilities {
	p.mu.Lock()
	info, known := p.backend, p.known
	p.mu.Unlock()

	caps := info.Capabilities
	caps.Runtimes = slices.Clone(caps.Runtimes)
	caps.Inventory, caps.Stats, caps.Logs = p.optional.Inventory, p.optional.Stats, p.optional.Logs
	if !known {
		caps.Isolation = "unknown"
		caps.Description = fmt.Sprintf("Forwards calls to the provider server at %s, which has not responded yet.", p.base)
		return caps
	}
	caps.Description = fmt.Sprintf("%s Served by the %s provider at %s.", info.Capabilities.Description, info.Provider, p.base)
	if missing := info.Capabilities.Inventory && !caps.Inventory || info.Capabilities.Stats && !caps.Stats ||
		info.Capabilities.Logs && !caps.Logs; missing {
		caps.Description += " Restart StacyVM to use the backend's inventory, stats or logs, which were not reported at start."
	}
	return caps
}

// handshake requests the backend's version, checks its protocol and
// records its capabilities.
func (p *Provider) handshake(ctx context.Context) (versionInfo, error) {
	var info versionInfo
	rq := request{op: "version", method: http.MethodGet, path: pathVersion}
	if err := p.call(ctx, rq, nil, &info); err != nil {
		return versionInfo{}, err
	}
	if info.Protocol != ProtocolVersion {
		return versionInfo{}, p.unavailable("version", incompatible(fmt.Sprint(info.Protocol)))
	}
	p.mu.Lock()
	p.backend, p.known = info, true
	p.mu.Unlock()
	return info, nil
}

// Health checks the backend's protocol version and then the health of the
// provider behind it. Every failure matches provider.ErrUnavailable and
// names the backend's URL.
func (p *Provider) Health(ctx context.Context) error {
	if _, err := p.handshake(ctx); err != nil {
		return err
	}
	return p.call(ctx, request{op: "health", method: http.MethodGet, path: pathHealth}, nil, nil)
}

// Spawn creates the sandbox on the backend. Canceling ctx cancels the
// backend's spawn, which then leaves nothing behind.
func (p *Provider) Spawn(ctx context.Context, spec provider.SpawnSpec) error {
	rq := request{op: "spawn", method: http.MethodPost, path: pathSpawn, slow: true}
	return p.call(ctx, rq, toSpawnRequest(spec), nil)
}

// Recover checks on the backend that the sandbox's runtime is live.
func (p *Provider) Recover(ctx context.Context, id string) error {
	rq, err := sandboxRequest("recover", http.MethodPost, id, opRecover)
	if err != nil {
		return err
	}
	return p.call(ctx, rq, nil, nil)
}

// Destroy destroys the sandbox on the backend. An unknown ID gives nil.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	rq, err := sandboxRequest("destroy", http.MethodDelete, id, "")
	if err != nil {
		return nil // no sandbox can have this ID
	}
	rq.slow = true
	return p.call(ctx, rq, nil, nil)
}

// sandboxRequest returns a request for the operation at suffix of sandbox
// id. The ID is path-escaped, and the IDs that an HTTP server would clean
// out of a path ("", "." and "..") are rejected with ErrSandboxNotFound,
// so that no ID reaches another route.
func sandboxRequest(op, method, id, suffix string) (request, error) {
	if id == "" || id == "." || id == ".." {
		return request{}, fmt.Errorf("custom provider: %s: sandbox %q: %w", op, id, provider.ErrSandboxNotFound)
	}
	return request{op: op, method: method, path: pathSpawn + "/" + url.PathEscape(id) + suffix}, nil
}
