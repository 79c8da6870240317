package docker

import (
	"context"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// The file methods call the sandbox's agent, which resolves paths inside
// the container's root file system.

// withAgent runs call with the agent client of sandbox id and refines its
// error with callError.
func withAgent[T any](ctx context.Context, p *Provider, id, op string, call func(*agent.Client) (T, error)) (T, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		var zero T
		return zero, err
	}
	result, err := call(sb.client)
	if err != nil {
		return result, p.callError(ctx, sb, op, err)
	}
	return result, nil
}

// withAgentErr is withAgent for calls that return only an error.
func withAgentErr(ctx context.Context, p *Provider, id, op string, call func(*agent.Client) error) error {
	_, err := withAgent(ctx, p, id, op, func(c *agent.Client) (struct{}, error) { return struct{}{}, call(c) })
	return err
}

func (p *Provider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return withAgent(ctx, p, id, "read", func(c *agent.Client) (io.ReadCloser, error) { return c.ReadFile(ctx, path) })
}

func (p *Provider) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	return withAgentErr(ctx, p, id, "write", func(c *agent.Client) error { return c.WriteFile(ctx, path, r, mode) })
}

func (p *Provider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	return withAgent(ctx, p, id, "stat", func(c *agent.Client) (provider.FileInfo, error) { return c.Stat(ctx, path) })
}

func (p *Provider) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	return withAgent(ctx, p, id, "list", func(c *agent.Client) ([]provider.FileInfo, error) { return c.ListDir(ctx, path) })
}

func (p *Provider) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	return withAgentErr(ctx, p, id, "mkdir", func(c *agent.Client) error { return c.Mkdir(ctx, path, mode) })
}

func (p *Provider) Remove(ctx context.Context, id, path string, recursive bool) error {
	return withAgentErr(ctx, p, id, "remove", func(c *agent.Client) error { return c.Remove(ctx, path, recursive) })
}

func (p *Provider) Move(ctx context.Context, id, oldPath, newPath string) error {
	return withAgentErr(ctx, p, id, "move", func(c *agent.Client) error { return c.Move(ctx, oldPath, newPath) })
}

func (p *Provider) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	return withAgentErr(ctx, p, id, "chmod", func(c *agent.Client) error { return c.Chmod(ctx, path, mode) })
}

func (p *Provider) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	return withAgent(ctx, p, id, "glob", func(c *agent.Client) ([]provider.FileInfo, error) { return c.Glob(ctx, pattern) })
}

func (p *Provider) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return withAgent(ctx, p, id, "read archive", func(c *agent.Client) (io.ReadCloser, error) { return c.ReadArchive(ctx, path) })
}

func (p *Provider) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	return withAgentErr(ctx, p, id, "write archive", func(c *agent.Client) error { return c.WriteArchive(ctx, path, r) })
}
