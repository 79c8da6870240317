package orchestrator

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

func TestReapDestroysOnlyExpired(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Manager.ReapParallelism = 2 })

	var short, long []string
	for range 6 {
		short = append(short, env.spawn(t, SpawnRequest{TTL: time.Minute}).ID)
	}
	for range 2 {
		long = append(long, env.spawn(t, SpawnRequest{TTL: time.Hour}).ID)
	}
	env.fake.set(func(f *fakeProvider) { f.destroyDelay = 80 * time.Millisecond })
	env.clock.Advance(2 * time.Minute)

	n, err := env.m.Reap(t.Context())
	if err != nil {
		t.Fatalf("Reap: %v", err)
	}
	if n != len(short) {
		t.Errorf("Reap destroyed %d, want %d", n, len(short))
	}
	for _, id := range short {
		if got := env.get(t, id); got.State != store.StateDestroyed {
			t.Errorf("expired %s: state %s, want destroyed", id, got.State)
		}
		want := []string{EventCreated, EventRunning, EventExpired, EventDestroyed}
		if got := env.eventTypes(t, id); !slices.Equal(got, want) {
			t.Errorf("expired %s: events %v, want %v", id, got, want)
		}
	}
	for _, id := range long {
		if got := env.get(t, id); got.State != store.StateRunning {
			t.Errorf("unexpired %s: state %s, want running", id, got.State)
		}
	}

	env.fake.mu.Lock()
	maxActive := env.fake.destroyMax
	env.fake.mu.Unlock()
	if maxActive != 2 {
		t.Errorf("max concurrent destroys = %d, want the parallelism 2", maxActive)
	}
}

func TestReapSkipsExtended(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{TTL: time.Minute})
	env.clock.Advance(50 * time.Second)
	if _, err := env.m.Extend(t.Context(), sb.ID, time.Hour); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	env.clock.Advance(time.Minute)

	n, err := env.m.Reap(t.Context())
	if err != nil || n != 0 {
		t.Errorf("Reap = %d, %v; want 0, nil", n, err)
	}
	if got := env.get(t, sb.ID); got.State != store.StateRunning {
		t.Errorf("state = %s, want running", got.State)
	}
}

func TestReapReportsFailedDestroys(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{TTL: time.Minute})
	env.fake.set(func(f *fakeProvider) { f.destroyErr = errors.New("engine not responding") })
	env.clock.Advance(2 * time.Minute)

	n, err := env.m.Reap(t.Context())
	if err == nil || n != 0 {
		t.Fatalf("Reap = %d, %v; want 0 and the destroy error", n, err)
	}
	if got := env.get(t, sb.ID); got.State != store.StateError {
		t.Errorf("state = %s, want error", got.State)
	}

	// A pass within the backoff leaves the record alone.
	env.fake.set(func(f *fakeProvider) { f.destroyErr = nil })
	n, err = env.m.Reap(t.Context())
	if err != nil || n != 0 {
		t.Fatalf("Reap within the backoff = %d, %v; want 0, nil", n, err)
	}
	if calls := env.fake.destroyCount(sb.ID); calls != 1 {
		t.Errorf("provider Destroy calls within the backoff = %d, want 1", calls)
	}

	// After the backoff the reaper retries, without a second expired event.
	env.clock.Advance(env.m.cfg.ReapInterval)
	n, err = env.m.Reap(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Reap after the backoff = %d, %v; want 1, nil", n, err)
	}
	if got := countOf(env.eventTypes(t, sb.ID), EventExpired); got != 1 {
		t.Errorf("sandbox.expired events = %d, want 1", got)
	}
}

func TestReapBackoffDoubles(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Manager.ReapInterval = time.Minute })
	failed := errors.New("down")
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		env.m.recordReap("sb-x", failed)
		if got := env.m.reapRetries["sb-x"].next.Sub(env.clock.Now()); got != w {
			t.Errorf("wait after failure %d = %s, want %s", i+1, got, w)
		}
	}
	env.m.recordReap("sb-x", nil)
	if env.m.retrying("sb-x") {
		t.Error("backoff kept after a successful destroy")
	}
}

func TestReapLoopRunsAfterStart(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Manager.ReapInterval = 10 * time.Millisecond })
	sb := env.spawn(t, SpawnRequest{TTL: time.Minute})
	if err := env.m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	env.clock.Advance(2 * time.Minute)

	deadline := time.Now().Add(5 * time.Second)
	for env.get(t, sb.ID).State != store.StateDestroyed {
		if time.Now().After(deadline) {
			t.Fatal("the reaper loop did not destroy the expired sandbox within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := env.m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := env.m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStartTwice(t *testing.T) {
	env := newEnv(t)
	if err := env.m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := env.m.Start(t.Context()); err == nil {
		t.Error("second Start succeeded, want an error")
	}
}
