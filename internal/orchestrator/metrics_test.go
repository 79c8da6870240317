package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// recordedMetrics stores every call as a line such as
// "spawn fake ok" or "file fake stat error".
type recordedMetrics struct {
	mu    sync.Mutex
	calls []string
	errs  []error // the error of each observation, nil for counts
}

func (r *recordedMetrics) add(line string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, line)
	r.errs = append(r.errs, err)
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	return "error"
}

func (r *recordedMetrics) ObserveSpawn(p string, _ time.Duration, err error) {
	r.add("spawn "+p+" "+result(err), err)
}

func (r *recordedMetrics) ObserveExec(p string, _ time.Duration, err error) {
	r.add("exec "+p+" "+result(err), err)
}

func (r *recordedMetrics) ObserveFileOp(p, op string, _ time.Duration, err error) {
	r.add("file "+p+" "+op+" "+result(err), err)
}

func (r *recordedMetrics) CountReconcile(action string, n int) {
	r.add(fmt.Sprintf("reconcile %s %d", action, n), nil)
}

func (r *recordedMetrics) CountReaped(n int) {
	r.add(fmt.Sprintf("reaped %d", n), nil)
}

// take returns the calls recorded since the last take and forgets them.
func (r *recordedMetrics) take() ([]string, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls, errs := r.calls, r.errs
	r.calls, r.errs = nil, nil
	return calls, errs
}

func newMetricsEnv(t *testing.T) (*testEnv, *recordedMetrics) {
	t.Helper()
	rec := &recordedMetrics{}
	env := newEnv(t, func(o *Options) { o.Metrics = rec })
	return env, rec
}

func wantCalls(t *testing.T, rec *recordedMetrics, want ...string) []error {
	t.Helper()
	got, errs := rec.take()
	if !slices.Equal(got, want) {
		t.Errorf("metrics calls:\ngot  %q\nwant %q", got, want)
	}
	return errs
}

func TestMetricsSpawn(t *testing.T) {
	env, rec := newMetricsEnv(t)
	env.spawn(t, SpawnRequest{})
	wantCalls(t, rec, "spawn fake ok")

	env.fake.set(func(f *fakeProvider) { f.spawnErr = fmt.Errorf("no capacity: %w", provider.ErrUnavailable) })
	if _, err := env.m.Spawn(t.Context(), SpawnRequest{}); err == nil {
		t.Fatal("Spawn succeeded, want the injected failure")
	}
	errs := wantCalls(t, rec, "spawn fake error")
	if len(errs) == 1 && !errors.Is(errs[0], provider.ErrUnavailable) {
		t.Errorf("spawn error %v, want one wrapping ErrUnavailable", errs[0])
	}

	// A request rejected before admission is not a spawn.
	if _, err := env.m.Spawn(t.Context(), SpawnRequest{MemoryMB: 1 << 30}); err == nil {
		t.Fatal("Spawn above max_memory_mb succeeded")
	}
	wantCalls(t, rec)
}

func TestMetricsExec(t *testing.T) {
	env, rec := newMetricsEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	rec.take()

	tests := []struct {
		name    string
		result  provider.ExecResult
		err     error
		want    string
		wantErr error
	}{
		{"exit code is ok", provider.ExecResult{ExitCode: 3}, nil, "exec fake ok", nil},
		{"timeout", provider.ExecResult{ExitCode: 137, TimedOut: true}, nil, "exec fake error", provider.ErrExecTimeout},
		{"provider failure", provider.ExecResult{}, provider.ErrUnavailable, "exec fake error", provider.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.fake.set(func(f *fakeProvider) {
				f.execFunc = func(_ context.Context, _ provider.ExecRequest, _ provider.OutputFunc) (provider.ExecResult, error) {
					return tt.result, tt.err
				}
			})
			_, _ = env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true", Shell: true}, func(provider.Stream, []byte) {})
			errs := wantCalls(t, rec, tt.want)
			if tt.wantErr != nil && len(errs) == 1 && !errors.Is(errs[0], tt.wantErr) {
				t.Errorf("recorded error %v, want one wrapping %v", errs[0], tt.wantErr)
			}
		})
	}
}

