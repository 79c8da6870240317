package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// claim returns an in-progress claim of key made at at that lasts ttl.
func claim(key, hash string, at time.Time, ttl time.Duration) store.IdempotencyKey {
	return store.IdempotencyKey{Key: key, RequestHash: hash, CreatedAt: at, ExpiresAt: at.Add(ttl)}
}

// getKey reads the record of key and fails the test on error.
func getKey(t *testing.T, s store.Store, key string) store.IdempotencyKey {
	t.Helper()
	k, err := s.GetIdempotencyKey(t.Context(), key)
	if err != nil {
		t.Fatalf("GetIdempotencyKey(%s): %v", key, err)
	}
	return k
}

func assertKey(t *testing.T, got, want store.IdempotencyKey) {
	t.Helper()
	if got.Key != want.Key || got.RequestHash != want.RequestHash || got.SandboxID != want.SandboxID {
		t.Errorf("record = {%q %q %q}, want {%q %q %q}", got.Key, got.RequestHash, got.SandboxID,
			want.Key, want.RequestHash, want.SandboxID)
	}
	assertTime(t, want.Key+" CreatedAt", got.CreatedAt, want.CreatedAt)
	assertTime(t, want.Key+" ExpiresAt", got.ExpiresAt, want.ExpiresAt)
}

func testIdempotencyClaimAndGet(t *testing.T, s store.Store) {
	want := claim("key-1", "hash-a", base, time.Minute)
	want.SandboxID = "sb-ignored"
	if err := s.ClaimIdempotencyKey(t.Context(), want); err != nil {
		t.Fatalf("ClaimIdempotencyKey: %v", err)
	}

	want.SandboxID = ""
	assertKey(t, getKey(t, s, "key-1"), want)

	_, err := s.GetIdempotencyKey(t.Context(), "key-2")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetIdempotencyKey of an unknown key: error = %v, want ErrNotFound", err)
	}
	assertErrorNames(t, err, "key-2")
}

func testIdempotencyClaimLiveConflicts(t *testing.T, s store.Store) {
	first := claim("key", "hash-a", base, time.Hour)
	if err := s.ClaimIdempotencyKey(t.Context(), first); err != nil {
		t.Fatalf("first claim: %v", err)
	}

	// Still in progress.
	err := s.ClaimIdempotencyKey(t.Context(), claim("key", "hash-b", base.Add(time.Minute), time.Hour))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("claim of an in-progress key: error = %v, want ErrConflict", err)
	}
	assertErrorNames(t, err, "key")

	// Completed and not expired.
	if err := s.CompleteIdempotencyKey(t.Context(), "key", "sb-one", base.Add(24*time.Hour)); err != nil {
		t.Fatalf("CompleteIdempotencyKey: %v", err)
	}
	err = s.ClaimIdempotencyKey(t.Context(), claim("key", "hash-b", base.Add(2*time.Hour), time.Hour))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("claim of a completed live key: error = %v, want ErrConflict", err)
	}

	want := first
	want.SandboxID = "sb-one"
	want.ExpiresAt = base.Add(24 * time.Hour)
	assertKey(t, getKey(t, s, "key"), want)
}

func testIdempotencyClaimExpiredReplaces(t *testing.T, s store.Store) {
	if err := s.ClaimIdempotencyKey(t.Context(), claim("key", "hash-a", base, time.Minute)); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := s.CompleteIdempotencyKey(t.Context(), "key", "sb-old", base.Add(time.Hour)); err != nil {
		t.Fatalf("CompleteIdempotencyKey: %v", err)
	}

	// A claim at exactly the expiry counts as after it.
	second := claim("key", "hash-b", base.Add(time.Hour), time.Minute)
	if err := s.ClaimIdempotencyKey(t.Context(), second); err != nil {
		t.Fatalf("claim of an expired key: %v", err)
	}
	assertKey(t, getKey(t, s, "key"), second)
}

