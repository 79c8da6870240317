package orchestrator

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

func TestReconcileRules(t *testing.T) {
	env := newEnv(t)
	inv := &inventoryFake{fakeProvider: newFake("inv"), created: env.clock.Now().Add(-time.Hour)}
	env.registry.Register(inv)

	records := []store.Sandbox{
		{ID: "sb-noprovider", State: store.StateRunning, Provider: "gone"},
		{ID: "sb-creating", State: store.StateCreating, Provider: "inv"},
		{ID: "sb-destroying", State: store.StateDestroying, Provider: "inv"},
		{ID: "sb-live", State: store.StateRunning, Provider: "inv"},
		{ID: "sb-back", State: store.StateError, Provider: "inv", Error: "engine was down"},
		{ID: "sb-vanished", State: store.StateRunning, Provider: "inv"},
		{ID: "sb-unreachable", State: store.StateRunning, Provider: "inv"},
		{ID: "sb-dead", State: store.StateDestroyed, Provider: "inv"},
	}
	for _, sb := range records {
		env.insert(t, sb)
	}
	for _, id := range []string{"sb-creating", "sb-destroying", "sb-live", "sb-back", "sb-unreachable", "sb-dead"} {
		inv.addRuntime(provider.SpawnSpec{ID: id})
	}
	inv.recoverErr["sb-unreachable"] = fmt.Errorf("engine socket refused: %w", provider.ErrUnavailable)
	inv.addRuntime(provider.SpawnSpec{ID: "sb-stray", Image: "alpine", MemoryMB: 256, VCPUs: 2, OwnerID: "alice",
		Metadata: map[string]string{"team": "infra"}})
	inv.addRuntime(provider.SpawnSpec{ID: "sb-stray-broken"})
	inv.recoverErr["sb-stray-broken"] = fmt.Errorf("agent not answering: %w", provider.ErrUnavailable)

	report, err := env.m.Reconcile(t.Context())
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}

	want := ReconcileReport{Checked: 7, Running: 1, Restored: 1, Gone: 1, Cleaned: 2, Errored: 2, Adopted: 2, Removed: 1}
	if report != want {
		t.Errorf("report = %+v, want %+v", report, want)
	}

	check := func(id string, state store.State, errPart string) {
		t.Helper()
		got := env.get(t, id)
		if got.State != state {
			t.Errorf("%s: state = %s, want %s", id, got.State, state)
		}
		if errPart == "" && got.Error != "" {
			t.Errorf("%s: error = %q, want none", id, got.Error)
		}
		if !strings.Contains(got.Error, errPart) {
			t.Errorf("%s: error = %q, want it to contain %q", id, got.Error, errPart)
		}
	}
	check("sb-noprovider", store.StateError, `provider "gone"`)
	check("sb-creating", store.StateDestroyed, "server stopped during spawn")
	check("sb-destroying", store.StateDestroyed, "")
	check("sb-live", store.StateRunning, "")
	check("sb-back", store.StateRunning, "")
	check("sb-vanished", store.StateDestroyed, "runtime no longer exists")
	check("sb-unreachable", store.StateError, "engine socket refused")
	check("sb-stray", store.StateRunning, "")
	check("sb-stray-broken", store.StateError, "agent not answering")

	for _, id := range []string{"sb-creating", "sb-destroying", "sb-dead"} {
		if inv.hasRuntime(id) {
			t.Errorf("%s: runtime still exists, want it destroyed", id)
		}
	}
	if !inv.hasRuntime("sb-live") || !inv.hasRuntime("sb-back") {
		t.Error("a live runtime was destroyed")
	}

	if got := env.eventTypes(t, "sb-back"); !slices.Equal(got, []string{EventRunning}) {
		t.Errorf("sb-back events = %v, want [sandbox.running]", got)
	}
	if got := env.eventTypes(t, "sb-vanished"); !slices.Equal(got, []string{EventDestroyed}) {
		t.Errorf("sb-vanished events = %v, want [sandbox.destroyed]", got)
	}
	if got := env.eventTypes(t, "sb-unreachable"); !slices.Equal(got, []string{EventError}) {
		t.Errorf("sb-unreachable events = %v, want [sandbox.error]", got)
	}
	if got := env.eventTypes(t, "sb-stray"); !slices.Equal(got, []string{EventAdopted}) {
		t.Errorf("sb-stray events = %v, want [sandbox.adopted]", got)
	}

	stray := env.get(t, "sb-stray")
	if stray.Provider != "inv" || stray.Image != "alpine" || stray.MemoryMB != 256 || stray.VCPUs != 2 || stray.OwnerID != "alice" {
		t.Errorf("adopted record = %+v, want provider, image, size and owner from the runtime", stray)
	}
	if stray.Metadata["team"] != "infra" {
		t.Errorf("adopted metadata = %v, want the runtime's labels", stray.Metadata)
	}
	if want := env.clock.Now().Add(env.m.Limits().DefaultTTL); !stray.ExpiresAt.Equal(want) {
		t.Errorf("adopted ExpiresAt = %s, want now + default TTL = %s", stray.ExpiresAt, want)
	}
	if !stray.CreatedAt.Equal(inv.created) {
		t.Errorf("adopted CreatedAt = %s, want the runtime's %s", stray.CreatedAt, inv.created)
	}
}

