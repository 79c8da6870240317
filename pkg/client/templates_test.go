package client_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func TestTemplateLifecycle(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()

	want := client.Template{
		Name:         "py",
		Description:  "python sandbox",
		Image:        "python:3.12-slim",
		MemoryMB:     768,
		VCPUs:        2,
		TTL:          45 * time.Minute,
		Network:      true,
		Env:          map[string]string{"GREETING": "hi"},
		Setup:        []string{"echo ready > ready.txt"},
		SetupTimeout: 30 * time.Second,
		Metadata:     map[string]string{"team": "ml"},
	}
	created, err := c.CreateTemplate(ctx, want)
	if err != nil {
		t.Fatalf("CreateTemplate: %v", err)
	}
	if created.TTL != want.TTL || created.SetupTimeout != want.SetupTimeout || !slices.Equal(created.Setup, want.Setup) ||
		created.Env["GREETING"] != "hi" || created.CreatedAt.IsZero() {
		t.Errorf("created = %+v, want the fields sent and a creation time", created)
	}

	if _, err := c.CreateTemplate(ctx, want); !errors.Is(err, client.ErrConflict) {
		t.Errorf("second CreateTemplate error = %v, want ErrConflict", err)
	}

	want.Image = "python:3.13-slim"
	updated, err := c.UpdateTemplate(ctx, want)
	if err != nil {
		t.Fatalf("UpdateTemplate: %v", err)
	}
	if updated.Image != "python:3.13-slim" || !updated.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("updated = %+v, want the new image and the same creation time", updated)
	}

	got, err := c.GetTemplate(ctx, "py")
	if err != nil || got.Image != "python:3.13-slim" {
		t.Errorf("GetTemplate = %+v, %v, want the updated template", got, err)
	}
	list, err := c.ListTemplates(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "py" {
		t.Errorf("ListTemplates = %+v, %v, want only py", list, err)
	}

	if err := c.DeleteTemplate(ctx, "py"); err != nil {
		t.Fatalf("DeleteTemplate: %v", err)
	}
	if _, err := c.GetTemplate(ctx, "py"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GetTemplate after delete: error = %v, want ErrNotFound", err)
	}
	if _, err := c.CreateTemplate(ctx, client.Template{Name: "Bad Name"}); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("CreateTemplate with a bad name: error = %v, want ErrBadRequest", err)
	}
}

func TestSpawnTemplateOverrides(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	_, err := c.CreateTemplate(ctx, client.Template{
		Name:     "base",
		MemoryMB: 512,
		Network:  true,
		Env:      map[string]string{"A": "template"},
		Setup:    []string{"echo template > setup.txt"},
	})
	if err != nil {
		t.Fatalf("CreateTemplate: %v", err)
	}

	off := false
	sb, err := c.SpawnTemplate(ctx, "base", client.TemplateSpawnRequest{
		MemoryMB: 256,
		Network:  &off,
		Env:      map[string]string{"B": "request"},
	})
	if err != nil {
		t.Fatalf("SpawnTemplate: %v", err)
	}
	t.Cleanup(func() { _ = c.Destroy(ctx, sb.ID) })
	if sb.MemoryMB != 256 || sb.Network {
		t.Errorf("sandbox memory, network = %d, %v, want 256, false", sb.MemoryMB, sb.Network)
	}

	res, err := c.Exec(ctx, sb.ID, client.ExecRequest{Shell: true, Command: `printf '%s %s ' "$A" "$B"; cat setup.txt`})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if got := res.Stdout; got != "template request template\n" {
		t.Errorf("output = %q, want the merged env and the setup's file", got)
	}
}

func TestSpawnTemplateSetupFailure(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	if _, err := c.CreateTemplate(ctx, client.Template{Name: "broken", Setup: []string{"echo oops >&2; exit 4"}}); err != nil {
		t.Fatalf("CreateTemplate: %v", err)
	}

	_, err := c.SpawnTemplate(ctx, "broken", client.TemplateSpawnRequest{})
	if !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("SpawnTemplate error = %v, want ErrBadRequest", err)
	}
	for _, part := range []string{"exit 4", "exit status 4", "oops"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
	live, err := c.List(ctx, client.ListOptions{State: client.StateRunning})
	if err != nil || len(live) != 0 {
		t.Errorf("running sandboxes = %d (%v), want none", len(live), err)
	}
}

func TestSpawnIdempotencyKey(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()

	first, err := c.SpawnIdempotent(ctx, "client-key", client.SpawnRequest{TTL: time.Hour})
	if err != nil {
		t.Fatalf("SpawnIdempotent: %v", err)
	}
	t.Cleanup(func() { _ = c.Destroy(ctx, first.ID) })
	again, err := c.SpawnIdempotent(ctx, "client-key", client.SpawnRequest{TTL: time.Hour})
	if err != nil || again.ID != first.ID {
		t.Errorf("retry = %s, %v, want %s", again.ID, err, first.ID)
	}
	if _, err := c.SpawnIdempotent(ctx, "client-key", client.SpawnRequest{MemoryMB: 128}); !errors.Is(err, client.ErrConflict) {
		t.Errorf("reuse with another request: error = %v, want ErrConflict", err)
	}

	if _, err := c.CreateTemplate(ctx, client.Template{Name: "tiny"}); err != nil {
		t.Fatalf("CreateTemplate: %v", err)
	}
	fromTemplate, err := c.SpawnTemplate(ctx, "tiny", client.TemplateSpawnRequest{IdempotencyKey: "tpl-key"})
	if err != nil {
		t.Fatalf("SpawnTemplate: %v", err)
	}
	t.Cleanup(func() { _ = c.Destroy(ctx, fromTemplate.ID) })
	retried, err := c.SpawnTemplate(ctx, "tiny", client.TemplateSpawnRequest{IdempotencyKey: "tpl-key"})
	if err != nil || retried.ID != fromTemplate.ID {
		t.Errorf("template retry = %s, %v, want %s", retried.ID, err, fromTemplate.ID)
	}
}
