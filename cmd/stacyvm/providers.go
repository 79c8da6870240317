package main

import (
	"log/slog"
	"path/filepath"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
)

// providerFactory constructs one provider from the server configuration
// and the provider's own section, cfg.Providers[name], which is nil when
// the configuration has none.
type providerFactory struct {
	name  string
	build func(cfg config.Config, settings map[string]any) (provider.Provider, error)
}

// providerFactories lists every provider that serve can register, in the
// order they are constructed.
//
// To add a provider, append its factory here. A factory decodes its
// settings and leaves checks of things that change at run time to Health.
// It returns an error only when the provider cannot exist on this host or
// its settings are invalid. Serve then logs a warning and goes on without
// the provider.
var providerFactories = []providerFactory{
	{name: "mock", build: buildMock},
	// TODO: register docker, native, microvm, proot and custom here once
	// their packages exist.
}

// buildMock constructs the mock provider, which keeps each sandbox in a
// host directory under DataDir/providers/mock and isolates nothing.
func buildMock(cfg config.Config, _ map[string]any) (provider.Provider, error) {
	return mock.New(mock.Config{Root: filepath.Join(cfg.DataDir, "providers", "mock")})
}

// registerProviders constructs every provider and registers those that
// could be built.
func registerProviders(reg *orchestrator.Registry, cfg config.Config, log *slog.Logger) {
	known := make(map[string]bool, len(providerFactories))
	for _, f := range providerFactories {
		known[f.name] = true
	}
	for name := range cfg.Providers {
		if !known[name] {
			log.Warn("configuration has settings for an unknown provider; check the name under providers",
				"provider", name)
		}
	}

	for _, f := range providerFactories {
		p, err := f.build(cfg, cfg.Providers[f.name])
		if err != nil {
			log.Warn("provider not available", "provider", f.name, "error", err)
			continue
		}
		reg.Register(p)
		log.Debug("provider registered", "provider", f.name)
	}
}
