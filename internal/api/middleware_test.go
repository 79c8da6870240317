package api

import (
	"cmp"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestAuthRequiredOnEveryRoute(t *testing.T) {
	const key = "test-key-0123456789"
	s := newStack(t, stackOptions{apiKey: key})
	id := s.spawn() // newRequest sends the key

	for _, rt := range Routes() {
		path := strings.ReplaceAll(rt.Pattern, "{id}", id) + "?path=/workspace&pattern=*"
		t.Run(rt.Method+" "+rt.Pattern, func(t *testing.T) {
			req := s.newRequest(t.Context(), rt.Method, path, nil)
			req.Header.Del("X-API-Key")
			resp := s.send(req)
			if rt.Public {
				if resp.status == http.StatusUnauthorized {
					t.Errorf("public route: status 401 without a key")
				}
				return
			}
			resp.wantError(t, http.StatusUnauthorized, codeUnauthorized)
			if resp.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}

			req = s.newRequest(t.Context(), rt.Method, path, nil)
			req.Header.Set("X-API-Key", "wrong")
			s.send(req).wantError(t, http.StatusUnauthorized, codeUnauthorized)
		})
	}

	t.Run("unknown route", func(t *testing.T) {
		req := s.newRequest(t.Context(), "GET", "/api/v1/nothing", nil)
		req.Header.Del("X-API-Key")
		s.send(req).wantError(t, http.StatusUnauthorized, codeUnauthorized)
	})
}

func TestAuthHeaderForms(t *testing.T) {
	const key = "test-key-0123456789"
	s := newStack(t, stackOptions{apiKey: key})

	tests := []struct {
		name   string
		header string
		value  string
		status int
	}{
		{"x-api-key", "X-API-Key", key, http.StatusOK},
		{"bearer", "Authorization", "Bearer " + key, http.StatusOK},
		{"bearer lower case", "Authorization", "bearer " + key, http.StatusOK},
		{"wrong bearer", "Authorization", "Bearer nope", http.StatusUnauthorized},
		{"basic scheme", "Authorization", "Basic " + key, http.StatusUnauthorized},
		{"key prefix", "X-API-Key", key[:5], http.StatusUnauthorized},
		{"empty", "X-API-Key", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := s.newRequest(t.Context(), "GET", "/api/v1/sandboxes", nil)
			req.Header.Del("X-API-Key")
			if tt.value != "" {
				req.Header.Set(tt.header, tt.value)
			}
			resp := s.send(req)
			if resp.status != tt.status {
				t.Errorf("status = %d, want %d; body %s", resp.status, tt.status, resp.body)
			}
		})
	}
}

func TestCORSPreflightBeforeAuth(t *testing.T) {
	s := newStack(t, stackOptions{apiKey: "secret-key", origins: []string{"https://app.example"}})

	req := s.newRequest(t.Context(), "OPTIONS", "/api/v1/sandboxes", nil)
	req.Header.Del("X-API-Key")
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "x-api-key, content-type")
	resp := s.send(req)

	resp.wantStatus(t, http.StatusNoContent)
	if got := resp.header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("Access-Control-Allow-Origin = %q, want the origin", got)
	}
	allowHeaders := strings.ToLower(resp.header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"x-api-key", "authorization", "content-type", "idempotency-key", "last-event-id", "x-request-id"} {
		if !strings.Contains(allowHeaders, h) {
			t.Errorf("Access-Control-Allow-Headers = %q, want %s", allowHeaders, h)
		}
	}
	if !strings.Contains(resp.header.Get("Access-Control-Allow-Methods"), "DELETE") {
		t.Errorf("Access-Control-Allow-Methods = %q, want DELETE", resp.header.Get("Access-Control-Allow-Methods"))
	}

	req = s.newRequest(t.Context(), "GET", "/api/v1/sandboxes", nil)
	req.Header.Set("Origin", "https://app.example")
	resp = s.send(req)
	resp.wantStatus(t, http.StatusOK)
	if !strings.Contains(resp.header.Get("Access-Control-Expose-Headers"), "X-Request-ID") {
		t.Errorf("Access-Control-Expose-Headers = %q, want X-Request-ID", resp.header.Get("Access-Control-Expose-Headers"))
	}

	req = s.newRequest(t.Context(), "GET", "/api/v1/sandboxes", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp = s.send(req)
	if got := resp.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("Access-Control-Allow-Origin for a foreign origin = %q, want none", got)
	}
}

func TestCORSAnyOrigin(t *testing.T) {
	s := newStack(t, stackOptions{origins: []string{"*"}})

	req := s.newRequest(t.Context(), "GET", "/api/v1/live", nil)
	req.Header.Set("Origin", "https://anything.example")
	resp := s.send(req)
	if got := resp.header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q, want *", got)
	}
}

func TestRequestID(t *testing.T) {
	s := newStack(t, stackOptions{})

	tests := []struct {
		name string
		sent string
		keep bool
	}{
		{"client id kept", "client-id-42", true},
		{"too long replaced", strings.Repeat("x", 129), false},
		{"non-ASCII replaced", "café", false},
		{"none generated", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := s.newRequest(t.Context(), "GET", "/api/v1/sandboxes/sb-nope", nil)
			if tt.sent != "" {
				req.Header["X-Request-Id"] = []string{tt.sent}
			}
			resp := s.send(req)
			body := resp.wantError(t, http.StatusNotFound, codeNotFound)
			if tt.keep && body.RequestID != tt.sent {
				t.Errorf("request_id = %q, want %q", body.RequestID, tt.sent)
			}
			if !tt.keep && (body.RequestID == tt.sent || len(body.RequestID) > maxRequestIDLen) {
				t.Errorf("request_id = %q, want a generated one", body.RequestID)
			}
		})
	}
}

