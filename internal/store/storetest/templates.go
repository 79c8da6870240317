package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// fullTemplate returns a template with every field set, created at
// createdAt.
func fullTemplate(name string, createdAt time.Time) store.Template {
	return store.Template{
		Name:        name,
		Description: "Python 3.12 with the test tools — ünïcode ✓",
		Image:       "python:3.12-slim",
		Provider:    "docker",
		Runtime:     "runsc",
		MemoryMB:    1024,
		VCPUs:       2,
		TTL:         90 * time.Minute,
		Network:     true,
		Env:         map[string]string{"PIP_NO_CACHE_DIR": "1", "GREETING": "grüße"},
		Setup: []string{
			"pip install -r requirements.txt",
			`echo "ready" > /workspace/.ready && printf '%s\n' 'done'`,
		},
		SetupTimeout: 5 * time.Minute,
		Metadata:     map[string]string{"team": "infra", "名前": "テンプレート"},
		CreatedAt:    createdAt,
		UpdatedAt:    createdAt.Add(time.Second),
	}
}

// assertTemplate reports every field of got that differs from want. Times
// are compared like assertSandbox compares them, and nil maps and lists in
// want count as empty.
func assertTemplate(t *testing.T, got, want store.Template) {
	t.Helper()

	fields := []struct {
		name      string
		got, want any
	}{
		{"Name", got.Name, want.Name},
		{"Description", got.Description, want.Description},
		{"Image", got.Image, want.Image},
		{"Provider", got.Provider, want.Provider},
		{"Runtime", got.Runtime, want.Runtime},
		{"MemoryMB", got.MemoryMB, want.MemoryMB},
		{"VCPUs", got.VCPUs, want.VCPUs},
		{"TTL", got.TTL, want.TTL},
		{"Network", got.Network, want.Network},
		{"SetupTimeout", got.SetupTimeout, want.SetupTimeout},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("template %q: %s = %#v, want %#v", want.Name, f.name, f.got, f.want)
		}
	}

	assertMap(t, want.Name+" Env", got.Env, want.Env)
	assertMap(t, want.Name+" Metadata", got.Metadata, want.Metadata)
	if got.Setup == nil {
		t.Errorf("template %q: Setup is nil, want a non-nil list", want.Name)
	}
	if len(got.Setup) != 0 || len(want.Setup) != 0 {
		if !slices.Equal(got.Setup, want.Setup) {
			t.Errorf("template %q: Setup = %q, want %q", want.Name, got.Setup, want.Setup)
		}
	}

	assertTime(t, want.Name+" CreatedAt", got.CreatedAt, want.CreatedAt)
	assertTime(t, want.Name+" UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func createTemplate(t *testing.T, s store.Store, tpl store.Template) {
	t.Helper()
	if err := s.CreateTemplate(t.Context(), tpl); err != nil {
		t.Fatalf("CreateTemplate(%s): %v", tpl.Name, err)
	}
}

func testTemplateRoundTrip(t *testing.T, s store.Store) {
	want := fullTemplate("python", base.In(time.FixedZone("UTC-03:00", -3*3600)))
	createTemplate(t, s, want)

	got, err := s.GetTemplate(t.Context(), want.Name)
	if err != nil {
		t.Fatalf("GetTemplate: %v", err)
	}
	assertTemplate(t, got, want)
}

func testTemplateZeroValues(t *testing.T, s store.Store) {
	want := store.Template{Name: "bare"}
	createTemplate(t, s, want)

	got, err := s.GetTemplate(t.Context(), want.Name)
	if err != nil {
		t.Fatalf("GetTemplate: %v", err)
	}
	assertTemplate(t, got, want)
}

func testTemplateCreateDuplicate(t *testing.T, s store.Store) {
	first := fullTemplate("dup", base)
	createTemplate(t, s, first)

	second := fullTemplate("dup", base.Add(time.Minute))
	second.Image = "alpine:3"
	err := s.CreateTemplate(t.Context(), second)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateTemplate error = %v, want ErrConflict", err)
	}
	assertErrorNames(t, err, "dup")

	got, err := s.GetTemplate(t.Context(), "dup")
	if err != nil {
		t.Fatalf("GetTemplate: %v", err)
	}
	assertTemplate(t, got, first)
}