func testIdempotencyComplete(t *testing.T, s store.Store) {
	err := s.CompleteIdempotencyKey(t.Context(), "missing", "sb-x", base.Add(time.Hour))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CompleteIdempotencyKey of an unknown key: error = %v, want ErrNotFound", err)
	}
	assertErrorNames(t, err, "missing")

	k := claim("key", "hash-a", base, time.Minute)
	if err := s.ClaimIdempotencyKey(t.Context(), k); err != nil {
		t.Fatalf("ClaimIdempotencyKey: %v", err)
	}
	if err := s.CompleteIdempotencyKey(t.Context(), "key", "sb-done", base.Add(24*time.Hour)); err != nil {
		t.Fatalf("CompleteIdempotencyKey: %v", err)
	}
	k.SandboxID = "sb-done"
	k.ExpiresAt = base.Add(24 * time.Hour)
	assertKey(t, getKey(t, s, "key"), k)
}

func testIdempotencyRelease(t *testing.T, s store.Store) {
	for _, key := range []string{"pending", "done"} {
		if err := s.ClaimIdempotencyKey(t.Context(), claim(key, "hash", base, time.Hour)); err != nil {
			t.Fatalf("claim %s: %v", key, err)
		}
	}
	if err := s.CompleteIdempotencyKey(t.Context(), "done", "sb-done", base.Add(time.Hour)); err != nil {
		t.Fatalf("CompleteIdempotencyKey: %v", err)
	}

	for _, key := range []string{"pending", "done", "unknown"} {
		if err := s.ReleaseIdempotencyKey(t.Context(), key); err != nil {
			t.Errorf("ReleaseIdempotencyKey(%s): %v", key, err)
		}
	}

	if _, err := s.GetIdempotencyKey(t.Context(), "pending"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("released in-progress key: error = %v, want ErrNotFound", err)
	}
	if got := getKey(t, s, "done"); got.SandboxID != "sb-done" {
		t.Errorf("released completed key: SandboxID = %q, want it kept as sb-done", got.SandboxID)
	}
	if err := s.ClaimIdempotencyKey(t.Context(), claim("pending", "hash", base, time.Hour)); err != nil {
		t.Errorf("claim after release: %v", err)
	}
}

func testIdempotencyPrune(t *testing.T, s store.Store) {
	keys := []struct {
		key string
		ttl time.Duration
	}{
		{"expired-early", time.Minute},
		{"expires-at-now", time.Hour},
		{"live", 2 * time.Hour},
	}
	for _, k := range keys {
		if err := s.ClaimIdempotencyKey(t.Context(), claim(k.key, "hash", base, k.ttl)); err != nil {
			t.Fatalf("claim %s: %v", k.key, err)
		}
	}

	deleted, err := s.PruneIdempotencyKeys(t.Context(), base.Add(time.Hour))
	if err != nil {
		t.Fatalf("PruneIdempotencyKeys: %v", err)
	}
	if deleted != 2 {
		t.Errorf("PruneIdempotencyKeys deleted %d, want 2", deleted)
	}
	for _, key := range []string{"expired-early", "expires-at-now"} {
		if _, err := s.GetIdempotencyKey(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after prune: error = %v, want ErrNotFound", key, err)
		}
	}
	getKey(t, s, "live")

	deleted, err = s.PruneIdempotencyKeys(t.Context(), base.Add(time.Hour))
	if err != nil {
		t.Fatalf("second PruneIdempotencyKeys: %v", err)
	}
	if deleted != 0 {
		t.Errorf("second PruneIdempotencyKeys deleted %d, want 0", deleted)
	}
}

func testIdempotencyConcurrentClaims(t *testing.T, s store.Store) {
	const claimers = 16
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won       []string
		conflicts int
	)
	for i := range claimers {
		wg.Go(func() {
			hash := fmt.Sprintf("hash-%d", i)
			err := s.ClaimIdempotencyKey(t.Context(), claim("shared", hash, base, time.Hour))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, hash)
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("claim %d: %v", i, err)
			}
		})
	}
	wg.Wait()

	if len(won) != 1 || conflicts != claimers-1 {
		t.Fatalf("%d claims succeeded and %d conflicted, want 1 and %d", len(won), conflicts, claimers-1)
	}
	if got := getKey(t, s, "shared"); got.RequestHash != won[0] {
		t.Errorf("stored RequestHash = %q, want the winner's %q", got.RequestHash, won[0])
	}
}
