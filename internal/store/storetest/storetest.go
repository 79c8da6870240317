// Package storetest is the conformance suite for store.Store
// implementations. Every implementation runs it from its own tests, so that
// the manager can rely on the same behaviour from the embedded SQLite store
// and the cluster store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openTestStore(t) })
//	}
//
// Beyond the method comments in package store, the suite requires these
// behaviours:
//   - ListSandboxes orders records with equal CreatedAt by descending ID, and
//     records with a zero CreatedAt last.
//   - Stored times come back in UTC with nanosecond precision, and zero times
//     come back zero.
//   - Nil maps come back as empty, non-nil maps.
//   - CreateSandbox rejects an empty ID and an unknown state, and AppendEvent rejects
//     an empty type.
//   - UpdateSandbox ignores the UpdatedAt it is given and stores the current
//     time.
//   - A limit or keep of zero means no limit.
//   - Sequence numbers are never reused, even after pruning every event.
//   - Not-found and conflict errors name the sandbox ID, template name or
//     idempotency key.
//   - Templates come back with non-nil maps and a non-nil Setup list.
//   - An idempotency key expires at its ExpiresAt instant: a claim or prune
//     at exactly that time treats it as expired.
package storetest

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// Run runs every conformance test as a subtest of t. open must return a new,
// empty store on each call; Run closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()

	tests := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"sandbox round trip", testSandboxRoundTrip},
		{"sandbox zero values round trip", testSandboxZeroValues},
		{"create duplicate conflicts", testCreateDuplicate},
		{"create rejects invalid record", testCreateInvalid},
		{"get missing not found", testGetMissing},
		{"update missing not found", testUpdateMissing},
		{"update replaces fields", testUpdateReplaces},
		{"list newest first", testListOrder},
		{"list filters", testListFilters},
		{"count live", testCountLive},
		{"concurrent writes", testConcurrentWrites},
		{"events increasing seq", testEventsIncreasingSeq},
		{"event zero time set to now", testEventZeroTime},
		{"event empty type rejected", testEventEmptyType},
		{"events after paging", testEventsAfterPaging},
		{"prune events by age", testPruneByAge},
		{"prune events by count", testPruneByCount},
		{"prune events by age and count", testPruneByAgeAndCount},
		{"seq not reused after prune", testSeqNotReused},
		{"template round trip", testTemplateRoundTrip},
		{"template zero values round trip", testTemplateZeroValues},
		{"create duplicate template conflicts", testTemplateCreateDuplicate},
		{"create template rejects empty name", testTemplateEmptyName},
		{"get missing template not found", testTemplateGetMissing},
		{"list templates sorted by name", testTemplateListSorted},
		{"update template replaces fields", testTemplateUpdate},
		{"update missing template not found", testTemplateUpdateMissing},
		{"delete template", testTemplateDelete},
		{"idempotency claim and get", testIdempotencyClaimAndGet},
		{"idempotency live key conflicts", testIdempotencyClaimLiveConflicts},
		{"idempotency expired key replaced", testIdempotencyClaimExpiredReplaces},
		{"idempotency complete", testIdempotencyComplete},
		{"idempotency release", testIdempotencyRelease},
		{"idempotency prune expired", testIdempotencyPrune},
		{"idempotency concurrent claims", testIdempotencyConcurrentClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.test(t, s)
		})
	}
}

// fullSandbox returns a record with every field set, created at createdAt.
func fullSandbox(id string, createdAt time.Time) store.Sandbox {
	return store.Sandbox{
		ID:       id,
		State:    store.StateRunning,
		Provider: "docker",
		Image:    "python:3.12-slim",
		Runtime:  "runsc",
		MemoryMB: 512,
		VCPUs:    2,
		Network:  true,
		OwnerID:  "owner-1",
		Template: "python",
		Env: map[string]string{
			"PATH":     "/usr/local/bin:/usr/bin",
			"GREETING": "grüße, 世界 ✓",
			"EMPTY":    "",
		},
		Metadata: map[string]string{
			"名前":    "サンドボックス",
			"emoji": "🚀 launch",
			"quote": `say "hi" & <bye>`,
		},
		Error:       "last spawn failed: image pull timed out",
		CreatedAt:   createdAt,
		UpdatedAt:   createdAt.Add(time.Second),
		ExpiresAt:   createdAt.Add(time.Hour),
		DestroyedAt: createdAt.Add(2 * time.Hour),
	}
}

// assertSandbox reports every field of got that differs from want. Times must
// be equal instants in UTC, and maps must be non-nil, with a nil map in want
// standing for an empty one.
func assertSandbox(t *testing.T, got, want store.Sandbox) {
	t.Helper()

	fields := []struct {
		name      string
		got, want any
	}{
		{"ID", got.ID, want.ID},
		{"State", got.State, want.State},
		{"Provider", got.Provider, want.Provider},
		{"Image", got.Image, want.Image},
		{"Runtime", got.Runtime, want.Runtime},
		{"MemoryMB", got.MemoryMB, want.MemoryMB},
		{"VCPUs", got.VCPUs, want.VCPUs},
		{"Network", got.Network, want.Network},
		{"OwnerID", got.OwnerID, want.OwnerID},
		{"Template", got.Template, want.Template},
		{"Error", got.Error, want.Error},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("sandbox %q: %s = %#v, want %#v", want.ID, f.name, f.got, f.want)
		}
	}

	assertMap(t, want.ID+" Env", got.Env, want.Env)
	assertMap(t, want.ID+" Metadata", got.Metadata, want.Metadata)

	assertTime(t, want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
	assertTime(t, want.ID+" UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	assertTime(t, want.ID+" ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	assertTime(t, want.ID+" DestroyedAt", got.DestroyedAt, want.DestroyedAt)
}

func assertMap(t *testing.T, name string, got, want map[string]string) {
	t.Helper()
	if got == nil {
		t.Errorf("%s is nil, want a non-nil map", name)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

// assertTime checks that got is the instant want, in UTC unless it is zero.
func assertTime(t *testing.T, name string, got, want time.Time) {
	t.Helper()
	if want.IsZero() {
		if !got.IsZero() {
			t.Errorf("%s = %v, want the zero time", name, got)
		}
		return
	}
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
	if got.Location() != time.UTC {
		t.Errorf("%s location = %v, want UTC", name, got.Location())
	}
}

// assertErrorNames checks that err's message contains the key it is about.
func assertErrorNames(t *testing.T, err error, key string) {
	t.Helper()
	if err != nil && !strings.Contains(err.Error(), key) {
		t.Errorf("error %q does not name %q", err, key)
	}
}

// sandboxIDs returns the IDs of sandboxes in order.
func sandboxIDs(sandboxes []store.Sandbox) []string {
	ids := make([]string, len(sandboxes))
	for i, sb := range sandboxes {
		ids[i] = sb.ID
	}
	return ids
}