func testTemplateEmptyName(t *testing.T, s store.Store) {
	if err := s.CreateTemplate(t.Context(), store.Template{Image: "alpine:3"}); err == nil {
		t.Errorf("CreateTemplate without a name succeeded, want an error")
	}
	list, err := s.ListTemplates(t.Context())
	if err != nil {
		t.Fatalf("ListTemplates: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("ListTemplates = %d templates, want none", len(list))
	}
}

func testTemplateGetMissing(t *testing.T, s store.Store) {
	_, err := s.GetTemplate(t.Context(), "nope")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetTemplate error = %v, want ErrNotFound", err)
	}
	assertErrorNames(t, err, "nope")
}

func testTemplateListSorted(t *testing.T, s store.Store) {
	empty, err := s.ListTemplates(t.Context())
	if err != nil {
		t.Fatalf("ListTemplates on an empty store: %v", err)
	}
	if empty == nil || len(empty) != 0 {
		t.Errorf("ListTemplates on an empty store = %#v, want an empty non-nil list", empty)
	}

	for _, name := range []string{"node", "alpine", "python.3-12", "go_1"} {
		createTemplate(t, s, fullTemplate(name, base))
	}
	list, err := s.ListTemplates(t.Context())
	if err != nil {
		t.Fatalf("ListTemplates: %v", err)
	}
	var names []string
	for _, tpl := range list {
		names = append(names, tpl.Name)
	}
	want := []string{"alpine", "go_1", "node", "python.3-12"}
	if !slices.Equal(names, want) {
		t.Errorf("ListTemplates names = %v, want %v", names, want)
	}
	if len(list) > 0 {
		assertTemplate(t, list[0], fullTemplate("alpine", base))
	}
}

func testTemplateUpdate(t *testing.T, s store.Store) {
	createTemplate(t, s, fullTemplate("web", base))

	changed := store.Template{
		Name:      "web",
		Image:     "node:22",
		MemoryMB:  256,
		Setup:     []string{"npm ci"},
		Env:       map[string]string{"NODE_ENV": "test"},
		CreatedAt: base.Add(48 * time.Hour), // ignored: CreatedAt is kept
		UpdatedAt: base.Add(-time.Hour),     // ignored: UpdatedAt becomes now
	}
	before := time.Now()
	if err := s.UpdateTemplate(t.Context(), changed); err != nil {
		t.Fatalf("UpdateTemplate: %v", err)
	}
	after := time.Now()

	got, err := s.GetTemplate(t.Context(), "web")
	if err != nil {
		t.Fatalf("GetTemplate: %v", err)
	}
	want := changed
	want.CreatedAt = base
	want.UpdatedAt = got.UpdatedAt
	assertTemplate(t, got, want)
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(after) {
		t.Errorf("UpdatedAt = %v, want the time of the update, between %v and %v", got.UpdatedAt, before, after)
	}
}

func testTemplateUpdateMissing(t *testing.T, s store.Store) {
	err := s.UpdateTemplate(t.Context(), fullTemplate("ghost", base))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateTemplate error = %v, want ErrNotFound", err)
	}
	assertErrorNames(t, err, "ghost")
	if _, err := s.GetTemplate(t.Context(), "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTemplate after a failed update: error = %v, want ErrNotFound", err)
	}
}

func testTemplateDelete(t *testing.T, s store.Store) {
	createTemplate(t, s, fullTemplate("gone", base))
	createTemplate(t, s, fullTemplate("kept", base))

	if err := s.DeleteTemplate(t.Context(), "gone"); err != nil {
		t.Fatalf("DeleteTemplate: %v", err)
	}
	if _, err := s.GetTemplate(t.Context(), "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTemplate after delete: error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetTemplate(t.Context(), "kept"); err != nil {
		t.Errorf("GetTemplate of the other template: %v", err)
	}

	err := s.DeleteTemplate(t.Context(), "gone")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteTemplate error = %v, want ErrNotFound", err)
	}
	assertErrorNames(t, err, "gone")
}
