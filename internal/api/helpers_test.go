package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
)

// stackOptions adjusts the server that newStack builds.
type stackOptions struct {
	limits          func(*config.Limits) // edits the default limits
	apiKey          string
	origins         []string
	defaultProvider string // "mock" when empty
}

// stack is the whole server on loopback: the HTTP API, the real manager,
// the SQLite store and the mock provider, each in a temporary directory.
type stack struct {
	t       *testing.T
	srv     *httptest.Server
	manager *orchestrator.Manager
	apiKey  string
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	logger := testLogger(t)

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stacyvm.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })

	prov, err := mock.New(mock.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatalf("create mock provider: %v", err)
	}
	defaultProvider := opts.defaultProvider
	if defaultProvider == "" {
		defaultProvider = "mock"
	}
	registry := orchestrator.NewRegistry(defaultProvider)
	registry.Register(prov)

	limits := config.Default().Limits
	if opts.limits != nil {
		opts.limits(&limits)
	}
	manager, err := orchestrator.New(orchestrator.Options{
		Store:    st,
		Registry: registry,
		Limits:   limits,
		Logger:   logger,
	})
	if err != nil {
		t.Fatalf("create manager: %v", err)
	}
	if err := manager.Start(context.Background()); err != nil {
		t.Fatalf("start manager: %v", err)
	}
	t.Cleanup(func() { manager.Close() })

	handler := New(Options{
		Manager: manager,
		Logger:  logger,
		Limits:  limits,
		Version: "test",
		CORS:    config.CORSConfig{AllowedOrigins: opts.origins},
		APIKey:  config.Secret(opts.apiKey),
	})
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)

	return &stack{t: t, srv: srv, manager: manager, apiKey: opts.apiKey}
}

// testLogger returns a logger that writes to t.Log until the test ends, so
// component logs show only for failed tests.
func testLogger(t *testing.T) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// newRequest builds a request to the stack. body may be nil, a string or
// []byte sent as it is, an io.Reader, or any other value sent as JSON.
func (s *stack) newRequest(ctx context.Context, method, path string, body any) *http.Request {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.t.Fatalf("encode request body: %v", err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.srv.URL+path, r)
	if err != nil {
		s.t.Fatalf("build request: %v", err)
	}
	if s.apiKey != "" {
		req.Header.Set("X-API-Key", s.apiKey)
	}
	return req
}

// send performs req and reads the whole response.
func (s *stack) send(req *http.Request) response {
	s.t.Helper()
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// do sends one request; see newRequest for body.
func (s *stack) do(method, path string, body any) response {
	s.t.Helper()
	return s.send(s.newRequest(s.t.Context(), method, path, body))
}

// spawn creates a sandbox with default settings and returns its ID.
func (s *stack) spawn() string {
	s.t.Helper()
	resp := s.do("POST", "/api/v1/sandboxes", map[string]any{})
	resp.wantStatus(s.t, http.StatusCreated)
	return decodeBody[sandboxJSON](s.t, resp).ID
}

// sandboxPath returns the API path of a sandbox sub-resource.
func sandboxPath(id, rest string) string {
	return "/api/v1/sandboxes/" + id + rest
}

func (r response) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.body)
	}
}

// wantError checks an error response: the status, the code, a message
// containing every fragment, and a request_id equal to X-Request-ID.
func (r response) wantError(t *testing.T, status int, code string, fragments ...string) errorBody {
	t.Helper()
	r.wantStatus(t, status)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body errorBody
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("decode error body %q: %v", r.body, err)
	}
	if body.Code != code {
		t.Errorf("code = %q, want %q (message %q)", body.Code, code, body.Message)
	}
	if body.Message == "" {
		t.Errorf("message is empty")
	}
	for _, f := range fragments {
		if !strings.Contains(body.Message, f) {
			t.Errorf("message %q does not contain %q", body.Message, f)
		}
	}
	if body.RequestID == "" {
		t.Errorf("request_id is empty")
	}
	if got := r.header.Get("X-Request-ID"); got != body.RequestID {
		t.Errorf("X-Request-ID = %q, want the body's request_id %q", got, body.RequestID)
	}
	return body
}

func decodeBody[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, r.body, err)
	}
	return v
}
