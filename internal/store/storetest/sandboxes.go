package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// base is the creation time that the sandbox tests count from. It has
// nanoseconds to show that the store keeps them.
var base = time.Date(2025, time.March, 14, 15, 9, 26, 535897932, time.UTC)

func testSandboxRoundTrip(t *testing.T, s store.Store) {
	// A zone east of UTC, so that a store that drops the offset or stores
	// local wall-clock time reads back a different instant.
	zone := time.FixedZone("UTC+05:30", 5*3600+30*60)
	want := fullSandbox("sb-full", base.In(zone))

	if err := s.CreateSandbox(t.Context(), want); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	got, err := s.GetSandbox(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("GetSandbox: %v", err)
	}
	assertSandbox(t, got, want)
}

func testSandboxZeroValues(t *testing.T, s store.Store) {
	want := store.Sandbox{ID: "sb-zero", State: store.StateCreating}

	if err := s.CreateSandbox(t.Context(), want); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	got, err := s.GetSandbox(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("GetSandbox: %v", err)
	}
	assertSandbox(t, got, want)
}

func testCreateDuplicate(t *testing.T, s store.Store) {
	first := fullSandbox("sb-dup", base)
	if err := s.CreateSandbox(t.Context(), first); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}

	second := fullSandbox("sb-dup", base.Add(time.Minute))
	second.Image = "alpine:3"
	err := s.CreateSandbox(t.Context(), second)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateSandbox error = %v, want ErrConflict", err)
	}
	assertErrorNames(t, err, "sb-dup")

	got, err := s.GetSandbox(t.Context(), "sb-dup")
	if err != nil {
		t.Fatalf("GetSandbox: %v", err)
	}
	assertSandbox(t, got, first)
}

func testCreateInvalid(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		sb   store.Sandbox
	}{
		{"empty id", store.Sandbox{State: store.StateCreating}},
		{"empty state", store.Sandbox{ID: "sb-no-state"}},
		{"unknown state", store.Sandbox{ID: "sb-bad-state", State: "paused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateSandbox(t.Context(), tt.sb); err == nil {
				t.Errorf("CreateSandbox(%+v) succeeded, want an error", tt.sb)
			}
		})
	}

	count, err := s.CountLive(t.Context(), "")
	if err != nil {
		t.Fatalf("CountLive: %v", err)
	}
	if count != 0 {
		t.Errorf("CountLive after rejected creates = %d, want 0", count)
	}
}

func testGetMissing(t *testing.T, s store.Store) {
	_, err := s.GetSandbox(t.Context(), "sb-missing")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSandbox error = %v, want ErrNotFound", err)
	}
	assertErrorNames(t, err, "sb-missing")
}

func testUpdateMissing(t *testing.T, s store.Store) {
	err := s.UpdateSandbox(t.Context(), fullSandbox("sb-missing", base))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateSandbox error = %v, want ErrNotFound", err)
	}
	assertErrorNames(t, err, "sb-missing")

	if _, err := s.GetSandbox(t.Context(), "sb-missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSandbox after failed update error = %v, want ErrNotFound", err)
	}
}

func testUpdateReplaces(t *testing.T, s store.Store) {
	original := fullSandbox("sb-update", base)
	original.DestroyedAt = time.Time{}
	if err := s.CreateSandbox(t.Context(), original); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}

	want := store.Sandbox{
		ID:          original.ID,
		State:       store.StateDestroyed,
		Provider:    "native",
		Image:       "debian:12",
		Runtime:     "",
		MemoryMB:    1024,
		VCPUs:       4,
		Network:     false,
		OwnerID:     "owner-2",
		Template:    "",
		Env:         map[string]string{"ONLY": "this one"},
		Metadata:    nil,
		Error:       "",
		CreatedAt:   base.Add(-time.Minute),
		UpdatedAt:   time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC),
		ExpiresAt:   time.Time{},
		DestroyedAt: base.Add(3 * time.Hour),
	}
	before := time.Now()
	if err := s.UpdateSandbox(t.Context(), want); err != nil {
		t.Fatalf("UpdateSandbox: %v", err)
	}
	after := time.Now()

	got, err := s.GetSandbox(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("GetSandbox: %v", err)
	}
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(after) {
		t.Errorf("UpdatedAt = %v, want the time of the update, between %v and %v", got.UpdatedAt, before, after)
	}
	want.UpdatedAt = got.UpdatedAt
	assertSandbox(t, got, want)
}

