package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

func TestSpawnRecordsRunningAndEvents(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{
		Image:    "alpine:3.20",
		Env:      map[string]string{"GREETING": "hi"},
		Metadata: map[string]string{"team": "infra"},
		OwnerID:  "alice",
		Network:  true,
		Runtime:  "fast",
	})

	if !regexp.MustCompile(`^sb-[a-z2-7]{12}$`).MatchString(sb.ID) {
		t.Errorf("ID = %q, want sb- and 12 lowercase base32 characters", sb.ID)
	}
	if sb.State != store.StateRunning {
		t.Errorf("returned state = %s, want running", sb.State)
	}
	stored := env.get(t, sb.ID)
	if stored.State != store.StateRunning {
		t.Errorf("stored state = %s, want running", stored.State)
	}
	if stored.Provider != "fake" {
		t.Errorf("stored provider = %q, want fake", stored.Provider)
	}
	if stored.Env["GREETING"] != "hi" {
		t.Errorf("stored env = %v, want GREETING=hi", stored.Env)
	}

	env.fake.mu.Lock()
	spec := env.fake.runtimes[sb.ID]
	env.fake.mu.Unlock()
	if spec.Image != "alpine:3.20" || spec.OwnerID != "alice" || !spec.Network || spec.Runtime != "fast" {
		t.Errorf("provider spec = %+v, want the request's image, owner, network and runtime", spec)
	}
	if spec.Metadata["team"] != "infra" || spec.Env["GREETING"] != "hi" {
		t.Errorf("provider spec metadata/env = %v/%v, want the request's", spec.Metadata, spec.Env)
	}

	got := env.eventTypes(t, sb.ID)
	want := []string{EventCreated, EventRunning}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestSpawnAppliesDefaults(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})

	limits := env.m.Limits()
	if sb.MemoryMB != limits.DefaultMemoryMB {
		t.Errorf("MemoryMB = %d, want default %d", sb.MemoryMB, limits.DefaultMemoryMB)
	}
	if sb.VCPUs != limits.DefaultVCPUs {
		t.Errorf("VCPUs = %d, want default %d", sb.VCPUs, limits.DefaultVCPUs)
	}
	if want := env.clock.Now().Add(limits.DefaultTTL); !sb.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %s, want %s", sb.ExpiresAt, want)
	}
	if !sb.CreatedAt.Equal(env.clock.Now()) {
		t.Errorf("CreatedAt = %s, want the clock's %s", sb.CreatedAt, env.clock.Now())
	}
}

func TestSpawnTTLSetsExpiry(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{TTL: 90 * time.Second})
	if want := sb.CreatedAt.Add(90 * time.Second); !sb.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %s, want CreatedAt + 90s = %s", sb.ExpiresAt, want)
	}
}

func TestSpawnValidationNamesField(t *testing.T) {
	manyKeys := map[string]string{}
	for i := range 65 {
		manyKeys[fmt.Sprintf("k%d", i)] = "v"
	}

	tests := []struct {
		name  string
		req   SpawnRequest
		field string
	}{
		{"negative memory", SpawnRequest{MemoryMB: -5}, "memory_mb"},
		{"negative vcpus", SpawnRequest{VCPUs: -1}, "vcpus"},
		{"negative ttl", SpawnRequest{TTL: -time.Second}, "ttl"},
		{"image with space", SpawnRequest{Image: "alpine latest"}, "image"},
		{"image with shell characters", SpawnRequest{Image: "alpine;rm"}, "image"},
		{"image starting with dash", SpawnRequest{Image: "-alpine"}, "image"},
		{"image too long", SpawnRequest{Image: strings.Repeat("a", 513)}, "image"},
		{"runtime not offered", SpawnRequest{Runtime: "runsc"}, "runtime"},
		{"runtime with slash", SpawnRequest{Runtime: "a/b"}, "runtime"},
		{"env key with dash", SpawnRequest{Env: map[string]string{"MY-VAR": "x"}}, "env"},
		{"env key starting with digit", SpawnRequest{Env: map[string]string{"1X": "x"}}, "env"},
		{"env key empty", SpawnRequest{Env: map[string]string{"": "x"}}, "env"},
		{"env value with NUL", SpawnRequest{Env: map[string]string{"X": "a\x00b"}}, "env"},
		{"metadata too many keys", SpawnRequest{Metadata: manyKeys}, "metadata"},
		{"metadata empty key", SpawnRequest{Metadata: map[string]string{"": "v"}}, "metadata"},
		{"metadata key too long", SpawnRequest{Metadata: map[string]string{strings.Repeat("k", 64): "v"}}, "metadata"},
		{"metadata key with equals", SpawnRequest{Metadata: map[string]string{"a=b": "v"}}, "metadata"},
		{"metadata value too long", SpawnRequest{Metadata: map[string]string{"k": strings.Repeat("v", 1025)}}, "metadata"},
		{"owner with newline", SpawnRequest{OwnerID: "alice\nbob"}, "owner_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			_, err := env.m.Spawn(t.Context(), tt.req)
			if !errors.Is(err, provider.ErrInvalidArgument) {
				t.Fatalf("error = %v, want one wrapping ErrInvalidArgument", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q, want %q", fe.Field, tt.field)
			}
			if !strings.HasPrefix(err.Error(), tt.field+" ") {
				t.Errorf("message %q does not start with the field name %q", err.Error(), tt.field)
			}
			if n, _ := env.store.CountLive(t.Context(), ""); n != 0 {
				t.Errorf("live records = %d, want 0 after a rejected spawn", n)
			}
		})
	}
}

