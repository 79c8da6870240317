package orchestrator

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

func TestDestroyIdempotent(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})

	for i := range 2 {
		if err := env.m.Destroy(t.Context(), sb.ID); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}

	got := env.get(t, sb.ID)
	if got.State != store.StateDestroyed {
		t.Errorf("state = %s, want destroyed", got.State)
	}
	if !got.DestroyedAt.Equal(env.clock.Now()) {
		t.Errorf("DestroyedAt = %s, want %s", got.DestroyedAt, env.clock.Now())
	}
	if env.fake.hasRuntime(sb.ID) {
		t.Error("runtime still exists after Destroy")
	}
	if n := env.fake.destroyCount(sb.ID); n != 1 {
		t.Errorf("provider Destroy calls = %d, want 1", n)
	}
	want := []string{EventCreated, EventRunning, EventDestroyed}
	if got := env.eventTypes(t, sb.ID); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestDestroyUnknown(t *testing.T) {
	env := newEnv(t)
	err := env.m.Destroy(t.Context(), "sb-doesnotexist")
	if !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Fatalf("error = %v, want ErrSandboxNotFound", err)
	}
	if !strings.Contains(err.Error(), "sb-doesnotexist") {
		t.Errorf("message %q should name the ID", err)
	}
}

func TestGetReturnsDestroyed(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	if err := env.m.Destroy(t.Context(), sb.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	got, err := env.m.Get(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Get of a destroyed sandbox: %v", err)
	}
	if got.State != store.StateDestroyed {
		t.Errorf("state = %s, want destroyed", got.State)
	}
}

func TestCallsAfterDestroy(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	if err := env.m.Destroy(t.Context(), sb.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}

	calls := map[string]func() error{
		"exec": func() error {
			_, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true"}, discard)
			return err
		},
		"files": func() error {
			_, err := env.m.Files(t.Context(), sb.ID)
			return err
		},
		"extend": func() error {
			_, err := env.m.Extend(t.Context(), sb.ID, time.Minute)
			return err
		},
		"logs": func() error {
			_, err := env.m.Logs(t.Context(), sb.ID, 10)
			return err
		},
		"stats": func() error {
			_, err := env.m.Stats(t.Context(), sb.ID)
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, provider.ErrSandboxDestroyed) {
				t.Fatalf("error = %v, want ErrSandboxDestroyed", err)
			}
			if !strings.Contains(err.Error(), sb.ID+" was destroyed at ") {
				t.Errorf("message %q should say when the sandbox was destroyed", err)
			}
		})
	}
}

func TestDestroyProviderFailure(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	env.fake.set(func(f *fakeProvider) { f.destroyErr = errors.New("engine not responding") })

	err := env.m.Destroy(t.Context(), sb.ID)
	if err == nil || !strings.Contains(err.Error(), "engine not responding") {
		t.Fatalf("error = %v, want the provider's cause", err)
	}
	got := env.get(t, sb.ID)
	if got.State != store.StateError {
		t.Errorf("state = %s, want error", got.State)
	}
	if !strings.Contains(got.Error, "engine not responding") {
		t.Errorf("record error = %q, want the cause", got.Error)
	}

	env.fake.set(func(f *fakeProvider) { f.destroyErr = nil })
	if err := env.m.Destroy(t.Context(), sb.ID); err != nil {
		t.Fatalf("retried Destroy: %v", err)
	}
	got = env.get(t, sb.ID)
	if got.State != store.StateDestroyed || got.Error != "" {
		t.Errorf("after retry: state %s error %q, want destroyed with no error", got.State, got.Error)
	}
}

func TestDestroyConcurrentCallsShareOneDestroy(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	env.fake.set(func(f *fakeProvider) { f.destroyDelay = 50 * time.Millisecond })

	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { errs[i] = env.m.Destroy(t.Context(), sb.ID) })
	}
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("Destroy #%d: %v", i, err)
		}
	}
	if n := env.fake.destroyCount(sb.ID); n != 1 {
		t.Errorf("provider Destroy calls = %d, want 1", n)
	}
	events := env.eventTypes(t, sb.ID)
	if n := countOf(events, EventDestroyed); n != 1 {
		t.Errorf("sandbox.destroyed events = %d, want 1", n)
	}
}