func testListOrder(t *testing.T, s store.Store) {
	// Inserted out of order. tie-a and tie-b share a creation time, and
	// zero-time has none, so it sorts after every record that has one.
	records := []struct {
		id      string
		created time.Time
	}{
		{"sb-2", base.Add(2 * time.Minute)},
		{"zero-time", time.Time{}},
		{"sb-4", base.Add(4 * time.Minute)},
		{"tie-a", base.Add(3 * time.Minute)},
		{"sb-1", base.Add(1 * time.Minute)},
		{"tie-b", base.Add(3 * time.Minute)},
		{"sb-5", base.Add(5*time.Minute + time.Nanosecond)},
		{"sb-5-earlier", base.Add(5 * time.Minute)},
	}
	for _, r := range records {
		sb := fullSandbox(r.id, r.created)
		if r.created.IsZero() {
			sb = store.Sandbox{ID: r.id, State: store.StateCreating}
		}
		if err := s.CreateSandbox(t.Context(), sb); err != nil {
			t.Fatalf("CreateSandbox(%s): %v", r.id, err)
		}
	}

	got, err := s.ListSandboxes(t.Context(), store.Filter{})
	if err != nil {
		t.Fatalf("ListSandboxes: %v", err)
	}
	want := []string{"sb-5", "sb-5-earlier", "sb-4", "tie-b", "tie-a", "sb-2", "sb-1", "zero-time"}
	if ids := sandboxIDs(got); !slices.Equal(ids, want) {
		t.Errorf("ListSandboxes order = %q, want %q", ids, want)
	}
	if len(got) > 0 {
		assertSandbox(t, got[0], fullSandbox("sb-5", base.Add(5*time.Minute+time.Nanosecond)))
	}
}

// createFilterFixture stores five records of two owners in every state but
// destroying, created one minute apart from a (oldest) to e (newest).
func createFilterFixture(t *testing.T, s store.Store) {
	t.Helper()
	records := []struct {
		id    string
		owner string
		state store.State
	}{
		{"a", "alice", store.StateRunning},
		{"b", "alice", store.StateDestroyed},
		{"c", "bob", store.StateCreating},
		{"d", "bob", store.StateError},
		{"e", "alice", store.StateRunning},
	}
	for i, r := range records {
		sb := fullSandbox(r.id, base.Add(time.Duration(i)*time.Minute))
		sb.OwnerID = r.owner
		sb.State = r.state
		if err := s.CreateSandbox(t.Context(), sb); err != nil {
			t.Fatalf("CreateSandbox(%s): %v", r.id, err)
		}
	}
}

func testListFilters(t *testing.T, s store.Store) {
	createFilterFixture(t, s)

	tests := []struct {
		name   string
		filter store.Filter
		want   []string
	}{
		{"zero filter matches all", store.Filter{}, []string{"e", "d", "c", "b", "a"}},
		{"state", store.Filter{State: store.StateRunning}, []string{"e", "a"}},
		{"state destroyed", store.Filter{State: store.StateDestroyed}, []string{"b"}},
		{"state with no records", store.Filter{State: store.StateDestroying}, []string{}},
		{"owner", store.Filter{OwnerID: "alice"}, []string{"e", "b", "a"}},
		{"unknown owner", store.Filter{OwnerID: "carol"}, []string{}},
		{"live", store.Filter{Live: true}, []string{"e", "d", "c", "a"}},
		{"live and owner", store.Filter{Live: true, OwnerID: "alice"}, []string{"e", "a"}},
		{"live and state destroyed", store.Filter{Live: true, State: store.StateDestroyed}, []string{}},
		{"state and owner", store.Filter{State: store.StateCreating, OwnerID: "bob"}, []string{"c"}},
		{"limit", store.Filter{Limit: 2}, []string{"e", "d"}},
		{"limit above count", store.Filter{Limit: 10}, []string{"e", "d", "c", "b", "a"}},
		{"limit and owner", store.Filter{Limit: 2, OwnerID: "alice"}, []string{"e", "b"}},
		{"limit and live", store.Filter{Limit: 3, Live: true}, []string{"e", "d", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListSandboxes(t.Context(), tt.filter)
			if err != nil {
				t.Fatalf("ListSandboxes(%+v): %v", tt.filter, err)
			}
			if ids := sandboxIDs(got); !slices.Equal(ids, tt.want) {
				t.Errorf("ListSandboxes(%+v) = %q, want %q", tt.filter, ids, tt.want)
			}
		})
	}
}

