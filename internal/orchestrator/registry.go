package orchestrator

import (
	"context"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Registry holds the configured providers and resolves the default.
type Registry struct{}

// NewRegistry returns a registry whose default is defaultName: a registered
// name, or "auto" to pick the first healthy of docker, native and proot.
func NewRegistry(defaultName string) *Registry { return &Registry{} }

// Register adds p under p.Name().
func (r *Registry) Register(p provider.Provider) {}

// Get returns the provider named name, or the default when name is empty.
// Unknown names give an error wrapping provider.ErrProviderNotFound.
func (r *Registry) Get(ctx context.Context, name string) (provider.Provider, error) {
	return nil, errTODO
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string { return nil }