func TestSpawnValidationMessage(t *testing.T) {
	env := newEnv(t)
	_, err := env.m.Spawn(t.Context(), SpawnRequest{MemoryMB: -5})
	want := "memory_mb must be positive, or 0 for the default of 512, got -5"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestSpawnAcceptsEdgeInputs(t *testing.T) {
	env := newEnv(t)
	md := map[string]string{strings.Repeat("k", 63): strings.Repeat("v", 1024)}
	for i := range 63 {
		md[fmt.Sprintf("key%d", i)] = "v"
	}
	req := SpawnRequest{
		Image:    "registry.example.com:5000/team/app@sha256:0123abcd",
		Env:      map[string]string{"_UNDER": "", "PATH2": "x=y"},
		Metadata: md,
		OwnerID:  "tenant-7",
	}
	if _, err := env.m.Spawn(t.Context(), req); err != nil {
		t.Fatalf("Spawn at the input limits: %v", err)
	}
}

func TestSpawnLimits(t *testing.T) {
	tests := []struct {
		name  string
		req   SpawnRequest
		limit string
		value string
		got   string
	}{
		{"memory", SpawnRequest{MemoryMB: 9000}, "max_memory_mb", "8192", "9000"},
		{"vcpus", SpawnRequest{VCPUs: 9}, "max_vcpus", "8", "9"},
		{"ttl", SpawnRequest{TTL: 25 * time.Hour}, "max_ttl", "24h0m0s", "25h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			_, err := env.m.Spawn(t.Context(), tt.req)
			var le *provider.LimitError
			if !errors.As(err, &le) {
				t.Fatalf("error = %v, want a *provider.LimitError", err)
			}
			if le.Limit != tt.limit || le.Value != tt.value || le.Got != tt.got {
				t.Errorf("LimitError = %+v, want limit %s value %s got %s", le, tt.limit, tt.value, tt.got)
			}
			if !errors.Is(err, provider.ErrResourceLimit) {
				t.Errorf("error %v does not wrap ErrResourceLimit", err)
			}
		})
	}
}

func TestSpawnLiveCaps(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Limits.MaxSandboxes = 3
		o.Limits.MaxSandboxesPerOwner = 2
	})

	env.spawn(t, SpawnRequest{OwnerID: "alice"})
	env.spawn(t, SpawnRequest{OwnerID: "alice"})
	_, err := env.m.Spawn(t.Context(), SpawnRequest{OwnerID: "alice"})
	var le *provider.LimitError
	if !errors.As(err, &le) || le.Limit != "max_sandboxes_per_owner" {
		t.Fatalf("third spawn for alice: error = %v, want LimitError max_sandboxes_per_owner", err)
	}

	env.spawn(t, SpawnRequest{OwnerID: "bob"})
	_, err = env.m.Spawn(t.Context(), SpawnRequest{OwnerID: "carol"})
	if !errors.As(err, &le) || le.Limit != "max_sandboxes" || le.Value != "3" {
		t.Fatalf("fourth spawn: error = %v, want LimitError max_sandboxes=3", err)
	}
}

func TestSpawnCapCountsOnlyLive(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Limits.MaxSandboxes = 1 })
	sb := env.spawn(t, SpawnRequest{})
	if err := env.m.Destroy(t.Context(), sb.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	env.spawn(t, SpawnRequest{})
}

// slowCountStore delays CountLive, which widens the window between the
// count and the insert of a spawn so that missing admission locking shows.
type slowCountStore struct {
	store.Store
}

func (s slowCountStore) CountLive(ctx context.Context, owner string) (int, error) {
	n, err := s.Store.CountLive(ctx, owner)
	time.Sleep(5 * time.Millisecond)
	return n, err
}

func TestSpawnConcurrentAdmission(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.Limits.MaxSandboxes = 10
		o.Store = slowCountStore{o.Store}
	})
	env.fake.spawnDelay = 20 * time.Millisecond

	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, limited := 0, 0
	for range 20 {
		wg.Go(func() {
			_, err := env.m.Spawn(t.Context(), SpawnRequest{})
			mu.Lock()
			defer mu.Unlock()
			var le *provider.LimitError
			switch {
			case err == nil:
				admitted++
			case errors.As(err, &le):
				limited++
			default:
				t.Errorf("Spawn: unexpected error %v", err)
			}
		})
	}
	wg.Wait()

	if admitted != 10 || limited != 10 {
		t.Errorf("admitted %d and limited %d, want 10 and 10", admitted, limited)
	}
	if n, _ := env.store.CountLive(t.Context(), ""); n != 10 {
		t.Errorf("live records = %d, want 10", n)
	}
}

