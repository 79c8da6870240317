package orchestrator

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
)

// fakeProvider is an in-memory provider whose failures tests inject. It
// keeps a map of live runtimes, and Recover, Exec and the file calls
// return results from it like a real provider.
type fakeProvider struct {
	name string

	mu       sync.Mutex
	runtimes map[string]provider.SpawnSpec

	health error // returned by Health

	spawnErr    error         // returned by Spawn
	spawnLeaves bool          // a failing Spawn leaves its runtime behind
	spawnGate   chan struct{} // when set, Spawn waits for it to close
	spawnDelay  time.Duration // Spawn sleeps this long
	spawnSeen   chan string   // when set, receives each ID as Spawn starts
	spawnCtxErr []error       // ctx.Err() seen by each Spawn when it returned
	spawned     []string

	destroyErr    error
	destroyDelay  time.Duration
	destroyGate   chan struct{}
	destroyed     []string
	destroyActive int
	destroyMax    int

	recoverErr map[string]error // overrides the result of Recover per ID

	execFunc func(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error)
	execReqs []provider.ExecRequest

	fileErr   error
	fileCalls []string // "op path" or "op old new"
}

func newFake(name string) *fakeProvider {
	return &fakeProvider{
		name:       name,
		runtimes:   make(map[string]provider.SpawnSpec),
		recoverErr: make(map[string]error),
	}
}

func (f *fakeProvider) Name() string { return f.name }

func (f *fakeProvider) Capabilities() provider.Capabilities {
	return provider.Capabilities{Isolation: "none", Runtimes: []string{"default", "fast"}}
}

func (f *fakeProvider) Health(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *fakeProvider) Spawn(ctx context.Context, spec provider.SpawnSpec) error {
	f.mu.Lock()
	gate, delay, seen := f.spawnGate, f.spawnDelay, f.spawnSeen
	f.mu.Unlock()

	if seen != nil {
		seen <- spec.ID
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	time.Sleep(delay)

	f.mu.Lock()
	defer f.mu.Unlock()
	f.spawned = append(f.spawned, spec.ID)
	f.spawnCtxErr = append(f.spawnCtxErr, ctx.Err())
	if f.spawnErr != nil {
		if f.spawnLeaves {
			f.runtimes[spec.ID] = spec
		}
		return f.spawnErr
	}
	f.runtimes[spec.ID] = spec
	return nil
}

func (f *fakeProvider) Recover(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.recoverErr[id]; ok {
		return err
	}
	if _, ok := f.runtimes[id]; !ok {
		return fmt.Errorf("fake runtime %s: %w", id, provider.ErrSandboxNotFound)
	}
	return nil
}

func (f *fakeProvider) Destroy(ctx context.Context, id string) error {
	f.mu.Lock()
	f.destroyActive++
	f.destroyMax = max(f.destroyMax, f.destroyActive)
	delay, gate := f.destroyDelay, f.destroyGate
	f.mu.Unlock()

	time.Sleep(delay)
	if gate != nil {
		<-gate
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyActive--
	f.destroyed = append(f.destroyed, id)
	if f.destroyErr != nil {
		return f.destroyErr
	}
	delete(f.runtimes, id)
	return nil
}

func (f *fakeProvider) Exec(ctx context.Context, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	f.mu.Lock()
	_, live := f.runtimes[id]
	f.execReqs = append(f.execReqs, req)
	fn := f.execFunc
	f.mu.Unlock()

	if !live {
		return provider.ExecResult{}, fmt.Errorf("fake runtime %s: %w", id, provider.ErrSandboxNotFound)
	}
	if fn != nil {
		return fn(ctx, req, out)
	}
	out(provider.Stdout, []byte("ok\n"))
	return provider.ExecResult{ExitCode: 0, Duration: time.Millisecond}, nil
}

// fileCall records a file operation and returns the injected error, or
// ErrSandboxNotFound when the runtime does not exist.
func (f *fakeProvider) fileCall(id, op string, paths ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fileCalls = append(f.fileCalls, op+" "+strings.Join(paths, " "))
	if _, ok := f.runtimes[id]; !ok {
		return fmt.Errorf("fake runtime %s: %w", id, provider.ErrSandboxNotFound)
	}
	return f.fileErr
}

func (f *fakeProvider) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	if err := f.fileCall(id, "read", path); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("content")), nil
}

func (f *fakeProvider) WriteFile(ctx context.Context, id, path string, r io.Reader, mode fs.FileMode) error {
	return f.fileCall(id, "write", path)
}

func (f *fakeProvider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	return provider.FileInfo{Path: path}, f.fileCall(id, "stat", path)
}

func (f *fakeProvider) ListDir(ctx context.Context, id, path string) ([]provider.FileInfo, error) {
	return nil, f.fileCall(id, "list", path)
}

func (f *fakeProvider) Mkdir(ctx context.Context, id, path string, mode fs.FileMode) error {
	return f.fileCall(id, "mkdir", path)
}

func (f *fakeProvider) Remove(ctx context.Context, id, path string, recursive bool) error {
	return f.fileCall(id, "remove", path)
}

func (f *fakeProvider) Move(ctx context.Context, id, oldPath, newPath string) error {
	return f.fileCall(id, "move", oldPath, newPath)
}

func (f *fakeProvider) Chmod(ctx context.Context, id, path string, mode fs.FileMode) error {
	return f.fileCall(id, "chmod", path)
}