func TestHealthRoutes(t *testing.T) {
	s := newStack(t, stackOptions{})

	resp := s.do("GET", "/api/v1/live", nil)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[map[string]string](t, resp)["status"]; got != "ok" {
		t.Errorf("live status = %q, want ok", got)
	}

	resp = s.do("GET", "/api/v1/ready", nil)
	resp.wantStatus(t, http.StatusOK)
	ready := decodeBody[map[string]string](t, resp)
	if ready["status"] != "ready" || ready["provider"] != "mock" {
		t.Errorf("ready = %v, want status ready and provider mock", ready)
	}

	resp = s.do("GET", "/api/v1/health", nil)
	resp.wantStatus(t, http.StatusOK)
	health := decodeBody[healthJSON](t, resp)
	if health.Status != "ok" || health.Version != "test" || health.DefaultProvider != "mock" {
		t.Errorf("health = %+v, want status ok, version test, default_provider mock", health)
	}
	mock, ok := health.Providers["mock"]
	if !ok || !mock.Healthy || mock.Capabilities.Isolation == "" {
		t.Errorf("providers[mock] = %+v, want healthy with capabilities", mock)
	}
	if health.UptimeSeconds < 0 {
		t.Errorf("uptime_seconds = %d, want >= 0", health.UptimeSeconds)
	}
}

func TestReadyWithoutUsableProvider(t *testing.T) {
	// "auto" never picks the mock provider, so no default provider exists.
	s := newStack(t, stackOptions{defaultProvider: "auto"})

	s.do("GET", "/api/v1/ready", nil).wantError(t, http.StatusServiceUnavailable, codeUnavailable, "provider")

	resp := s.do("GET", "/api/v1/health", nil)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[healthJSON](t, resp).DefaultProvider; got != "" {
		t.Errorf("default_provider = %q, want empty", got)
	}
}

func TestGarbageInputNeverInternalError(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	bodies := []string{
		"", "null", "true", "0", `"text"`, "[]", "{", "}", `{"a":`, "\x00\x01\x02", "\xff\xfe",
		`{"command":123}`, `{"command":["a"]}`, `{"args":"x","command":"true"}`, `{"env":[]}`,
		`{"metadata":{"k":1}}`, `{"ttl":10}`, `{"ttl":"1e400h"}`, `{"memory_mb":1e400}`,
		`{"memory_mb":9223372036854775808}`, `{"path":"\u0000"}`, `{"path":"a\u0000b","content":"x"}`,
		`{"mode":"-1","path":"x"}`, `{"mode":"99999999999999999999","path":"x"}`,
		`{"old_path":"","new_path":"x"}`, `{"timeout":"-1s","command":"true"}`,
		`{"command":"true","workdir":"\u0000"}`, `{"image":"` + strings.Repeat("x", 2000) + `"}`,
		`{"metadata":{"":"x"}}`, `{"owner_id":"\u0007"}`, `{"runtime":"no such runtime"}`,
	}
	queries := []string{
		"", "?path=", "?path=%00", "?path=/workspace/%00x", "?path=..%2F..", "?pattern=[", "?pattern=%00",
		"?lines=99999999999999999999", "?state=%ff", "?recursive=2", "?mode=0o7777", "?path=/workspace&mode=x",
	}

	check := func(method, path string, body string) {
		t.Helper()
		resp := s.do(method, path, body)
		// 501 is the response of a provider without stats or logs.
		if resp.status >= 500 && resp.status != http.StatusNotImplemented {
			t.Errorf("%s %s body %q: status %d: %s", method, path, body, resp.status, resp.body)
		}
		if resp.status == http.StatusCreated {
			s.do("DELETE", sandboxPath(decodeBody[sandboxJSON](t, resp).ID, ""), nil)
		}
	}

	// Destroying the sandbox comes last, so that the other routes meet a
	// running one.
	routes := Routes()
	slices.SortStableFunc(routes, func(a, b Route) int {
		return cmp.Compare(isDestroyRoute(a), isDestroyRoute(b))
	})
	for _, rt := range routes {
		if rt.Pattern == "/api/v1/events" {
			continue // the stream stays open; TestEventsInvalidQuery covers its input
		}
		path := strings.ReplaceAll(rt.Pattern, "{id}", id)
		for _, q := range queries {
			check(rt.Method, path+q, "{}")
		}
		for _, body := range bodies {
			check(rt.Method, path+"?path=/workspace/g&pattern=*", body)
		}
	}
	for _, p := range []string{"/api/v1/sandboxes/%00", "/api/v1/sandboxes/" + strings.Repeat("a", 5000), "/api/v1/sandboxes/%ff/exec"} {
		if resp := s.do("GET", p, nil); resp.status >= 500 {
			t.Errorf("GET %s: status %d: %s", p, resp.status, resp.body)
		}
	}
}

// isDestroyRoute returns 1 for DELETE /sandboxes/{id} and 0 for the others.
func isDestroyRoute(rt Route) int {
	if rt.Method == "DELETE" && rt.Pattern == "/api/v1/sandboxes/{id}" {
		return 1
	}
	return 0
}

func TestPanicBecomesInternalError(t *testing.T) {
	s := &server{log: testLogger(t)}
	h := s.logRequests(s.recoverPanics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	})))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	resp, err := srv.Client().Get(srv.URL + "/api/v1/anything")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}

	r := response{status: resp.StatusCode, header: resp.Header, body: data}
	body := r.wantError(t, http.StatusInternalServerError, codeInternal)
	if strings.Contains(body.Message, "boom") {
		t.Errorf("message %q contains the panic value", body.Message)
	}
}
