package api

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
)

func TestSpawnReturnsSandbox(t *testing.T) {
	s := newStack(t, stackOptions{})
	before := time.Now().Add(-time.Second)

	resp := s.do("POST", "/api/v1/sandboxes", map[string]any{
		"memory_mb": 256,
		"vcpus":     2,
		"ttl":       "10m",
		"owner_id":  "team-a",
		"metadata":  map[string]string{"purpose": "test"},
	})
	resp.wantStatus(t, http.StatusCreated)
	sb := decodeBody[sandboxJSON](t, resp)

	if !strings.HasPrefix(sb.ID, "sb-") {
		t.Errorf("id = %q, want the sb- prefix", sb.ID)
	}
	if got, want := resp.header.Get("Location"), "/api/v1/sandboxes/"+sb.ID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if sb.State != "running" {
		t.Errorf("state = %q, want running", sb.State)
	}
	if sb.Provider != "mock" {
		t.Errorf("provider = %q, want mock", sb.Provider)
	}
	if sb.MemoryMB != 256 || sb.VCPUs != 2 {
		t.Errorf("memory_mb, vcpus = %d, %d, want 256, 2", sb.MemoryMB, sb.VCPUs)
	}
	if sb.OwnerID != "team-a" {
		t.Errorf("owner_id = %q, want team-a", sb.OwnerID)
	}
	if sb.Metadata["purpose"] != "test" {
		t.Errorf("metadata = %v, want purpose=test", sb.Metadata)
	}

	created := parseUTC(t, "created_at", sb.CreatedAt)
	expires := parseUTC(t, "expires_at", sb.ExpiresAt)
	parseUTC(t, "updated_at", sb.UpdatedAt)
	if created.Before(before) {
		t.Errorf("created_at = %v, want after %v", created, before)
	}
	if d := expires.Sub(created); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("expires_at - created_at = %v, want about 10m", d)
	}
	if sb.DestroyedAt != "" {
		t.Errorf("destroyed_at = %q, want it omitted", sb.DestroyedAt)
	}
}

// parseUTC parses an RFC 3339 time and checks that it is in UTC.
func parseUTC(t *testing.T, field, value string) time.Time {
	t.Helper()
	if !strings.HasSuffix(value, "Z") {
		t.Errorf("%s = %q, want RFC 3339 in UTC", field, value)
	}
	ts, err := time.Parse(time.RFC3339, value)
	if err != nil {
		t.Fatalf("%s = %q: %v", field, value, err)
	}
	return ts
}

func TestSpawnMetadataIsObject(t *testing.T) {
	s := newStack(t, stackOptions{})

	for _, body := range []string{"", "{}", `{"metadata":null}`} {
		resp := s.do("POST", "/api/v1/sandboxes", body)
		resp.wantStatus(t, http.StatusCreated)
		if !bytes.Contains(resp.body, []byte(`"metadata":{}`)) {
			t.Errorf("body %q: spawn response %s has no empty metadata object", body, resp.body)
		}
	}
}

func TestGetSandbox(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	resp := s.do("GET", sandboxPath(id, ""), nil)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[sandboxJSON](t, resp); got.ID != id || got.State != "running" {
		t.Errorf("got id %q state %q, want %q running", got.ID, got.State, id)
	}

	s.do("GET", sandboxPath("sb-neverissued", ""), nil).
		wantError(t, http.StatusNotFound, codeNotFound, "sb-neverissued")
}

func TestDestroySandboxTwice(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	for i := range 2 {
		resp := s.do("DELETE", sandboxPath(id, ""), nil)
		resp.wantStatus(t, http.StatusOK)
		if got := decodeBody[map[string]string](t, resp)["status"]; got != "destroyed" {
			t.Errorf("delete %d: status = %q, want destroyed", i+1, got)
		}
	}

	s.do("GET", sandboxPath(id, ""), nil).
		wantError(t, http.StatusNotFound, codeNotFound, id, "destroyed")
	s.do("POST", sandboxPath(id, "/exec"), map[string]any{"command": "true"}).
		wantError(t, http.StatusNotFound, codeNotFound, id, "destroyed")
	s.do("GET", sandboxPath(id, "/files/list?path=/workspace"), nil).
		wantError(t, http.StatusNotFound, codeNotFound, "destroyed")
	s.do("DELETE", sandboxPath("sb-neverissued", ""), nil).
		wantError(t, http.StatusNotFound, codeNotFound, "sb-neverissued")
}

