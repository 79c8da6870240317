package native

import (
	"context"
	"errors"
	"os"
	"path/filepath"
)

// cleanOrphans removes what earlier runs left behind: sandbox directories
// without a state file (a spawn that did not finish) or whose init has
// exited, and cgroups under CgroupParent without a sandbox directory.
// Sandboxes that this Provider is spawning, destroying or has attached are
// left alone. Failures are logged, because the next call retries.
func (p *Provider) cleanOrphans(ctx context.Context) {
	entries, err := os.ReadDir(p.cfg.StateDir)
	if err != nil {
		p.log.Warn("list sandboxes for orphan cleanup", "error", err)
		return
	}
	dirs := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() || !validID.MatchString(e.Name()) {
			continue
		}
		dirs[e.Name()] = true
		if !p.inUse(e.Name()) {
			p.cleanDir(ctx, e.Name())
		}
	}
	if p.cgroups == nil {
		return
	}
	for _, parent := range p.cgroups.parentDirs(p.cfg.CgroupParent) {
		groups, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, g := range groups {
			id := g.Name()
			if !g.IsDir() || !validID.MatchString(id) || dirs[id] || p.inUse(id) {
				continue
			}
			p.log.Info("removing orphaned cgroup", "sandbox_id", id, "cgroup", filepath.Join(parent, id))
			if err := p.cgroups.paths(p.cfg.CgroupParent, id).remove(ctx); err != nil {
				p.log.Warn("remove orphaned cgroup", "sandbox_id", id, "error", err)
			}
		}
	}
}

// inUse reports whether this Provider is working on or holds sandbox id.
func (p *Provider) inUse(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, loading := p.loadFlight[id]
	return p.busy[id] || p.sandboxes[id] != nil || loading
}

// cleanDir removes the sandbox directory id when it is incomplete or its
// init has exited.
func (p *Provider) cleanDir(ctx context.Context, id string) {
	dir := p.sandboxDir(id)
	st, err := readState(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		st = state{ID: id}
		if p.cgroups != nil {
			st.Cgroups = p.cgroups.paths(p.cfg.CgroupParent, id)
		}
		p.log.Info("removing incomplete sandbox", "sandbox_id", id)
	case err != nil:
		p.log.Warn("read state for orphan cleanup", "sandbox_id", id, "error", err)
		return
	default:
		pidfd, err := openInit(st.Pid, st.StartTime, st.BootID)
		if err == nil {
			_ = unixClose(pidfd)
			return
		}
		if !errors.Is(err, errProcessGone) {
			p.log.Warn("check sandbox init for orphan cleanup", "sandbox_id", id, "error", err)
			return
		}
		p.log.Info("removing sandbox whose init has exited", "sandbox_id", id, "pid", st.Pid)
	}
	if err := p.removeSandbox(ctx, dir, st); err != nil {
		p.log.Warn("remove orphaned sandbox", "sandbox_id", id, "error", err)
	}
}
