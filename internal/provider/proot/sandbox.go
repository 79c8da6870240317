package proot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// sandbox is one loaded sandbox.
type sandbox struct {
	id      string
	dir     string // StateDir/<id>
	state   state
	tree    string // the image's unpacked tree, shared and read-only
	release func() // releases tree
	files   *view

	// ctx is cancelled by Destroy, which stops the running commands.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	destroyed bool
	running   sync.WaitGroup // running Exec calls

	logMu sync.Mutex // serializes console.log writes by the provider

	agentMu   sync.Mutex
	idle      []*agentConn // agents that run no command
	nextAgent int          // number of the next agent's socket
}

// Directories inside a sandbox directory: upperDir holds one directory
// per mount, and devDir is mounted at /dev.
const (
	upperDir = "upper"
	devDir   = "dev"
)

// prepare creates the directories of a new sandbox in dir, gives them to
// the sandbox's user st.UID, and opens the sandbox. The user's group has
// the same ID.
func (p *Provider) prepare(ctx context.Context, dir string, st state) (*sandbox, error) {
	uid := int(st.UID)
	if err := checkSearchable(p.cfg.StateDir, uid, uid); err != nil {
		return nil, err
	}
	if err := writeJSON(dir, userFile, userRecord{UID: st.UID}); err != nil {
		return nil, err
	}

	// Directories owned by root with the sandbox's group can be passed
	// through by the sandbox's user only. Mount directories belong to the
	// user, as they would in a container.
	dirs := []struct {
		path      string
		mode      fs.FileMode
		userOwned bool
	}{
		{dir, 0o710, false},
		{filepath.Join(dir, upperDir), 0o710, false},
		{filepath.Join(dir, upperDir, "workspace"), 0o755, true},
		{filepath.Join(dir, upperDir, "tmp"), 0o1777, true},
		{filepath.Join(dir, upperDir, "home"), 0o755, true},
		{runDir(p.cfg.StateDir, st.UID), 0o700, true},
	}
	for _, d := range dirs {
		owner := 0
		if d.userOwned {
			owner = uid
		}
		if err := makeDir(d.path, d.mode, owner, uid); err != nil {
			return nil, err
		}
	}
	if err := makeDevDir(filepath.Join(dir, devDir), uid); err != nil {
		return nil, err
	}
	if err := touch(filepath.Join(runDir(p.cfg.StateDir, st.UID), agent.BinaryName)); err != nil {
		return nil, err
	}
	return p.open(ctx, dir, st)
}

// touch creates an empty file at path unless it exists. Files made this
// way are the targets that PRoot binds host files over; PRoot would create
// missing ones itself, but with mode 0.
func touch(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// makeDir creates dir unless it exists, and gives it exactly mode, owner
// uid and group gid.
func makeDir(dir string, mode fs.FileMode, uid, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// open acquires the image tree of the sandbox in dir and opens its file
// view.
func (p *Provider) open(ctx context.Context, dir string, st state) (sb *sandbox, err error) {
	tree, release, err := p.cfg.Images.RootFS(ctx, st.Image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", st.Image, err)
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	uid := int(st.UID)
	if err := checkSearchable(tree, uid, uid); err != nil {
		return nil, err
	}
	files, err := openView(tree, filepath.Join(dir, upperDir), &owner{uid: uid, gid: uid})
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	return &sandbox{
		id:      st.ID,
		dir:     dir,
		state:   st,
		tree:    tree,
		release: release,
		files:   files,
		ctx:     ctx,
		cancel:  cancel,
	}, nil
}

// checkSearchable returns an error wrapping ErrUnavailable unless the
// user uid with group gid may search every directory from "/" down to
// dir, which PRoot needs to reach the image tree and the sandbox's
// directories as that user. The error names the directory to fix.
func checkSearchable(dir string, uid, gid int) error {
	dir = filepath.Clean(dir)
	for p := dir; ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%w: %w", provider.ErrUnavailable, err)
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		mode := info.Mode().Perm()
		searchable := mode&0o001 != 0 ||
			(ok && int(st.Gid) == gid && mode&0o010 != 0) ||
			(ok && int(st.Uid) == uid && mode&0o100 != 0)
		if !searchable {
			return fmt.Errorf("directory %s (mode %#o) cannot be searched by the sandbox users, which PRoot needs to reach %s; "+
				"run `chmod o+x %s`: %w", p, mode, dir, p, provider.ErrUnavailable)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// begin registers a running Exec. It returns false once the sandbox is
// destroyed.
func (sb *sandbox) begin() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.destroyed {
		return false
	}
	sb.running.Add(1)
	return true
}

func (sb *sandbox) isDestroyed() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.destroyed
}

// stop marks the sandbox destroyed, cancels its running commands and waits
// for their Exec calls to return, or for ctx.
func (sb *sandbox) stop(ctx context.Context) error {
	sb.mu.Lock()
	sb.destroyed = true
	sb.mu.Unlock()
	sb.cancel()

	done := make(chan struct{})
	go func() {
		sb.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for running commands: %w", ctx.Err())
	}
}

// close releases what the sandbox holds in this process: the connections
// to its agents, the file view and the image tree.
func (sb *sandbox) close() {
	sb.cancel()
	sb.closeAgents()
	sb.files.close()
	sb.release()
}

// reserveUID picks the lowest user ID of the configured range that no
// sandbox uses, in this process or on disk, and that runs no process, and
// reserves it for id. The process check keeps a second server whose range
// overlaps from taking the user of a sandbox that is running.
func (p *Provider) reserveUID(id string) (uint32, error) {
	used, err := p.uidsOnDisk()
	if err != nil {
		return 0, fmt.Errorf("proot: find a free user ID: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid := range p.uids {
		used[uid] = true
	}
	for i := range p.cfg.UIDCount {
		uid := uint32(p.cfg.UIDStart + i)
		if !used[uid] && !userRuns(uid) {
			p.uids[uid] = id
			return uid, nil
		}
	}
	return 0, fmt.Errorf("proot: all %d user IDs from %d are in use by sandboxes: %w",
		p.cfg.UIDCount, p.cfg.UIDStart, &provider.LimitError{Limit: "providers.proot.uid_count", Value: fmt.Sprint(p.cfg.UIDCount)})
}

func (p *Provider) releaseUID(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.uids, uid)
}

// uidsOnDisk returns the user IDs recorded by every sandbox directory,
// complete or not, and those that name a directory under run/.
func (p *Provider) uidsOnDisk() (map[uint32]bool, error) {
	used := make(map[uint32]bool)
	entries, err := os.ReadDir(p.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() || !validID.MatchString(e.Name()) {
			continue
		}
		if uid, ok := recordedUID(filepath.Join(p.cfg.StateDir, e.Name())); ok {
			used[uid] = true
		}
	}
	runs, err := os.ReadDir(filepath.Join(p.cfg.StateDir, "run"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range runs {
		var uid uint32
		if _, err := fmt.Sscan(strings.TrimSpace(e.Name()), &uid); err == nil {
			used[uid] = true
		}
	}
	return used, nil
}
