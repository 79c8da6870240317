//go:build !linux

package native

import (
	"context"
	"fmt"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Provider is the native provider. On this operating system every call
// fails with ErrUnavailable, because native sandboxes are built from Linux
// namespaces and cgroups.
type Provider struct{}

var _ provider.Provider = (*Provider)(nil)

// errNeedsLinux is the error of every call.
var errNeedsLinux = fmt.Errorf("native: %w: native sandboxes need Linux namespaces and cgroups; use the docker provider on this system", provider.ErrUnavailable)

// New returns a provider whose Health reports that it needs Linux.
func New(cfg Config) (*Provider, error) {
	if err := cfg.withDefaults().Validate(); err != nil {
		return nil, err
	}
	return &Provider{}, nil
}

// Name returns "native".
func (p *Provider) Name() string { return Name }

// Capabilities describes the provider.
func (p *Provider) Capabilities() provider.Capabilities {
	return provider.Capabilities{
		Isolation:   "namespaces",
		Isolated:    true,
		Description: "Runs each sandbox in its own Linux namespaces and cgroups; available on Linux only.",
	}
}

// Health reports that the provider needs Linux.
func (p *Provider) Health(context.Context) error { return errNeedsLinux }

// Spawn fails: the provider needs Linux.
func (p *Provider) Spawn(context.Context, provider.SpawnSpec) error { return errNeedsLinux }

// Recover fails: the provider needs Linux.
func (p *Provider) Recover(context.Context, string) error { return errNeedsLinux }

// Destroy returns nil: no sandbox can exist.
func (p *Provider) Destroy(context.Context, string) error { return nil }

// Exec fails: the provider needs Linux.
func (p *Provider) Exec(context.Context, string, provider.ExecRequest, provider.OutputFunc) (provider.ExecResult, error) {
	return provider.ExecResult{}, errNeedsLinux
}

// ReadFile fails: the provider needs Linux.
func (p *Provider) ReadFile(context.Context, string, string) (io.ReadCloser, error) {
	return nil, errNeedsLinux
}

// WriteFile fails: the provider needs Linux.
func (p *Provider) WriteFile(context.Context, string, string, io.Reader, fs.FileMode) error {
	return errNeedsLinux
}

// Stat fails: the provider needs Linux.
func (p *Provider) Stat(context.Context, string, string) (provider.FileInfo, error) {
	return provider.FileInfo{}, errNeedsLinux
}

// ListDir fails: the provider needs Linux.
func (p *Provider) ListDir(context.Context, string, string) ([]provider.FileInfo, error) {
	return nil, errNeedsLinux
}

// Mkdir fails: the provider needs Linux.
func (p *Provider) Mkdir(context.Context, string, string, fs.FileMode) error { return errNeedsLinux }

// Remove fails: the provider needs Linux.
func (p *Provider) Remove(context.Context, string, string, bool) error { return errNeedsLinux }

// Move fails: the provider needs Linux.
func (p *Provider) Move(context.Context, string, string, string) error { return errNeedsLinux }

// Chmod fails: the provider needs Linux.
func (p *Provider) Chmod(context.Context, string, string, fs.FileMode) error { return errNeedsLinux }

// Glob fails: the provider needs Linux.
func (p *Provider) Glob(context.Context, string, string) ([]provider.FileInfo, error) {
	return nil, errNeedsLinux
}

// ReadArchive fails: the provider needs Linux.
func (p *Provider) ReadArchive(context.Context, string, string) (io.ReadCloser, error) {
	return nil, errNeedsLinux
}

// WriteArchive fails: the provider needs Linux.
func (p *Provider) WriteArchive(context.Context, string, string, io.Reader) error {
	return errNeedsLinux
}