func TestSpawnFailureCleansUp(t *testing.T) {
	env := newEnv(t)
	env.fake.spawnErr = errors.New("image pull failed")
	env.fake.spawnLeaves = true

	_, err := env.m.Spawn(t.Context(), SpawnRequest{Image: "missing:latest"})
	if err == nil || !strings.Contains(err.Error(), "image pull failed") {
		t.Fatalf("error = %v, want the provider's spawn error", err)
	}

	id := env.fake.spawned[0]
	if env.fake.destroyCount(id) != 1 {
		t.Errorf("provider Destroy calls for %s = %d, want 1", id, env.fake.destroyCount(id))
	}
	if env.fake.hasRuntime(id) {
		t.Error("the half-built runtime still exists")
	}
	sb := env.get(t, id)
	if sb.State != store.StateDestroyed {
		t.Errorf("state = %s, want destroyed", sb.State)
	}
	if !strings.Contains(sb.Error, "image pull failed") {
		t.Errorf("record error = %q, want the spawn error", sb.Error)
	}
	if sb.DestroyedAt.IsZero() {
		t.Error("DestroyedAt is zero")
	}
	if got, want := env.eventTypes(t, id), []string{EventCreated, EventError}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestSpawnFailureWithFailedCleanup(t *testing.T) {
	env := newEnv(t)
	env.fake.spawnErr = errors.New("network setup failed")
	env.fake.spawnLeaves = true
	env.fake.destroyErr = errors.New("engine not responding")

	_, err := env.m.Spawn(t.Context(), SpawnRequest{})
	if err == nil {
		t.Fatal("Spawn succeeded, want the spawn error")
	}

	sb := env.get(t, env.fake.spawned[0])
	if sb.State != store.StateError {
		t.Errorf("state = %s, want error when the cleanup failed", sb.State)
	}
	if !strings.Contains(sb.Error, "network setup failed") || !strings.Contains(sb.Error, "engine not responding") {
		t.Errorf("record error = %q, want both the spawn and the cleanup cause", sb.Error)
	}

	// The failed spawn must not keep the sandbox busy: a later destroy
	// and reconcile act on it.
	env.fake.set(func(f *fakeProvider) { f.destroyErr = nil })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := env.m.Destroy(ctx, sb.ID); err != nil {
		t.Fatalf("Destroy after the failed spawn: %v", err)
	}
	if got := env.get(t, sb.ID); got.State != store.StateDestroyed {
		t.Errorf("state after Destroy = %s, want destroyed", got.State)
	}
	if env.m.busy(sb.ID) {
		t.Error("the sandbox still has an operation in flight")
	}
}

func TestSpawnUnknownProvider(t *testing.T) {
	env := newEnv(t)
	_, err := env.m.Spawn(t.Context(), SpawnRequest{Provider: "firecracker"})
	if !errors.Is(err, provider.ErrProviderNotFound) {
		t.Fatalf("error = %v, want ErrProviderNotFound", err)
	}
	if !strings.Contains(err.Error(), `"firecracker"`) || !strings.Contains(err.Error(), "fake") {
		t.Errorf("message %q should name the provider and list the registered ones", err)
	}
}

func TestSpawnSurvivesCanceledRequest(t *testing.T) {
	env := newEnv(t)
	gate := make(chan struct{})
	seen := make(chan string, 1)
	env.fake.spawnGate, env.fake.spawnSeen = gate, seen

	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		sb  store.Sandbox
		err error
	}
	done := make(chan result, 1)
	go func() {
		sb, err := env.m.Spawn(ctx, SpawnRequest{})
		done <- result{sb, err}
	}()

	<-seen
	cancel()
	close(gate)
	r := <-done
	if r.err != nil {
		t.Fatalf("Spawn after the request was canceled: %v", r.err)
	}
	if r.sb.State != store.StateRunning {
		t.Errorf("state = %s, want running", r.sb.State)
	}
	if err := env.fake.spawnCtxErr[0]; err != nil {
		t.Errorf("provider spawn context ended with %v, want it detached from the request", err)
	}
}

func TestSpawnTimeoutBoundsProvider(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.SpawnTimeout = 50 * time.Millisecond })
	env.fake.spawnGate = make(chan struct{}) // never closed
	env.fake.spawnErr = context.DeadlineExceeded

	start := time.Now()
	_, err := env.m.Spawn(t.Context(), SpawnRequest{})
	if err == nil {
		t.Fatal("Spawn succeeded, want a timeout")
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Spawn took %s, want it bounded by the spawn timeout", elapsed)
	}
	if got := env.fake.spawnCtxErr[0]; !errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("provider spawn context error = %v, want DeadlineExceeded", got)
	}
}
