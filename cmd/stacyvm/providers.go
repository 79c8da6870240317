package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/custom"
	"github.com/stacyvm/stacyvm/internal/provider/docker"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
	"github.com/stacyvm/stacyvm/internal/provider/native"
	"github.com/stacyvm/stacyvm/internal/provider/proot"
)

// providerFactory constructs one provider from the server configuration
// and the provider's own section, cfg.Providers[name], which is nil when
// the configuration has none.
type providerFactory struct {
	name  string
	build func(cfg config.Config, settings map[string]any) (provider.Provider, error)

	// buildWithDeps, when set, is called instead of build. It is for
	// providers that need server components, such as the image store.
	buildWithDeps func(cfg config.Config, settings map[string]any, deps providerDeps) (provider.Provider, error)
}

// providerDeps are the server components that serve opens before the
// providers and passes to every buildWithDeps.
type providerDeps struct {
	// Images is the image store at cfg.ImageDir(). The native and PRoot
	// providers unpack sandboxes from it with RootFS. serve closes it
	// after the manager, so it outlives every provider call.
	Images *image.Store

	// Logger is the server's logger.
	Logger *slog.Logger
}

// providerFactories lists every provider that serve can register, in the
// order they are constructed.
//
// To add a provider, append its factory here. A provider that needs the
// image store or the logger sets buildWithDeps instead of build. A factory
// decodes its settings and leaves checks of things that change at run time
// to Health.
// It returns an error only when the provider cannot exist on this host or
// its settings are invalid. Serve then logs a warning and goes on without
// the provider.
var providerFactories = []providerFactory{
	{name: "mock", build: buildMock},
	{name: "docker", buildWithDeps: buildDocker},
	{name: "native", buildWithDeps: buildNative},
	{name: "custom", buildWithDeps: buildCustom},
	{name: "proot", buildWithDeps: buildProot},
	// TODO: register docker, microvm and proot here once
	// their packages exist.
}

// buildProot constructs the PRoot provider, which keeps its sandboxes
// under DataDir/providers/proot and runs them from the image store.
// Without a providers.proot section it does so only when a proot binary is
// in PATH.
func buildProot(cfg config.Config, settings map[string]any, deps providerDeps) (provider.Provider, error) {
	pc := proot.Config{
		StateDir: filepath.Join(cfg.DataDir, "providers", "proot"),
		Images:   deps.Images,
		Logger:   deps.Logger,
	}
	if err := pc.ParseSettings(settings); err != nil {
		return nil, err
	}
	if settings == nil {
		if _, err := exec.LookPath(proot.DefaultBinary); err != nil {
			return nil, fmt.Errorf("proot is not installed; install it with `apt-get install proot` to use the proot provider: %w", err)
		}
	}
	return proot.New(pc)
}

// buildNative constructs the native provider, which keeps its sandboxes
// under DataDir/providers/native and unpacks their images from the image
// store. Its Health reports what the host lacks, such as root.
func buildNative(cfg config.Config, settings map[string]any, deps providerDeps) (provider.Provider, error) {
	nc := native.Config{
		StateDir: filepath.Join(cfg.DataDir, "providers", "native"),
		Images:   deps.Images,
		Logger:   deps.Logger,
	}
	if err := nc.ParseSettings(settings); err != nil {
		return nil, err
	}
	return native.New(nc)
}

// buildMock constructs the mock provider, which keeps each sandbox in a
// host directory under DataDir/providers/mock and isolates nothing.
func buildMock(cfg config.Config, _ map[string]any) (provider.Provider, error) {
	return mock.New(mock.Config{Root: filepath.Join(cfg.DataDir, "providers", "mock")})
}

// buildDocker constructs the docker provider. Without a providers.docker
// section it does so only when a Docker engine responds at DOCKER_HOST or
// the default socket.
func buildDocker(cfg config.Config, settings map[string]any, deps providerDeps) (provider.Provider, error) {
	p, err := docker.ForServer(settings, cfg.DataDir, os.Getenv("DOCKER_HOST"), deps.Logger)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// customHandshakeTimeout bounds the first call to the custom provider's
// backend at start, which learns the backend's capabilities.
const customHandshakeTimeout = 5 * time.Second

// buildCustom constructs the custom provider, a client of a provider
// server, when providers.custom.base_url is set. A backend that cannot be
// reached now does not stop the provider from being registered.
func buildCustom(_ config.Config, settings map[string]any, deps providerDeps) (provider.Provider, error) {
	if len(settings) == 0 {
		return nil, errNotConfigured
	}
	cfg, err := custom.ParseSettings(settings)
	if err != nil {
		return nil, err
	}
	cfg.Logger = deps.Logger
	ctx, cancel := context.WithTimeout(context.Background(), customHandshakeTimeout)
	defer cancel()
	return custom.New(ctx, cfg)
}

// errNotConfigured is returned by a factory whose provider works only with
// settings that the configuration does not have. It is not worth a warning.
var errNotConfigured = errors.New("not configured")

// registerProviders constructs every provider and registers those that
// could be built.
func registerProviders(reg *orchestrator.Registry, cfg config.Config, deps providerDeps, log *slog.Logger) {
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
		var (
			p   provider.Provider
			err error
		)
		if f.buildWithDeps != nil {
			p, err = f.buildWithDeps(cfg, cfg.Providers[f.name], deps)
		} else {
			p, err = f.build(cfg, cfg.Providers[f.name])
		}
		if errors.Is(err, errNotConfigured) {
			log.Debug("provider not configured", "provider", f.name)
			continue
		}
		if err != nil {
			log.Warn("provider not available", "provider", f.name, "error", err)
			continue
		}
		reg.Register(p)
		log.Debug("provider registered", "provider", f.name)
	}
}