func TestReconcileIsStable(t *testing.T) {
	env := newEnv(t)
	env.insert(t, store.Sandbox{ID: "sb-noprovider", State: store.StateRunning, Provider: "gone"})
	sb := env.spawn(t, SpawnRequest{})

	for range 2 {
		if _, err := env.m.Reconcile(t.Context()); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}
	if n := countOf(env.eventTypes(t, "sb-noprovider"), EventError); n != 1 {
		t.Errorf("sandbox.error events after two passes = %d, want 1", n)
	}
	if got := env.eventTypes(t, sb.ID); !slices.Equal(got, []string{EventCreated, EventRunning}) {
		t.Errorf("events of a healthy sandbox = %v, want no new ones", got)
	}
}

func TestReconcileSkipsSpawnInFlight(t *testing.T) {
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

	report, err := env.m.Reconcile(t.Context())
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if report.Skipped != 1 || report.Cleaned != 0 {
		t.Errorf("report = %+v, want the creating record skipped", report)
	}
	if got := env.get(t, id); got.State != store.StateCreating {
		t.Errorf("state during the spawn = %s, want creating", got.State)
	}
	if n := env.fake.destroyCount(id); n != 0 {
		t.Errorf("provider Destroy calls = %d, want 0", n)
	}

	close(gate)
	if err := <-spawnErr; err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	if got := env.get(t, id); got.State != store.StateRunning {
		t.Errorf("state after the spawn = %s, want running", got.State)
	}
}

func TestReconcileInventoryFailure(t *testing.T) {
	env := newEnv(t)
	inv := &inventoryFake{fakeProvider: newFake("inv"), listErr: errors.New("engine down")}
	env.registry.Register(inv)

	report, err := env.m.Reconcile(t.Context())
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if report.Failed != 1 {
		t.Errorf("Failed = %d, want 1 for the inventory that could not be listed", report.Failed)
	}
}

func TestReconcileFailedCleanupKeepsError(t *testing.T) {
	env := newEnv(t)
	env.insert(t, store.Sandbox{ID: "sb-creating", State: store.StateCreating})
	env.fake.addRuntime(provider.SpawnSpec{ID: "sb-creating"})
	env.fake.set(func(f *fakeProvider) { f.destroyErr = errors.New("engine not responding") })

	report, err := env.m.Reconcile(t.Context())
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if report.Errored != 1 {
		t.Errorf("report = %+v, want one errored record", report)
	}
	got := env.get(t, "sb-creating")
	if got.State != store.StateError || !strings.Contains(got.Error, "engine not responding") {
		t.Errorf("record: state %s error %q, want error with the cause", got.State, got.Error)
	}

	events, err := env.store.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(events[len(events)-1].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["id"] != "sb-creating" || data["state"] != "error" || data["provider"] != "fake" {
		t.Errorf("event data = %v, want id, state and provider", data)
	}
}

func TestStartReconciles(t *testing.T) {
	env := newEnv(t)
	env.insert(t, store.Sandbox{ID: "sb-vanished", State: store.StateRunning})
	if err := env.m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := env.get(t, "sb-vanished"); got.State != store.StateDestroyed {
		t.Errorf("state after Start = %s, want destroyed", got.State)
	}
}