func (f *fakeProvider) Glob(ctx context.Context, id, pattern string) ([]provider.FileInfo, error) {
	return nil, f.fileCall(id, "glob", pattern)
}

func (f *fakeProvider) ReadArchive(ctx context.Context, id, path string) (io.ReadCloser, error) {
	if err := f.fileCall(id, "read_archive", path); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("")), nil
}

func (f *fakeProvider) WriteArchive(ctx context.Context, id, path string, r io.Reader) error {
	return f.fileCall(id, "write_archive", path)
}

// set runs change with the fake's lock held.
func (f *fakeProvider) set(change func(f *fakeProvider)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// addRuntime makes a runtime exist without a spawn, as after a restart.
func (f *fakeProvider) addRuntime(spec provider.SpawnSpec) {
	f.set(func(f *fakeProvider) { f.runtimes[spec.ID] = spec })
}

// hasRuntime reports whether the runtime of id exists.
func (f *fakeProvider) hasRuntime(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.runtimes[id]
	return ok
}

// destroyCount returns how many times Destroy was called for id.
func (f *fakeProvider) destroyCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.destroyed {
		if d == id {
			n++
		}
	}
	return n
}

// lastExec returns the last request that Exec received.
func (f *fakeProvider) lastExec(t *testing.T) provider.ExecRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.execReqs) == 0 {
		t.Fatal("provider Exec was not called")
	}
	return f.execReqs[len(f.execReqs)-1]
}

// inventoryFake adds the optional interfaces to fakeProvider: Inventory,
// LogReader and StatsReader.
type inventoryFake struct {
	*fakeProvider
	listErr error
	created time.Time
}

func (f *inventoryFake) ListRuntimes(ctx context.Context) ([]provider.RuntimeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var list []provider.RuntimeInfo
	for id, spec := range f.runtimes {
		list = append(list, provider.RuntimeInfo{
			ID:        id,
			Image:     spec.Image,
			MemoryMB:  spec.MemoryMB,
			VCPUs:     spec.VCPUs,
			OwnerID:   spec.OwnerID,
			Metadata:  spec.Metadata,
			CreatedAt: f.created,
			Running:   true,
		})
	}
	return list, nil
}

func (f *inventoryFake) Logs(ctx context.Context, id string, lines int) ([]string, error) {
	if !f.hasRuntime(id) {
		return nil, fmt.Errorf("fake runtime %s: %w", id, provider.ErrSandboxNotFound)
	}
	return []string{"booted", "ready"}, nil
}

func (f *inventoryFake) Stats(ctx context.Context, id string) (provider.Stats, error) {
	return provider.Stats{MemoryBytes: 1 << 20, Pids: 3}, nil
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testEnv is a Manager over a real SQLite store in a temporary directory,
// with a fake provider named "fake" as the default.
type testEnv struct {
	m        *Manager
	store    *sqlite.Store
	registry *Registry
	fake     *fakeProvider
	clock    *fakeClock
}

// newEnv builds a testEnv. adjust, when given, may change the options
// before the Manager is created.
func newEnv(t *testing.T, adjust ...func(*Options)) *testEnv {
	t.Helper()
	st := openStore(t, filepath.Join(t.TempDir(), "stacyvm.db"))

	env := &testEnv{
		store:    st,
		registry: NewRegistry("fake"),
		fake:     newFake("fake"),
		clock:    newClock(),
	}
	env.registry.Register(env.fake)

	opts := Options{
		Store:    st,
		Registry: env.registry,
		Limits:   config.Default().Limits,
		Manager:  config.Default().Manager,
		Logger:   testLogger(t),
		Now:      env.clock.Now,
	}
	for _, fn := range adjust {
		fn(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	env.m = m
	return env
}

// openStore opens a SQLite store at path and closes it when the test ends.
func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testLogger sends component logs to the test output, so that they show
// only for failed tests.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// spawn spawns a sandbox and fails the test on error.
func (e *testEnv) spawn(t *testing.T, req SpawnRequest) store.Sandbox {
	t.Helper()
	sb, err := e.m.Spawn(t.Context(), req)
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	return sb
}

// get reads a record from the store and fails the test on error.
func (e *testEnv) get(t *testing.T, id string) store.Sandbox {
	t.Helper()
	sb, err := e.store.GetSandbox(t.Context(), id)
	if err != nil {
		t.Fatalf("GetSandbox(%s): %v", id, err)
	}
	return sb
}

// insert stores a record directly, as a previous server process would
// have left it.
func (e *testEnv) insert(t *testing.T, sb store.Sandbox) {
	t.Helper()
	now := e.clock.Now()
	if sb.Provider == "" {
		sb.Provider = "fake"
	}
	sb.CreatedAt, sb.UpdatedAt, sb.ExpiresAt = now, now, now.Add(time.Hour)
	if sb.State == store.StateDestroyed {
		sb.DestroyedAt = now
	}
	if err := e.store.CreateSandbox(t.Context(), sb); err != nil {
		t.Fatalf("CreateSandbox(%s): %v", sb.ID, err)
	}
}

// eventTypes returns the types of the stored events of sandbox id, oldest
// first.
func (e *testEnv) eventTypes(t *testing.T, id string) []string {
	t.Helper()
	events, err := e.store.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	var types []string
	for _, ev := range events {
		if ev.SandboxID == id {
			types = append(types, ev.Type)
		}
	}
	return types
}