func TestListSandboxes(t *testing.T) {
	s := newStack(t, stackOptions{})
	first := s.spawn()
	resp := s.do("POST", "/api/v1/sandboxes", map[string]any{"owner_id": "alice"})
	resp.wantStatus(t, http.StatusCreated)
	second := decodeBody[sandboxJSON](t, resp).ID
	third := s.spawn()
	s.do("DELETE", sandboxPath(third, ""), nil).wantStatus(t, http.StatusOK)

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{third, second, first}},
		{"?state=running", []string{second, first}},
		{"?state=destroyed", []string{third}},
		{"?owner_id=alice", []string{second}},
		{"?owner_id=nobody", []string{}},
	}
	for _, tt := range tests {
		resp := s.do("GET", "/api/v1/sandboxes"+tt.query, nil)
		resp.wantStatus(t, http.StatusOK)
		if bytes.Equal(bytes.TrimSpace(resp.body), []byte("null")) {
			t.Errorf("list%s = null, want an array", tt.query)
		}
		list := decodeBody[[]sandboxJSON](t, resp)
		var got []string
		for _, sb := range list {
			got = append(got, sb.ID)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("list%s = %v, want %v", tt.query, got, tt.want)
		}
	}

	s.do("GET", "/api/v1/sandboxes?state=sleeping", nil).
		wantError(t, http.StatusBadRequest, codeBadRequest, "state", "running", "destroyed", "sleeping")
}

func TestExtendSandbox(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	resp := s.do("POST", sandboxPath(id, "/extend"), map[string]string{"ttl": "2h"})
	resp.wantStatus(t, http.StatusOK)
	sb := decodeBody[sandboxJSON](t, resp)
	expires := parseUTC(t, "expires_at", sb.ExpiresAt)
	if d := time.Until(expires); d < 119*time.Minute || d > 121*time.Minute {
		t.Errorf("expires_at is %v from now, want about 2h", d)
	}

	s.do("POST", sandboxPath(id, "/extend"), map[string]string{"ttl": "soon"}).
		wantError(t, http.StatusBadRequest, codeBadRequest, "ttl", "soon")
	s.do("POST", sandboxPath(id, "/extend"), map[string]string{}).
		wantError(t, http.StatusBadRequest, codeBadRequest, "ttl")
	s.do("POST", sandboxPath(id, "/extend"), map[string]string{"ttl": "1000h"}).
		wantError(t, http.StatusTooManyRequests, codeResourceLimit, "max_ttl")
}

func TestSandboxLogsAndStats(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	resp := s.do("GET", sandboxPath(id, "/logs?lines=10"), nil)
	switch resp.status {
	case http.StatusOK:
		logs := decodeBody[logsJSON](t, resp)
		if logs.SandboxID != id {
			t.Errorf("sandbox_id = %q, want %q", logs.SandboxID, id)
		}
		if logs.Lines == nil {
			t.Errorf("lines = null, want an array")
		}
	case http.StatusNotImplemented:
		resp.wantError(t, http.StatusNotImplemented, codeNotImplemented)
	default:
		t.Errorf("logs: status = %d, want 200 or 501; body %s", resp.status, resp.body)
	}

	for _, lines := range []string{"abc", "-1", "1.5"} {
		s.do("GET", sandboxPath(id, "/logs?lines="+lines), nil).
			wantError(t, http.StatusBadRequest, codeBadRequest, "lines")
	}

	resp = s.do("GET", sandboxPath(id, "/stats"), nil)
	switch resp.status {
	case http.StatusOK:
		stats := decodeBody[map[string]any](t, resp)
		for _, key := range []string{"cpu_percent", "memory_bytes", "memory_limit_bytes", "pids"} {
			if _, ok := stats[key]; !ok {
				t.Errorf("stats has no %q: %s", key, resp.body)
			}
		}
	case http.StatusNotImplemented:
		resp.wantError(t, http.StatusNotImplemented, codeNotImplemented)
	default:
		t.Errorf("stats: status = %d, want 200 or 501; body %s", resp.status, resp.body)
	}
}

func TestSpawnOverLimits(t *testing.T) {
	s := newStack(t, stackOptions{limits: func(l *config.Limits) { l.MaxSandboxes = 2 }})
	s.spawn()
	s.spawn()

	s.do("POST", "/api/v1/sandboxes", map[string]any{}).
		wantError(t, http.StatusTooManyRequests, codeResourceLimit, "max_sandboxes", "2")
	s.do("POST", "/api/v1/sandboxes", map[string]any{"memory_mb": 1 << 20}).
		wantError(t, http.StatusTooManyRequests, codeResourceLimit, "max_memory_mb", "8192")
}
