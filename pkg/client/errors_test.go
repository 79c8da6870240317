package client_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func TestAPIErrorIs(t *testing.T) {
	sentinels := []error{
		client.ErrNotFound, client.ErrTimeout, client.ErrConflict, client.ErrUnauthorized,
		client.ErrResourceLimit, client.ErrUnavailable, client.ErrBadRequest,
	}
	tests := []struct {
		status int
		code   string
		want   error
	}{
		{404, "NOT_FOUND", client.ErrNotFound},
		{408, "TIMEOUT", client.ErrTimeout},
		{409, "CONFLICT", client.ErrConflict},
		{401, "UNAUTHORIZED", client.ErrUnauthorized},
		{429, "RESOURCE_LIMIT", client.ErrResourceLimit},
		{413, "PAYLOAD_TOO_LARGE", client.ErrResourceLimit},
		{503, "UNAVAILABLE", client.ErrUnavailable},
		{400, "BAD_REQUEST", client.ErrBadRequest},
		{404, "SOMETHING_NEW", client.ErrNotFound},
		{502, "", client.ErrUnavailable},
		{500, "INTERNAL_ERROR", nil},
	}
	for _, tt := range tests {
		err := error(&client.APIError{StatusCode: tt.status, Code: tt.code, Message: "m"})
		for _, s := range sentinels {
			if got := errors.Is(err, s); got != (s == tt.want) {
				t.Errorf("%d %s: errors.Is(%v) = %v, want %v", tt.status, tt.code, s, got, s == tt.want)
			}
		}
	}
}

func TestAPIKey(t *testing.T) {
	url := startServer(t, "s3cret")

	anonymous, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anonymous.List(t.Context(), client.ListOptions{}); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("List without a key: got %v, want ErrUnauthorized", err)
	}
	if err := anonymous.Live(t.Context()); err != nil {
		t.Errorf("Live without a key: got %v, want nil", err)
	}

	wrong, _ := client.New(url, client.WithAPIKey("guess"))
	if _, err := wrong.List(t.Context(), client.ListOptions{}); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("List with a wrong key: got %v, want ErrUnauthorized", err)
	}

	authorized, _ := client.New(url+"/api/v1/", client.WithAPIKey("s3cret"))
	if _, err := authorized.List(t.Context(), client.ListOptions{}); err != nil {
		t.Errorf("List with the key and a base URL ending in /api/v1/: %v", err)
	}
}

func TestNonJSONErrorBody(t *testing.T) {
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>upstream down</html>"))
	}))
	t.Cleanup(proxy.Close)

	c, _ := client.New(proxy.URL)
	_, err := c.Get(t.Context(), "sb-x")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("got %v, want an *APIError", err)
	}
	if apiErr.StatusCode != http.StatusBadGateway || !strings.Contains(apiErr.Message, "upstream down") {
		t.Errorf("got status %d message %q, want 502 with the body text", apiErr.StatusCode, apiErr.Message)
	}
	if !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("got %v, want it to match ErrUnavailable", err)
	}
}

func TestNewRejectsInvalidURL(t *testing.T) {
	for _, raw := range []string{"", "127.0.0.1:7423", "ftp://host", "http://"} {
		if _, err := client.New(raw); err == nil {
			t.Errorf("New(%q) succeeded, want an error", raw)
		}
	}
}