func testCountLive(t *testing.T, s store.Store) {
	count, err := s.CountLive(t.Context(), "")
	if err != nil {
		t.Fatalf("CountLive on an empty store: %v", err)
	}
	if count != 0 {
		t.Errorf("CountLive on an empty store = %d, want 0", count)
	}

	createFilterFixture(t, s)

	tests := []struct {
		owner string
		want  int
	}{
		{"", 4},
		{"alice", 2},
		{"bob", 2},
		{"carol", 0},
	}
	for _, tt := range tests {
		got, err := s.CountLive(t.Context(), tt.owner)
		if err != nil {
			t.Fatalf("CountLive(%q): %v", tt.owner, err)
		}
		if got != tt.want {
			t.Errorf("CountLive(%q) = %d, want %d", tt.owner, got, tt.want)
		}
	}
}

// concurrentWriters is how many goroutines testConcurrentWrites runs at once.
const concurrentWriters = 50

func testConcurrentWrites(t *testing.T, s store.Store) {
	const updates = 4

	var wg sync.WaitGroup
	for i := range concurrentWriters {
		wg.Go(func() {
			id := fmt.Sprintf("sb-%02d", i)
			owner := fmt.Sprintf("owner-%d", i%5)
			sb := store.Sandbox{ID: id, State: store.StateCreating, OwnerID: owner, CreatedAt: base.Add(time.Duration(i) * time.Second)}
			if err := s.CreateSandbox(t.Context(), sb); err != nil {
				t.Errorf("CreateSandbox(%s): %v", id, err)
				return
			}

			for n := range updates {
				sb.State = store.StateRunning
				sb.Metadata = map[string]string{"update": fmt.Sprint(n)}
				if err := s.UpdateSandbox(t.Context(), sb); err != nil {
					t.Errorf("UpdateSandbox(%s) #%d: %v", id, n, err)
					return
				}
				if _, err := s.GetSandbox(t.Context(), id); err != nil {
					t.Errorf("GetSandbox(%s): %v", id, err)
				}
				if _, err := s.ListSandboxes(t.Context(), store.Filter{OwnerID: owner}); err != nil {
					t.Errorf("ListSandboxes: %v", err)
				}
			}

			if _, err := s.AppendEvent(t.Context(), store.Event{Type: "sandbox.created", SandboxID: id}); err != nil {
				t.Errorf("AppendEvent(%s): %v", id, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	count, err := s.CountLive(t.Context(), "")
	if err != nil {
		t.Fatalf("CountLive: %v", err)
	}
	if count != concurrentWriters {
		t.Errorf("CountLive = %d, want %d", count, concurrentWriters)
	}

	for i := range concurrentWriters {
		id := fmt.Sprintf("sb-%02d", i)
		got, err := s.GetSandbox(t.Context(), id)
		if err != nil {
			t.Fatalf("GetSandbox(%s): %v", id, err)
		}
		if got.State != store.StateRunning || got.Metadata["update"] != fmt.Sprint(updates-1) {
			t.Errorf("sandbox %s: state %q, metadata %q, want running after update %d", id, got.State, got.Metadata, updates-1)
		}
	}

	events, err := s.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	if len(events) != concurrentWriters {
		t.Errorf("EventsAfter returned %d events, want %d", len(events), concurrentWriters)
	}
	assertSeqIncreasing(t, events)
}
