package orchestrator

import (
	"context"
	"io"
	"io/fs"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// Metrics receives measurements of the manager's work. The manager calls it
// on the paths of spawns, execs and file calls, so implementations must be
// safe for concurrent use and must not block. An error argument is nil on
// success; implementations classify other errors themselves.
type Metrics interface {
	// ObserveSpawn records a spawn on provider that passed admission and
	// took d, from the stored record to running or to the failure.
	ObserveSpawn(provider string, d time.Duration, err error)

	// ObserveExec records one command on provider. err is nil when the
	// command ran, whatever its exit code, and wraps
	// provider.ErrExecTimeout when the timeout killed it.
	ObserveExec(provider string, d time.Duration, err error)

	// ObserveFileOp records one provider file call. op is one of the
	// FileOp constants. For reads, d ends when the stream is open.
	ObserveFileOp(provider, op string, d time.Duration, err error)

	// CountReconcile adds n to the reconcile actions of kind action, one
	// of the Reconcile constants.
	CountReconcile(action string, n int)

	// CountReaped adds n to the sandboxes the reaper destroyed.
	CountReaped(n int)
}

// File operations reported to Metrics.ObserveFileOp.
const (
	FileOpRead         = "read_file"
	FileOpWrite        = "write_file"
	FileOpStat         = "stat"
	FileOpListDir      = "list_dir"
	FileOpMkdir        = "mkdir"
	FileOpRemove       = "remove"
	FileOpMove         = "move"
	FileOpChmod        = "chmod"
	FileOpGlob         = "glob"
	FileOpReadArchive  = "read_archive"
	FileOpWriteArchive = "write_archive"
)

// Reconcile actions reported to Metrics.CountReconcile. Each counts the
// records or runtimes of one ReconcileReport field.
const (
	ReconcileRestored = "restored" // error records whose runtime is live again
	ReconcileGone     = "gone"     // records whose runtime no longer exists
	ReconcileCleaned  = "cleaned"  // interrupted spawns and destroys finished
	ReconcileErrored  = "errored"  // records moved to the error state
	ReconcileAdopted  = "adopted"  // runtimes without a record, now recorded
	ReconcileRemoved  = "removed"  // runtimes of destroyed records, destroyed
	ReconcileFailed   = "failed"   // actions that failed
)

// nopMetrics discards every measurement.
type nopMetrics struct{}

func (nopMetrics) ObserveSpawn(string, time.Duration, error)          {}
func (nopMetrics) ObserveExec(string, time.Duration, error)           {}
func (nopMetrics) ObserveFileOp(string, string, time.Duration, error) {}
func (nopMetrics) CountReconcile(string, int)                         {}
func (nopMetrics) CountReaped(int)                                    {}

// metricsOrNop returns mx, or a Metrics that discards everything when mx
// is nil.
func metricsOrNop(mx Metrics) Metrics {
	if mx == nil {
		return nopMetrics{}
	}
	return mx
}

// observeSpawn records the end of the admitted spawn of sb. sb.CreatedAt
// is the admission time, read from the manager's clock.
func (m *Manager) observeSpawn(sb store.Sandbox, err error) {
	m.metrics.ObserveSpawn(sb.Provider, m.now().Sub(sb.CreatedAt), err)
}

// observeExec records a provider exec that started at start. A command
// killed at its timeout is recorded as a timeout, although Exec returns
// it as a result.
func (m *Manager) observeExec(providerName string, start time.Time, res provider.ExecResult, err error) {
	if err == nil && res.TimedOut {
		err = provider.ErrExecTimeout
	}
	m.metrics.ObserveExec(providerName, m.now().Sub(start), err)
}

// countReconcile records the actions of one reconcile pass.
func (m *Manager) countReconcile(r ReconcileReport) {
	actions := []struct {
		name string
		n    int
	}{
		{ReconcileRestored, r.Restored},
		{ReconcileGone, r.Gone},
		{ReconcileCleaned, r.Cleaned},
		{ReconcileErrored, r.Errored},
		{ReconcileAdopted, r.Adopted},
		{ReconcileRemoved, r.Removed},
		{ReconcileFailed, r.Failed},
	}
	for _, a := range actions {
		if a.n > 0 {
			m.metrics.CountReconcile(a.name, a.n)
		}
	}
}

// countReaped records the sandboxes that one reaper pass destroyed.
func (m *Manager) countReaped(n int) {
	if n > 0 {
		m.metrics.CountReaped(n)
	}
}

// timeFiles returns p with its file calls timed and reported to the
// manager's Metrics. Every other method is p's own.
func (m *Manager) timeFiles(p provider.Provider) provider.Provider {
	if _, ok := m.metrics.(nopMetrics); ok {
		return p
	}
	return timedFiles{Provider: p, m: m}
}

// timedFiles is a provider whose file calls report their duration.
type timedFiles struct {
	provider.Provider
	m *Manager
}

// observe records the file call op that started at start.
func (t timedFiles) observe(op string, start time.Time, err error) {
	t.m.metrics.ObserveFileOp(t.Name(), op, t.m.now().Sub(start), err)
}

func (t timedFiles) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	start := t.m.now()
	rc, err := t.Provider.ReadFile(ctx, id, path)
	t.observe(FileOpRead, start, err)
	return rc, err
}

func (t timedFiles) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	start := t.m.now()
	err := t.Provider.WriteFile(ctx, id, path, r, mode)
	t.observe(FileOpWrite, start, err)
	return err
}

func (t timedFiles) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	start := t.m.now()
	info, err := t.Provider.Stat(ctx, id, path)
	t.observe(FileOpStat, start, err)
	return info, err
}

func (t timedFiles) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	start := t.m.now()
	list, err := t.Provider.ListDir(ctx, id, path)
	t.observe(FileOpListDir, start, err)
	return list, err
}

func (t timedFiles) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	start := t.m.now()
	err := t.Provider.Mkdir(ctx, id, path, mode)
	t.observe(FileOpMkdir, start, err)
	return err
}

func (t timedFiles) Remove(ctx context.Context, id, path string, recursive bool) error {
	start := t.m.now()
	err := t.Provider.Remove(ctx, id, path, recursive)
	t.observe(FileOpRemove, start, err)
	return err
}

func (t timedFiles) Move(ctx context.Context, id, oldPath, newPath string) error {
	start := t.m.now()
	err := t.Provider.Move(ctx, id, oldPath, newPath)
	t.observe(FileOpMove, start, err)
	return err
}

func (t timedFiles) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	start := t.m.now()
	err := t.Provider.Chmod(ctx, id, path, mode)
	t.observe(FileOpChmod, start, err)
	return err
}

func (t timedFiles) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	start := t.m.now()
	list, err := t.Provider.Glob(ctx, id, pattern)
	t.observe(FileOpGlob, start, err)
	return list, err
}

func (t timedFiles) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	start := t.m.now()
	rc, err := t.Provider.ReadArchive(ctx, id, path)
	t.observe(FileOpReadArchive, start, err)
	return rc, err
}

func (t timedFiles) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	start := t.m.now()
	err := t.Provider.WriteArchive(ctx, id, path, r)
	t.observe(FileOpWriteArchive, start, err)
	return err
}
