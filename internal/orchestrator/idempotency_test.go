package orchestrator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// spawnedCount returns how many times the fake's Spawn ran.
func (f *fakeProvider) spawnedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.spawned)
}

func TestIdempotentRetryReturnsSameSandbox(t *testing.T) {
	env := newEnv(t)
	req := SpawnRequest{Image: "alpine:3", TTL: time.Hour, Env: map[string]string{"A": "1"}}

	first, replayed, err := env.m.SpawnIdempotent(t.Context(), "key-1", req)
	if err != nil || replayed {
		t.Fatalf("first SpawnIdempotent = replayed %v, error %v; want a new sandbox", replayed, err)
	}

	// Equal after parsing: 60m is the same TTL as 1h.
	retry := req
	retry.TTL = 60 * time.Minute
	second, replayed, err := env.m.SpawnIdempotent(t.Context(), "key-1", retry)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !replayed || second.ID != first.ID {
		t.Errorf("retry = %s (replayed %v), want %s replayed", second.ID, replayed, first.ID)
	}
	if n := env.fake.spawnedCount(); n != 1 {
		t.Errorf("provider spawns = %d, want 1", n)
	}

	other, replayed, err := env.m.SpawnIdempotent(t.Context(), "key-2", req)
	if err != nil || replayed || other.ID == first.ID {
		t.Errorf("another key = %s (replayed %v, error %v), want a new sandbox", other.ID, replayed, err)
	}

	rec, err := env.store.GetIdempotencyKey(t.Context(), "key-1")
	if err != nil {
		t.Fatalf("GetIdempotencyKey: %v", err)
	}
	if want := env.clock.Now().Add(24 * time.Hour); rec.SandboxID != first.ID || !rec.ExpiresAt.Equal(want) {
		t.Errorf("record = %+v, want sandbox %s expiring at %v", rec, first.ID, want)
	}
}

func TestIdempotentReplayShowsCurrentState(t *testing.T) {
	env := newEnv(t)
	first, _, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{})
	if err != nil {
		t.Fatalf("SpawnIdempotent: %v", err)
	}
	if err := env.m.Destroy(t.Context(), first.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}

	again, replayed, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{})
	if err != nil || !replayed || again.ID != first.ID || again.State != store.StateDestroyed {
		t.Errorf("retry after destroy = %s %s (replayed %v, error %v), want %s destroyed and replayed",
			again.ID, again.State, replayed, err, first.ID)
	}
}

func TestIdempotentKeyReusedWithOtherRequest(t *testing.T) {
	env := newEnv(t)
	if _, _, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{MemoryMB: 256}); err != nil {
		t.Fatalf("SpawnIdempotent: %v", err)
	}

	for name, req := range map[string]SpawnRequest{
		"other memory":   {MemoryMB: 512},
		"other template": {MemoryMB: 256, Template: "python"},
		"extra env":      {MemoryMB: 256, Env: map[string]string{"A": "1"}},
	} {
		_, _, err := env.m.SpawnIdempotent(t.Context(), "key", req)
		if !errors.Is(err, ErrIdempotencyKeyReused) || !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: error = %v, want ErrIdempotencyKeyReused matching store.ErrConflict", name, err)
		}
	}
	if n := env.fake.spawnedCount(); n != 1 {
		t.Errorf("provider spawns = %d, want 1", n)
	}
}

func TestIdempotentConcurrentSpawnsCreateOne(t *testing.T) {
	env := newEnv(t)
	gate := make(chan struct{})
	seen := make(chan string, 1)
	env.fake.set(func(f *fakeProvider) { f.spawnGate, f.spawnSeen = gate, seen })

	const requests = 8
	type outcome struct {
		sb       store.Sandbox
		replayed bool
		err      error
	}
	results := make(chan outcome, requests)
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			sb, replayed, err := env.m.SpawnIdempotent(t.Context(), "shared", SpawnRequest{OwnerID: "alice"})
			results <- outcome{sb, replayed, err}
		})
	}

	// Let the others queue behind the first spawn before it finishes.
	<-seen
	time.Sleep(50 * time.Millisecond)
	close(gate)
	wg.Wait()
	close(results)

	ids := map[string]int{}
	replays := 0
	for r := range results {
		if r.err != nil {
			t.Errorf("SpawnIdempotent: %v", r.err)
			continue
		}
		ids[r.sb.ID]++
		if r.replayed {
			replays++
		}
	}
	if len(ids) != 1 || replays != requests-1 {
		t.Errorf("sandbox IDs = %v with %d replays, want one ID and %d replays", ids, replays, requests-1)
	}
	if n := env.fake.spawnedCount(); n != 1 {
		t.Errorf("provider spawns = %d, want 1", n)
	}
}

func TestIdempotentFailedSpawnReleasesKey(t *testing.T) {
	env := newEnv(t)
	env.fake.set(func(f *fakeProvider) { f.spawnErr = errors.New("image pull failed") })

	if _, _, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{}); err == nil {
		t.Fatal("SpawnIdempotent succeeded, want the provider's error")
	}
	if _, err := env.store.GetIdempotencyKey(t.Context(), "key"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record after a failed spawn: error = %v, want ErrNotFound", err)
	}

	env.fake.set(func(f *fakeProvider) { f.spawnErr = nil })
	sb, replayed, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{})
	if err != nil || replayed || sb.State != store.StateRunning {
		t.Errorf("retry = %s %s (replayed %v, error %v), want a new running sandbox", sb.ID, sb.State, replayed, err)
	}
}