func TestMetricsFileOps(t *testing.T) {
	env, rec := newMetricsEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	rec.take()

	files, err := env.m.Files(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	ctx := t.Context()
	_ = files.WriteFile(ctx, "a.txt", bytes.NewReader(nil), 0o644)
	_, _ = files.Stat(ctx, "a.txt")
	_, _ = files.ListDir(ctx, "/workspace")
	_ = files.Mkdir(ctx, "d", 0o755)
	_ = files.Move(ctx, "a.txt", "b.txt")
	_ = files.Chmod(ctx, "b.txt", 0o600)
	_, _ = files.Glob(ctx, "*")
	_ = files.WriteArchive(ctx, "d", bytes.NewReader(nil))
	if rc, err := files.ReadArchive(ctx, "d"); err == nil {
		rc.Close()
	}
	if rc, err := files.ReadFile(ctx, "b.txt"); err == nil {
		rc.Close()
	}
	_ = files.Remove(ctx, "b.txt", false)
	wantCalls(t, rec,
		"file fake write_file ok", "file fake stat ok", "file fake list_dir ok", "file fake mkdir ok",
		"file fake move ok", "file fake chmod ok", "file fake glob ok", "file fake write_archive ok",
		"file fake read_archive ok", "file fake read_file ok", "file fake remove ok")

	env.fake.set(func(f *fakeProvider) { f.fileErr = provider.ErrPathNotFound })
	_, _ = files.Stat(ctx, "missing")
	errs := wantCalls(t, rec, "file fake stat error")
	if len(errs) == 1 && !errors.Is(errs[0], provider.ErrPathNotFound) {
		t.Errorf("recorded error %v, want one wrapping ErrPathNotFound", errs[0])
	}

	// An invalid path never reaches the provider, so it is not timed.
	_, _ = files.Stat(ctx, "")
	wantCalls(t, rec)
}

func TestMetricsReconcileAndReap(t *testing.T) {
	env, rec := newMetricsEnv(t)

	// A record whose runtime is gone, and one left in creating.
	env.insert(t, store.Sandbox{ID: "sb-gone", State: store.StateRunning})
	env.insert(t, store.Sandbox{ID: "sb-half", State: store.StateCreating})
	if _, err := env.m.Reconcile(t.Context()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	got, _ := rec.take()
	slices.Sort(got)
	if want := []string{"reconcile cleaned 1", "reconcile gone 1"}; !slices.Equal(got, want) {
		t.Errorf("reconcile metrics: got %q, want %q", got, want)
	}

	// A pass that changes nothing reports nothing.
	if _, err := env.m.Reconcile(t.Context()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	wantCalls(t, rec)

	env.spawn(t, SpawnRequest{TTL: time.Minute})
	env.spawn(t, SpawnRequest{TTL: time.Minute})
	rec.take()
	env.clock.Advance(2 * time.Minute)
	if n, err := env.m.Reap(t.Context()); err != nil || n != 2 {
		t.Fatalf("Reap = %d, %v; want 2, nil", n, err)
	}
	if got, _ := rec.take(); !slices.Contains(got, "reaped 2") {
		t.Errorf("reap metrics: got %q, want them to include %q", got, "reaped 2")
	}
}

func TestMetricsNilDiscards(t *testing.T) {
	env := newEnv(t)
	if _, ok := env.m.metrics.(nopMetrics); !ok {
		t.Fatalf("metrics of a Manager without Options.Metrics: got %T, want nopMetrics", env.m.metrics)
	}
	sb := env.spawn(t, SpawnRequest{})
	files, err := env.m.Files(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	if strings.Contains(fmt.Sprintf("%T", files.p), "timedFiles") {
		t.Errorf("file calls are timed without a Metrics")
	}
}