func TestDestroyWaitsForSpawn(t *testing.T) {
	env := newEnv(t)
	gate := make(chan struct{})
	seen := make(chan string, 1)
	env.fake.spawnGate, env.fake.spawnSeen = gate, seen

	spawnErr := make(chan error, 1)
	go func() {
		_, err := env.m.Spawn(t.Context(), SpawnRequest{})
		spawnErr <- err
	}()
	id := <-seen

	destroyErr := make(chan error, 1)
	go func() { destroyErr <- env.m.Destroy(t.Context(), id) }()

	select {
	case err := <-destroyErr:
		t.Fatalf("Destroy returned %v before the spawn finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)

	if err := <-spawnErr; err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	if err := <-destroyErr; err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if got := env.get(t, id); got.State != store.StateDestroyed {
		t.Errorf("state = %s, want destroyed", got.State)
	}
	if env.fake.hasRuntime(id) {
		t.Error("runtime still exists")
	}
}

func TestDestroyUnregisteredProvider(t *testing.T) {
	env := newEnv(t)
	env.insert(t, store.Sandbox{ID: "sb-orphan", State: store.StateRunning, Provider: "docker"})

	err := env.m.Destroy(t.Context(), "sb-orphan")
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("error = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), `"docker"`) {
		t.Errorf("message %q should name the provider", err)
	}
	if got := env.get(t, "sb-orphan"); got.State != store.StateError {
		t.Errorf("state = %s, want error so that the runtime is not forgotten", got.State)
	}
}

func TestNotRunningStates(t *testing.T) {
	env := newEnv(t)
	env.insert(t, store.Sandbox{ID: "sb-broken", State: store.StateError, Error: "engine down"})

	gate := make(chan struct{})
	seen := make(chan string, 1)
	env.fake.spawnGate, env.fake.spawnSeen = gate, seen
	spawnDone := make(chan struct{})
	go func() {
		defer close(spawnDone)
		env.m.Spawn(t.Context(), SpawnRequest{})
	}()
	creating := <-seen
	t.Cleanup(func() {
		close(gate)
		<-spawnDone
	})

	for id, state := range map[string]string{creating: "creating", "sb-broken": "error"} {
		_, err := env.m.Exec(t.Context(), id, ExecRequest{Command: "true"}, discard)
		if !errors.Is(err, ErrNotRunning) {
			t.Errorf("%s: error = %v, want ErrNotRunning", state, err)
			continue
		}
		if !strings.Contains(err.Error(), state) {
			t.Errorf("%s: message %q should name the state", state, err)
		}
	}
}

func TestExtend(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	env.clock.Advance(10 * time.Minute)

	got, err := env.m.Extend(t.Context(), sb.ID, 2*time.Hour)
	if err != nil {
		t.Fatalf("Extend: %v", err)
	}
	want := env.clock.Now().Add(2 * time.Hour)
	if !got.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %s, want now + 2h = %s", got.ExpiresAt, want)
	}
	if stored := env.get(t, sb.ID); !stored.ExpiresAt.Equal(want) {
		t.Errorf("stored ExpiresAt = %s, want %s", stored.ExpiresAt, want)
	}

	_, err = env.m.Extend(t.Context(), sb.ID, 0)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "ttl" {
		t.Errorf("Extend(0): error = %v, want a FieldError naming ttl", err)
	}
	_, err = env.m.Extend(t.Context(), sb.ID, 48*time.Hour)
	var le *provider.LimitError
	if !errors.As(err, &le) || le.Limit != "max_ttl" {
		t.Errorf("Extend(48h): error = %v, want LimitError max_ttl", err)
	}
}

func TestLogsAndStats(t *testing.T) {
	env := newEnv(t)
	full := &inventoryFake{fakeProvider: newFake("full")}
	env.registry.Register(full)

	plain := env.spawn(t, SpawnRequest{})
	if _, err := env.m.Logs(t.Context(), plain.ID, 0); !errors.Is(err, provider.ErrNotImplemented) {
		t.Errorf("Logs on a provider without logs: error = %v, want ErrNotImplemented", err)
	}
	if _, err := env.m.Stats(t.Context(), plain.ID); !errors.Is(err, provider.ErrNotImplemented) {
		t.Errorf("Stats on a provider without stats: error = %v, want ErrNotImplemented", err)
	}

	sb := env.spawn(t, SpawnRequest{Provider: "full"})
	lines, err := env.m.Logs(t.Context(), sb.ID, 0)
	if err != nil || !slices.Equal(lines, []string{"booted", "ready"}) {
		t.Errorf("Logs = %v, %v; want the provider's lines", lines, err)
	}
	stats, err := env.m.Stats(t.Context(), sb.ID)
	if err != nil || stats.Pids != 3 {
		t.Errorf("Stats = %+v, %v; want the provider's sample", stats, err)
	}
}

func TestReadyReportsDefaultProviderHealth(t *testing.T) {
	env := newEnv(t)
	if err := env.m.Ready(t.Context()); err != nil {
		t.Fatalf("Ready with a healthy provider: %v", err)
	}
	env.fake.set(func(f *fakeProvider) { f.health = errors.New("socket missing") })
	err := env.m.Ready(t.Context())
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "socket missing") {
		t.Errorf("Ready = %v, want ErrUnavailable with the cause", err)
	}
}

// discard is an OutputFunc that drops output.
func discard(provider.Stream, []byte) {}

// collect returns an OutputFunc that appends stdout to buf.
func collect(buf *bytes.Buffer) provider.OutputFunc {
	return func(s provider.Stream, p []byte) {
		if s == provider.Stdout {
			buf.Write(p)
		}
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}
