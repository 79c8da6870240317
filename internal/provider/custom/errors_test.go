package custom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"testing"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
)

// failingProvider is the mock whose Stat returns the error stored under the
// path it is given.
type failingProvider struct {
	*mock.Provider
	errs map[string]error
}

func (p failingProvider) Stat(ctx context.Context, id, path string) (provider.FileInfo, error) {
	return provider.FileInfo{}, p.errs[path]
}

// errorCases are the errors a backend can return, with the sentinel each
// must match on the client and the HTTP status on the wire.
var errorCases = []struct {
	name   string
	err    error
	want   error
	status int
}{
	{"sandbox_not_found", fmt.Errorf("backend: sandbox x: %w", provider.ErrSandboxNotFound), provider.ErrSandboxNotFound, http.StatusNotFound},
	{"sandbox_destroyed", fmt.Errorf("backend: sandbox x: %w", provider.ErrSandboxDestroyed), provider.ErrSandboxDestroyed, http.StatusGone},
	{"path_not_found", &provider.PathError{Op: "stat", Path: "/p", Err: provider.ErrPathNotFound}, provider.ErrPathNotFound, http.StatusNotFound},
	{"path_exists", &provider.PathError{Op: "stat", Path: "/p", Err: provider.ErrPathExists}, provider.ErrPathExists, http.StatusConflict},
	{"is_directory", &provider.PathError{Op: "stat", Path: "/p", Err: provider.ErrIsDirectory}, provider.ErrIsDirectory, http.StatusBadRequest},
	{"not_directory", &provider.PathError{Op: "stat", Path: "/p", Err: provider.ErrNotDirectory}, provider.ErrNotDirectory, http.StatusBadRequest},
	{"directory_not_empty", &provider.PathError{Op: "stat", Path: "/p", Err: provider.ErrDirectoryNotEmpty}, provider.ErrDirectoryNotEmpty, http.StatusConflict},
	{"path_escapes", &provider.PathError{Op: "stat", Path: "/p", Err: provider.ErrPathEscapes}, provider.ErrPathEscapes, http.StatusBadRequest},
	{"permission_denied", &provider.PathError{Op: "stat", Path: "/p", Err: fs.ErrPermission}, fs.ErrPermission, http.StatusForbidden},
	{"invalid_argument", fmt.Errorf("bad mode: %w", provider.ErrInvalidArgument), provider.ErrInvalidArgument, http.StatusBadRequest},
	{"timeout", fmt.Errorf("took too long: %w", provider.ErrExecTimeout), provider.ErrExecTimeout, http.StatusRequestTimeout},
	{"resource_limit", &provider.LimitError{Limit: "max_files", Value: "10", Got: "11"}, provider.ErrResourceLimit, http.StatusTooManyRequests},
	{"unavailable", fmt.Errorf("engine down: %w", provider.ErrUnavailable), provider.ErrUnavailable, http.StatusServiceUnavailable},
	{"not_implemented", fmt.Errorf("no stat here: %w", provider.ErrNotImplemented), provider.ErrNotImplemented, http.StatusNotImplemented},
}

func newFailingBackend(t *testing.T) (*backend, provider.Provider) {
	t.Helper()
	errs := map[string]error{"/internal": errors.New("disk on fire")}
	for _, c := range errorCases {
		errs["/"+c.name] = c.err
	}
	b := startBackend(t, failingProvider{newMock(t), errs})
	return b, newClient(t, b.URL, nil)
}

func TestErrorsCrossTheWire(t *testing.T) {
	t.Parallel()
	_, p := newFailingBackend(t)

	for _, c := range errorCases {
		_, err := p.Stat(t.Context(), "sb", "/"+c.name)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want one matching %q", c.name, err, c.want)
		}
		if got, want := err.Error(), c.err.Error(); got != want {
			t.Errorf("%s: message %q, want the backend's %q", c.name, got, want)
		}

		var sent, got *provider.PathError
		if errors.As(c.err, &sent) {
			if !errors.As(err, &got) {
				t.Errorf("%s: error %v (%T) is not a *provider.PathError", c.name, err, err)
			} else if got.Op != sent.Op || got.Path != sent.Path {
				t.Errorf("%s: PathError op %q path %q, want %q %q", c.name, got.Op, got.Path, sent.Op, sent.Path)
			}
		}
	}

	var limit *provider.LimitError
	_, err := p.Stat(t.Context(), "sb", "/resource_limit")
	if !errors.As(err, &limit) || *limit != (provider.LimitError{Limit: "max_files", Value: "10", Got: "11"}) {
		t.Errorf("resource_limit: error %v, want the backend's *provider.LimitError", err)
	}

	_, err = p.Stat(t.Context(), "sb", "/internal")
	if err == nil || err.Error() != "disk on fire" {
		t.Errorf("internal: error %v, want the backend's message", err)
	}
	for _, c := range errorCases {
		if errors.Is(err, c.want) {
			t.Errorf("internal: error %v matches %q, want no sentinel", err, c.want)
		}
	}
}

func TestErrorStatusCodes(t *testing.T) {
	t.Parallel()
	b, _ := newFailingBackend(t)

	for _, c := range append(errorCases, struct {
		name   string
		err    error
		want   error
		status int
	}{name: "internal", status: http.StatusInternalServerError}) {
		target := b.URL + "/v1/sandboxes/sb/files/stat?path=" + url.QueryEscape("/"+c.name)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
}

func TestUnknownOperationIsNotImplemented(t *testing.T) {
	t.Parallel()
	b, _ := newFailingBackend(t)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL+"/v1/teleport", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body errorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotImplemented || body.Code != codeNotImplemented {
		t.Errorf("unknown operation: status %d code %q, want 501 %q", resp.StatusCode, body.Code, codeNotImplemented)
	}
	if !errors.Is(body.toError(), provider.ErrNotImplemented) {
		t.Errorf("unknown operation: client error %v, want ErrNotImplemented", body.toError())
	}
}
