package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

// Dialer opens a new byte stream to an agent, such as a unix socket
// connection. The client calls it for the first call and again after the
// connection was lost, for example because the agent restarted.
type Dialer func(ctx context.Context) (net.Conn, error)

// UnixDialer returns a Dialer for the agent socket at path on this host.
func UnixDialer(path string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// maxErrorBody bounds the error body a client reads.
const maxErrorBody = 64 << 10

// Client calls one agent. Concurrent calls share one HTTP/2 connection,
// which the client dials on first use and dials again after it is lost.
// A Client is safe for concurrent use.
//
// Every method returns an error matching provider.ErrUnavailable when the
// agent cannot be reached, one matching ErrProtocol when it speaks an
// incompatible protocol, and one wrapping ctx.Err() when ctx ends first.
type Client struct {
	transport *http.Transport
	info      VersionInfo // from the handshake in Dial

	mu     sync.Mutex
	conns  map[*trackedConn]struct{} // open connections, closed by Close
	closed bool
}

// Dial connects to the agent that dial reaches, checks its protocol
// version and returns a client for it. It returns an error matching
// ErrProtocol when the agent's major version is not ProtocolVersion. Agents
// of any revision of that version are accepted, so a newer StacyVM can
// re-attach sandboxes that still run an older agent.
func Dial(ctx context.Context, dial Dialer) (*Client, error) {
	c := newClient(dial)
	info, err := c.Version(ctx)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	c.info = info
	return c, nil
}

func newClient(dial Dialer) *Client {
	c := &Client{conns: make(map[*trackedConn]struct{})}
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	c.transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dial(ctx, dial)
		},
		Protocols:          protocols,
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			// Queue calls past the agent's stream limit instead of
			// opening a second connection.
			StrictMaxConcurrentRequests: true,
		},
	}
	return c
}

// dial opens a connection with dial and records it for Close.
func (c *Client) dial(ctx context.Context, dial Dialer) (net.Conn, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	tracked := &trackedConn{Conn: conn, client: c}
	c.conns[tracked] = struct{}{}
	return tracked, nil
}

// trackedConn removes itself from its client's set when it is closed.
type trackedConn struct {
	net.Conn
	client *Client
	once   sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.client.mu.Lock()
		delete(t.client.conns, t)
		t.client.mu.Unlock()
	})
	return t.Conn.Close()
}

// Info returns the version the agent reported when the client connected.
func (c *Client) Info() VersionInfo { return c.info }

// Version requests the agent's version now and checks that it speaks
// ProtocolVersion.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var info VersionInfo
	if err := c.call(ctx, "version", http.MethodGet, pathVersion, nil, &info); err != nil {
		return VersionInfo{}, err
	}
	if info.Protocol != ProtocolVersion {
		return VersionInfo{}, incompatible(strconv.Itoa(info.Protocol))
	}
	return info, nil
}

// Ping checks that the agent responds.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, "ping", http.MethodGet, pathPing, nil, nil)
}

// Close closes the connection. Calls in progress fail with an error
// matching provider.ErrUnavailable, which resets their streams so that the
// agent kills their commands, and later calls fail with net.ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := make([]*trackedConn, 0, len(c.conns))
	for conn := range c.conns {
		conns = append(conns, conn)
	}
	c.mu.Unlock()

	for _, conn := range conns {
		_ = conn.Close()
	}
	c.transport.CloseIdleConnections()
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// call sends a request with an optional JSON body and decodes an optional
// JSON response into out.
func (c *Client) call(ctx context.Context, op, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		body = bytes.NewReader(mustJSON(in))
	}
	resp, err := c.send(ctx, op, method, path, nil, contentJSON, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return c.streamError(ctx, op, fmt.Errorf("decode response: %w", err))
	}
	return nil
}

// send sends one request and returns the response once its headers have
// arrived. A response with an error status is turned into the agent's
// error, so a returned response always has a 2xx status. The caller closes
// its body.
func (c *Client) send(ctx context.Context, op, method, path string, query url.Values, contentType string, body io.Reader) (*http.Response, error) {
	if c.isClosed() {
		return nil, fmt.Errorf("agent %s: %w", op, net.ErrClosed)
	}
	target := baseURL + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}

	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		return nil, c.streamError(ctx, op, err)
	}
	if err := checkProtocolHeader(resp); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("agent %s: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, responseError(op, resp)
	}
	return resp, nil
}

// streamError classifies an error from the transport or from reading a
// response: ctx's error when ctx has ended, else an unavailable agent.
func (c *Client) streamError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("agent %s: %w", op, ctxErr)
	}
	return unavailable(op, err)
}

// checkProtocolHeader checks the protocol version that every agent
// response carries.
func checkProtocolHeader(resp *http.Response) error {
	got := resp.Header.Get(headerProtocol)
	switch got {
	case strconv.Itoa(ProtocolVersion):
		return nil
	case "":
		return protocolError("the peer responded without the %s header, so it is not a StacyVM agent; check the socket path", headerProtocol)
	}
	return incompatible(got)
}

// incompatible returns the error for an agent of major protocol version
// got.
func incompatible(got string) error {
	return protocolError("the agent speaks protocol %s and this StacyVM speaks protocol %d; "+
		"recreate the sandbox with the agent of this release (make agent), or use a StacyVM release that speaks protocol %s",
		got, ProtocolVersion, got)
}

// responseError decodes the error body of a non-2xx response.
func responseError(op string, resp *http.Response) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return unavailable(op, fmt.Errorf("read error response: %w", err))
	}
	var body errorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Code == "" {
		return unavailable(op, fmt.Errorf("agent responded %s without an error body", resp.Status))
	}
	return body.toError()
}

// errNoExit is the cause when an exec stream ends before its exit frame.
var errNoExit = errors.New("exec stream ended before its exit frame")
