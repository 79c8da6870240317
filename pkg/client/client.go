// Package client is the Go client for the StacyVM REST API (/api/v1). The
// stacyvm CLI is built on it, and applications can import it to spawn
// sandboxes, run commands in them and move files in and out.
//
// Every method takes a context first. The client sets no timeout of its own,
// because command output streams and file transfers may run for a long time.
// Bound a call with a context deadline instead.
//
// Errors from the server are *APIError values. Match them with errors.Is
// against the sentinels (ErrNotFound, ErrTimeout, ...) or with errors.As to
// read the code, message and request ID.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/stacyvm/stacyvm/internal/version"
)

// Client calls one StacyVM server. It is safe for concurrent use.
type Client struct {
	base      *url.URL // scheme, host and the /api/v1 path prefix
	apiKey    string
	http      *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key as a bearer token on every request.
func WithAPIKey(key string) Option {
	return func(c *Client) { c.apiKey = key }
}

// WithHTTPClient makes the client send requests through hc, for custom TLS,
// proxies or transports. A Timeout set on hc also cuts long output streams
// and transfers, so prefer context deadlines.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// New returns a client for the server at baseURL, such as
// "http://127.0.0.1:7423". A trailing "/api/v1" is accepted and ignored.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, fmt.Errorf("invalid server URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid server URL %q: use http://host:port or https://host", baseURL)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v1") + "/api/v1"
	u.RawPath = ""
	u.RawQuery, u.Fragment = "", ""

	c := &Client{
		base:      u,
		http:      &http.Client{},
		userAgent: "stacyvm-go-client/" + version.Version,
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	return c, nil
}

// BaseURL returns the server URL the client sends requests to, with the
// /api/v1 prefix.
func (c *Client) BaseURL() string { return c.base.String() }

// Live returns nil when the server process is up.
func (c *Client) Live(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodGet, "/live", nil, nil, nil)
}

// Ready returns nil when the server can spawn sandboxes with its default
// provider, and otherwise an error matching ErrUnavailable whose message names
// what is missing.
func (c *Client) Ready(ctx context.Context) error {
	return c.doJSON(ctx, http.MethodGet, "/ready", nil, nil, nil)
}

// Health is the server's status report.
type Health struct {
	Status          string                    `json:"status"`
	Version         string                    `json:"version"`
	DefaultProvider string                    `json:"default_provider,omitempty"`
	UptimeSeconds   float64                   `json:"uptime_seconds,omitempty"`
	Providers       map[string]ProviderHealth `json:"providers,omitempty"`
}

// ProviderHealth is the status of one provider in a Health report.
type ProviderHealth struct {
	Healthy      bool            `json:"healthy"`
	Error        string          `json:"error,omitempty"`
	Capabilities json.RawMessage `json:"capabilities,omitempty"`
}

// Health returns the server's status, version and providers.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.doJSON(ctx, http.MethodGet, "/health", nil, nil, &h)
	return h, err
}

// endpoint returns the URL of an API path such as "/sandboxes" with query.
func (c *Client) endpoint(path string, query url.Values) string {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	return u.String()
}

// sandboxPath returns the API path of a sandbox sub-resource, with the ID
// escaped.
func sandboxPath(id, sub string) string {
	return "/sandboxes/" + url.PathEscape(id) + sub
}

// do sends a request and returns the response whatever its status.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, query), body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", c.userAgent)
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	return c.http.Do(req)
}

// send sends a request and returns the response when its status is 2xx.
// Any other status is read into an *APIError and the body is closed. The
// caller closes the body of a successful response.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	resp, err := c.do(ctx, method, path, query, body, contentType)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readAPIError(resp)
}

// jsonBody encodes in as a request body.
func jsonBody(in any) (io.Reader, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return bytes.NewReader(b), nil
}

// doJSON sends in as a JSON body (when not nil) and decodes a 2xx response
// into out (when not nil).
func (c *Client) doJSON(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	contentType := ""
	if in != nil {
		var err error
		if body, err = jsonBody(in); err != nil {
			return err
		}
		contentType = "application/json"
	}

	resp, err := c.send(ctx, method, path, query, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response of %s %s: %w", method, path, err)
	}
	return nil
}

// uploadBody hides Close from r, so that the HTTP transport does not close
// a reader the caller owns, such as an open file.
func uploadBody(r io.Reader) io.Reader {
	if r == nil {
		return http.NoBody
	}
	if _, ok := r.(io.Closer); ok {
		return struct{ io.Reader }{r}
	}
	return r
}