func TestIdempotentInvalidRequestStoresNothing(t *testing.T) {
	env := newEnv(t)
	_, _, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{Template: "missing"})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("error = %v, want ErrNotFound for the template", err)
	}
	if _, err := env.store.GetIdempotencyKey(t.Context(), "key"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record after a rejected request: error = %v, want ErrNotFound", err)
	}
}

func TestIdempotentKeyExpires(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Limits.IdempotencyWindow = time.Hour })
	first, _, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{})
	if err != nil {
		t.Fatalf("SpawnIdempotent: %v", err)
	}

	env.clock.Advance(59 * time.Minute)
	again, replayed, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{})
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("retry within the window = %s (replayed %v, error %v), want %s", again.ID, replayed, err, first.ID)
	}

	env.clock.Advance(2 * time.Minute)
	later, replayed, err := env.m.SpawnIdempotent(t.Context(), "key", SpawnRequest{MemoryMB: 128})
	if err != nil || replayed || later.ID == first.ID {
		t.Errorf("request after the window = %s (replayed %v, error %v), want a new sandbox", later.ID, replayed, err)
	}
}

func TestIdempotentPrunesExpiredKeys(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Limits.IdempotencyWindow = time.Minute })
	if _, _, err := env.m.SpawnIdempotent(t.Context(), "old", SpawnRequest{}); err != nil {
		t.Fatalf("SpawnIdempotent: %v", err)
	}
	env.clock.Advance(2 * time.Minute)
	if _, _, err := env.m.SpawnIdempotent(t.Context(), "new", SpawnRequest{}); err != nil {
		t.Fatalf("SpawnIdempotent: %v", err)
	}
	if _, err := env.store.GetIdempotencyKey(t.Context(), "old"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired key after the next keyed spawn: error = %v, want it pruned", err)
	}
}

func TestIdempotentClaimOfAnotherProcess(t *testing.T) {
	env := newEnv(t)
	req := SpawnRequest{}
	hash, err := requestHash(req)
	if err != nil {
		t.Fatal(err)
	}
	now := env.clock.Now()
	err = env.store.ClaimIdempotencyKey(t.Context(), store.IdempotencyKey{
		Key: "key", RequestHash: hash, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
	})
	if err != nil {
		t.Fatalf("ClaimIdempotencyKey: %v", err)
	}

	_, _, err = env.m.SpawnIdempotent(t.Context(), "key", req)
	if !errors.Is(err, ErrIdempotencyKeyInProgress) || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("error = %v, want ErrIdempotencyKeyInProgress", err)
	}
	if !strings.Contains(err.Error(), "in progress") {
		t.Errorf("message %q does not say the request is in progress", err)
	}

	// A claim left by a crash expires, and then the key works again.
	env.clock.Advance(11 * time.Minute)
	if _, replayed, err := env.m.SpawnIdempotent(t.Context(), "key", req); err != nil || replayed {
		t.Errorf("after the claim expired: replayed %v, error %v; want a new sandbox", replayed, err)
	}
}

func TestIdempotencyKeyValidation(t *testing.T) {
	tests := []struct {
		key   string
		valid bool
	}{
		{"a", true},
		{"3f2a9c0d-1e4b-5a69-78c0-d1e2f3a4b5c6", true},
		{strings.Repeat("k", 255), true},
		{"!#$%&'*+-.^_`|~", true},
		{strings.Repeat("k", 256), false},
		{"has space", false},
		{"tab\tkey", false},
		{"ünïcode", false},
		{"del\x7f", false},
	}
	env := newEnv(t)
	for _, tt := range tests {
		_, _, err := env.m.SpawnIdempotent(t.Context(), tt.key, SpawnRequest{})
		var fe *FieldError
		isField := errors.As(err, &fe) && fe.Field == "Idempotency-Key"
		if tt.valid && err != nil {
			t.Errorf("key %q: error = %v, want success", tt.key, err)
		}
		if !tt.valid && !isField {
			t.Errorf("key %q: error = %v, want a *FieldError for Idempotency-Key", tt.key, err)
		}
	}
}

func TestIdempotentWaitEndsWithContext(t *testing.T) {
	env := newEnv(t)
	gate := make(chan struct{})
	seen := make(chan string, 1)
	env.fake.set(func(f *fakeProvider) { f.spawnGate, f.spawnSeen = gate, seen })

	done := make(chan error, 1)
	go func() {
		_, _, err := env.m.SpawnIdempotent(context.WithoutCancel(t.Context()), "key", SpawnRequest{})
		done <- err
	}()
	<-seen

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, _, err := env.m.SpawnIdempotent(ctx, "key", SpawnRequest{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting request error = %v, want context.DeadlineExceeded", err)
	}

	close(gate)
	if err := <-done; err != nil {
		t.Errorf("first request: %v", err)
	}
}
