package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func TestProbes(t *testing.T) {
	c := newClient(t)

	if err := c.Live(t.Context()); err != nil {
		t.Errorf("Live: %v", err)
	}
	if err := c.Ready(t.Context()); err != nil {
		t.Errorf("Ready: %v", err)
	}
	h, err := c.Health(t.Context())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if h.Version != "v9.9.9-test" {
		t.Errorf("Health version: got %q, want %q", h.Version, "v9.9.9-test")
	}
	if h.DefaultProvider != "mock" {
		t.Errorf("Health default provider: got %q, want mock", h.DefaultProvider)
	}
	if !h.Providers["mock"].Healthy {
		t.Errorf("Health providers: got %+v, want mock healthy", h.Providers)
	}
}

func TestSandboxLifecycle(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()

	before := time.Now().Add(-time.Second)
	sb, err := c.Spawn(ctx, client.SpawnRequest{
		TTL:      10 * time.Minute,
		OwnerID:  "alice",
		MemoryMB: 256,
		Metadata: map[string]string{"job": "build"},
	})
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	if sb.ID == "" || sb.State != client.StateRunning || sb.Provider != "mock" {
		t.Errorf("Spawn: got id=%q state=%q provider=%q, want an ID, running, mock", sb.ID, sb.State, sb.Provider)
	}
	if sb.MemoryMB != 256 {
		t.Errorf("Spawn memory: got %d, want 256", sb.MemoryMB)
	}
	if sb.CreatedAt.Before(before) {
		t.Errorf("Spawn created_at %v is before the request at %v", sb.CreatedAt, before)
	}
	if got := sb.ExpiresAt.Sub(sb.CreatedAt); got < 9*time.Minute || got > 11*time.Minute {
		t.Errorf("Spawn expiry: got %v after creation, want about 10m", got)
	}

	got, err := c.Get(ctx, sb.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.OwnerID != "alice" || got.Metadata["job"] != "build" {
		t.Errorf("Get: got owner %q metadata %v, want alice and job=build", got.OwnerID, got.Metadata)
	}

	other := spawn(t, c)
	mine, err := c.List(ctx, client.ListOptions{OwnerID: "alice"})
	if err != nil {
		t.Fatalf("List by owner: %v", err)
	}
	if len(mine) != 1 || mine[0].ID != sb.ID {
		t.Errorf("List by owner: got %v, want only %s", ids(mine), sb.ID)
	}
	running, err := c.List(ctx, client.ListOptions{State: client.StateRunning})
	if err != nil {
		t.Fatalf("List running: %v", err)
	}
	if len(running) != 2 || running[0].ID != other.ID {
		t.Errorf("List running: got %v, want [%s %s] newest first", ids(running), other.ID, sb.ID)
	}

	extended, err := c.Extend(ctx, sb.ID, 2*time.Hour)
	if err != nil {
		t.Fatalf("Extend: %v", err)
	}
	if left := time.Until(extended.ExpiresAt); left < 119*time.Minute || left > 121*time.Minute {
		t.Errorf("Extend: expiry in %v, want about 2h", left)
	}

	if _, err := c.Logs(ctx, sb.ID, 10); err != nil {
		t.Errorf("Logs: %v", err)
	}

	if err := c.Destroy(ctx, sb.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := c.Destroy(ctx, sb.ID); err != nil {
		t.Errorf("second Destroy: got %v, want nil", err)
	}
	if _, err := c.Get(ctx, sb.ID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get after Destroy: got %v, want ErrNotFound", err)
	}
	destroyed, err := c.List(ctx, client.ListOptions{State: client.StateDestroyed})
	if err != nil {
		t.Fatalf("List destroyed: %v", err)
	}
	if len(destroyed) != 1 || destroyed[0].DestroyedAt.IsZero() {
		t.Errorf("List destroyed: got %+v, want one sandbox with destroyed_at", destroyed)
	}
}

func TestSpawnErrors(t *testing.T) {
	c := newClient(t)

	tests := []struct {
		name string
		req  client.SpawnRequest
		want error
	}{
		{"unknown provider", client.SpawnRequest{Provider: "nope"}, client.ErrNotFound},
		{"memory above max", client.SpawnRequest{MemoryMB: 1 << 20}, client.ErrResourceLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Spawn(t.Context(), tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %T is not an *APIError", err)
			}
			if apiErr.RequestID == "" || apiErr.Message == "" {
				t.Errorf("APIError %+v lacks a message or request ID", apiErr)
			}
		})
	}
}

func TestGetUnknownSandbox(t *testing.T) {
	c := newClient(t)
	_, err := c.Get(t.Context(), "sb-doesnotexist")
	if !errors.Is(err, client.ErrNotFound) {
		t.Errorf("got %v, want ErrNotFound", err)
	}
}

func ids(list []client.Sandbox) []string {
	out := make([]string, len(list))
	for i, sb := range list {
		out[i] = sb.ID
	}
	return out
}
