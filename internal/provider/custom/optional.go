package custom

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// withOptional returns p as a value whose type implements the optional
// interfaces that caps reports, and records them as p's flags. The
// conformance suite checks that the flags match the interfaces, and the
// manager discovers the interfaces by type assertion, so the set cannot be
// decided per call.
func (p *Provider) withOptional(caps provider.Capabilities) provider.Provider {
	p.optional = provider.Capabilities{Inventory: caps.Inventory, Stats: caps.Stats, Logs: caps.Logs}
	inv, stats, logs := inventoryMethods{p}, statsMethods{p}, logsMethods{p}

	switch {
	case caps.Inventory && caps.Stats && caps.Logs:
		return struct {
			*Provider
			inventoryMethods
			statsMethods
			logsMethods
		}{p, inv, stats, logs}
	case caps.Inventory && caps.Stats:
		return struct {
			*Provider
			inventoryMethods
			statsMethods
		}{p, inv, stats}
	case caps.Inventory && caps.Logs:
		return struct {
			*Provider
			inventoryMethods
			logsMethods
		}{p, inv, logs}
	case caps.Stats && caps.Logs:
		return struct {
			*Provider
			statsMethods
			logsMethods
		}{p, stats, logs}
	case caps.Inventory:
		return struct {
			*Provider
			inventoryMethods
		}{p, inv}
	case caps.Stats:
		return struct {
			*Provider
			statsMethods
		}{p, stats}
	case caps.Logs:
		return struct {
			*Provider
			logsMethods
		}{p, logs}
	}
	return p
}

// inventoryMethods implements provider.Inventory for a Provider.
type inventoryMethods struct{ p *Provider }

// ListRuntimes lists the runtimes the backend's provider created.
func (m inventoryMethods) ListRuntimes(ctx context.Context) ([]provider.RuntimeInfo, error) {
	var wire []runtimeInfo
	rq := request{op: "list runtimes", method: http.MethodGet, path: pathRuntimes}
	if err := m.p.call(ctx, rq, nil, &wire); err != nil {
		return nil, err
	}
	out := make([]provider.RuntimeInfo, len(wire))
	for i, r := range wire {
		out[i] = r.toProvider()
	}
	return out, nil
}

// statsMethods implements provider.StatsReader for a Provider.
type statsMethods struct{ p *Provider }

// Stats returns a resource sample of the sandbox from the backend.
func (m statsMethods) Stats(ctx context.Context, id string) (provider.Stats, error) {
	rq, err := sandboxRequest("stats", http.MethodGet, id, opStats)
	if err != nil {
		return provider.Stats{}, err
	}
	var stats provider.Stats
	if err := m.p.call(ctx, rq, nil, &stats); err != nil {
		return provider.Stats{}, err
	}
	return stats, nil
}

// logsMethods implements provider.LogReader for a Provider.
type logsMethods struct{ p *Provider }

// Logs returns up to the last lines lines of the sandbox's console log
// from the backend; lines <= 0 returns all of it.
func (m logsMethods) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	rq, err := sandboxRequest("logs", http.MethodGet, id, opLogs)
	if err != nil {
		return nil, err
	}
	if lines > 0 {
		rq.query = url.Values{"lines": {strconv.Itoa(lines)}}
	}
	var resp logsResponse
	if err := m.p.call(ctx, rq, nil, &resp); err != nil {
		return nil, err
	}
	return resp.Lines, nil
}
