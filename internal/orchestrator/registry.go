package orchestrator

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// AutoProvider is the default provider name that picks the first usable
// provider of autoOrder at each resolution.
const AutoProvider = "auto"

// autoOrder lists the providers that AutoProvider considers, most isolated
// first. The mock provider is never picked automatically because it gives no
// isolation.
var autoOrder = []string{"docker", "native", "proot"}

// healthTimeout bounds one Health call made while resolving AutoProvider.
const healthTimeout = 5 * time.Second

// Registry holds the configured providers and resolves the default. It is
// safe for concurrent use.
type Registry struct {
	defaultName string

	mu        sync.RWMutex
	providers map[string]provider.Provider
}

// NewRegistry returns a registry whose default is defaultName: a registered
// name, or "auto" to pick the first healthy of docker, native and proot. An
// empty defaultName means "auto".
func NewRegistry(defaultName string) *Registry {
	if defaultName == "" {
		defaultName = AutoProvider
	}
	return &Registry{
		defaultName: defaultName,
		providers:   make(map[string]provider.Provider),
	}
}

// Register adds p under p.Name(). It panics when the name is empty, is
// "auto", or is already registered, because each of those is a wiring
// mistake in the caller.
func (r *Registry) Register(p provider.Provider) {
	name := p.Name()
	if name == "" || name == AutoProvider {
		panic(fmt.Sprintf("orchestrator: cannot register a provider named %q", name))
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.providers[name]; ok {
		panic(fmt.Sprintf("orchestrator: provider %q registered twice", name))
	}
	r.providers[name] = p
}

// Get returns the provider named name, or the default when name is empty.
// The name "auto" picks the first of docker, native and proot that is
// registered and healthy, and gives an error wrapping
// provider.ErrUnavailable that names what to install when none is. Unknown
// names give an error wrapping provider.ErrProviderNotFound.
func (r *Registry) Get(ctx context.Context, name string) (provider.Provider, error) {
	if name == "" {
		name = r.defaultName
	}
	if name == AutoProvider {
		return r.pickAuto(ctx)
	}

	p, ok := r.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("provider %q is not registered; registered providers: %s: %w",
			name, r.namesText(), provider.ErrProviderNotFound)
	}
	return p, nil
}

// Lookup returns the provider registered under exactly name, without
// resolving the default or "auto".
func (r *Registry) Lookup(name string) (provider.Provider, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.providers[name]
	return p, ok
}

// DefaultName returns the name of the provider that a request without a
// provider gets now, resolving "auto" with health checks.
func (r *Registry) DefaultName(ctx context.Context) (string, error) {
	p, err := r.Get(ctx, "")
	if err != nil {
		return "", err
	}
	return p.Name(), nil
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.providers))
	for name := range r.providers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// All returns the registered providers sorted by name.
func (r *Registry) All() []provider.Provider {
	names := r.Names()
	all := make([]provider.Provider, 0, len(names))
	for _, name := range names {
		if p, ok := r.Lookup(name); ok {
			all = append(all, p)
		}
	}
	return all
}

// pickAuto returns the first provider of autoOrder that is registered and
// healthy. Its error lists why each candidate was passed over.
func (r *Registry) pickAuto(ctx context.Context) (provider.Provider, error) {
	var reasons []string
	for _, name := range autoOrder {
		p, ok := r.Lookup(name)
		if !ok {
			reasons = append(reasons, name+": not registered")
			continue
		}

		hctx, cancel := context.WithTimeout(ctx, healthTimeout)
		err := p.Health(hctx)
		cancel()
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("resolve the auto provider: %w", ctx.Err())
		}
		reasons = append(reasons, name+": "+err.Error())
	}

	return nil, &noProviderError{reasons: reasons}
}

// noProviderError reports that "auto" found no usable provider. It unwraps
// to provider.ErrUnavailable.
type noProviderError struct {
	reasons []string
}

func (e *noProviderError) Error() string {
	return "no usable provider (" + strings.Join(e.reasons, "; ") + "): " +
		"install and start Docker for the docker provider, " +
		"run on Linux as root or with user namespaces for native, " +
		"or install proot; for a demo without isolation start with --default-provider mock"
}

func (e *noProviderError) Unwrap() error { return provider.ErrUnavailable }

// namesText returns the registered names for error messages.
func (r *Registry) namesText() string {
	names := r.Names()
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// errProviderGone builds the error for a record whose provider is not
// registered in this server, which happens after a restart with a different
// configuration. It wraps provider.ErrUnavailable rather than
// ErrProviderNotFound: the caller named no provider, and the fix is in the
// server's configuration.
func (r *Registry) errProviderGone(id, name string) error {
	return fmt.Errorf("sandbox %s belongs to provider %q, which is not registered in this server "+
		"(registered providers: %s); enable that provider and restart the server: %w",
		id, name, r.namesText(), provider.ErrUnavailable)
}
