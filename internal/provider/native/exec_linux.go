package native

import (
	"context"
	"fmt"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// defaultWorkdir is the working directory of a request without one.
const defaultWorkdir = "/workspace"

// Exec runs req through the sandbox's agent, which creates a missing
// working directory and kills the command's whole process tree on a
// timeout or when ctx is done. A command killed by the sandbox's memory
// limit reports 137 with ExitReason "oom".
func (p *Provider) Exec(ctx context.Context, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	sb, err := p.lookup(ctx, id)
	if err != nil {
		return provider.ExecResult{}, err
	}
	if len(req.Argv) == 0 {
		return provider.ExecResult{}, fmt.Errorf("native: exec in %s: empty argv: %w", id, provider.ErrInvalidArgument)
	}
	if req.Workdir == "" {
		req.Workdir = defaultWorkdir
	}
	res, err := sb.client.Exec(ctx, req, out)
	sb.logExec(req.Argv, res, err)
	return res, sb.callError("exec", err)
}
