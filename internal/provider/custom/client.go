package custom

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
	"time"
)

// request is one call to the backend.
type request struct {
	op          string     // operation name for errors, such as "stat"
	method      string     // HTTP method
	path        string     // request path, with the sandbox ID already escaped
	query       url.Values // query parameters, or nil
	body        io.Reader  // request body, or nil
	contentType string     // type of body

	// slow exempts the call from Config.ResponseHeaderTimeout.
	slow bool

	// upload marks body as the caller's stream. It is sent with "Expect:
	// 100-continue", so that a server that rejects the call does not
	// receive the body first, and it is never read after the call returns.
	upload bool

	// idle bounds each wait for bytes of the response body. Zero means
	// Config.IdleTimeout.
	idle time.Duration

	// deadline, when positive, bounds the whole call, and deadlineCause
	// is the error reported when it expires.
	deadline      time.Duration
	deadlineCause error
}

// newTransports returns the HTTP transport for calls bounded by the
// response header timeout and a clone without it for slow calls. Neither
// has an overall timeout, because streams may run as long as a command.
func newTransports(cfg Config) (fast, slow *http.Transport) {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 15 * time.Second}
	fast = &http.Transport{
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
	}
	slow = fast.Clone()
	slow.ResponseHeaderTimeout = 0
	return fast, slow
}

// call sends a request with an optional JSON body and decodes an optional
// JSON response into out.
func (p *Provider) call(ctx context.Context, rq request, in, out any) error {
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("custom provider: %s: encode request: %w", rq.op, err)
		}
		rq.body, rq.contentType = bytes.NewReader(data), contentJSON
	}
	body, err := p.send(ctx, rq)
	if err != nil {
		return err
	}
	defer body.Close()

	if out == nil {
		_, err = io.Copy(io.Discard, body)
		return err
	}
	dec := json.NewDecoder(io.LimitReader(body, maxJSONResponse))
	if err := dec.Decode(out); err != nil {
		var classified *classifiedError
		if errors.As(err, &classified) {
			return err
		}
		return p.unavailable(rq.op, fmt.Errorf("decode response: %w", err))
	}
	return nil
}

// send sends one request and returns the body of a 2xx response. A
// response with another status is turned into the backend's error. The
// returned body's reads fail when the backend stalls longer than rq.idle,
// and closing it ends the call.
func (p *Provider) send(ctx context.Context, rq request) (io.ReadCloser, error) {
	callCtx, cancelDeadline := ctx, context.CancelFunc(func() {})
	if rq.deadline > 0 {
		callCtx, cancelDeadline = context.WithTimeoutCause(ctx, rq.deadline, rq.deadlineCause)
	}
	callCtx, cancel := context.WithCancelCause(callCtx)
	end := func() {
		cancel(nil)
		cancelDeadline()
	}

	req, upload, err := p.newRequest(callCtx, rq)
	if err != nil {
		end()
		return nil, err
	}
	transport := p.fast
	if rq.slow {
		transport = p.slow
	}
	resp, err := transport.RoundTrip(req)
	if upload != nil {
		if readErr := upload.detach(); readErr != nil {
			if err == nil {
				resp.Body.Close()
			}
			end()
			return nil, fmt.Errorf("custom provider: %s: read the data to upload: %w", rq.op, readErr)
		}
	}
	if err != nil {
		end()
		return nil, p.callError(ctx, callCtx, rq.op, err)
	}

	if err := p.checkResponse(rq.op, resp); err != nil {
		resp.Body.Close()
		end()
		return nil, err
	}
	idle := rq.idle
	if idle == 0 {
		idle = p.cfg.IdleTimeout
	}
	return newWatchedBody(resp.Body, idle, cancel, end, func(err error) error {
		return p.callError(ctx, callCtx, rq.op, fmt.Errorf("connection lost while reading the response: %w", err))
	}), nil
}

// newRequest builds the HTTP request of rq. For an upload it also returns
// the reader that wraps rq.body, which the caller detaches when RoundTrip
// returns: from then on reads of the body by the transport fail, so the
// caller's reader is never read after the method that was given it
// returned.
func (p *Provider) newRequest(ctx context.Context, rq request) (*http.Request, *detachableReader, error) {
	target := p.base + rq.path
	if len(rq.query) > 0 {
		target += "?" + rq.query.Encode()
	}

	var (
		body   io.Reader
		upload *detachableReader
	)
	switch {
	case rq.upload:
		upload = &detachableReader{r: rq.body}
		body = upload
	case rq.body != nil:
		body = rq.body
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, target, body)
	if err != nil {
		return nil, nil, fmt.Errorf("custom provider: %s: %w", rq.op, err)
	}
	if rq.body != nil {
		req.Header.Set("Content-Type", rq.contentType)
	}
	if rq.upload {
		req.Header.Set("Expect", "100-continue")
	}
	if p.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+string(p.cfg.APIKey))
	}
	return req, upload, nil
}

// checkResponse checks the protocol header and turns a non-2xx response
// into the backend's error. It does not close the body.
func (p *Provider) checkResponse(op string, resp *http.Response) error {
	got := resp.Header.Get(headerProtocol)
	switch {
	case got == "":
		return p.unavailable(op, fmt.Errorf("%w: the response (%s) lacks the %s header, so the backend is not a StacyVM provider server; check providers.custom.base_url",
			ErrProtocol, resp.Status, headerProtocol))
	case got != strconv.Itoa(ProtocolVersion):
		return p.unavailable(op, incompatible(got))
	case resp.StatusCode/100 == 2:
		return nil
	}

	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return p.unavailable(op, fmt.Errorf("read error response: %w", err))
	}
	var body errorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Code == "" {
		return p.unavailable(op, fmt.Errorf("backend responded %s without an error body", resp.Status))
	}
	if body.Code == codeUnauthorized {
		return p.unavailable(op, errors.New("the backend rejected the API key (401); set providers.custom.api_key to the token of its provider server"))
	}
	return body.toError()
}

// incompatible returns the error for a backend of major protocol version
// got.
func incompatible(got string) error {
	return fmt.Errorf("%w: the backend speaks protocol %s and this StacyVM speaks protocol %d; run a provider server of the same StacyVM release",
		ErrProtocol, got, ProtocolVersion)
}

// classifiedError is a read error of a response body that a watchedBody
// already classified, so that callers return it unchanged.
type classifiedError struct{ err error }

func (e *classifiedError) Error() string { return e.err.Error() }

func (e *classifiedError) Unwrap() error { return e.err }

// watchedBody is a response body whose reads fail when the backend sends
// nothing for idle. The clock runs only while a Read waits, so a slow
// consumer does not count against the backend. Read errors other than
// io.EOF are classified by classify and returned as *classifiedError.
type watchedBody struct {
	body     io.ReadCloser
	idle     time.Duration
	timer    *time.Timer
	end      func()
	classify func(error) error
	failed   error
}

// errIdle is the cancel cause of a call whose response body stalled.
type errIdle struct{ idle time.Duration }

func (e errIdle) Error() string {
	return fmt.Sprintf("the backend sent nothing for %s", e.idle)
}

func newWatchedBody(body io.ReadCloser, idle time.Duration, cancel context.CancelCauseFunc, end func(), classify func(error) error) *watchedBody {
	b := &watchedBody{body: body, idle: idle, end: end, classify: classify}
	b.timer = time.AfterFunc(time.Hour, func() { cancel(errIdle{idle}) })
	b.timer.Stop()
	return b
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.failed != nil {
		return 0, b.failed
	}
	b.timer.Reset(b.idle)
	n, err := b.body.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF {
		b.failed = &classifiedError{b.classify(err)}
		return n, b.failed
	}
	return n, err
}

// Close ends the call, which cuts the connection when the body was not
// read to its end.
func (b *watchedBody) Close() error {
	b.timer.Stop()
	err := b.body.Close()
	b.end()
	return err
}

// errDetached is returned to the transport when it reads a request body
// after the call it belongs to has returned.
var errDetached = errors.New("request body read after the call returned")

// detachableReader passes reads to r until detach is called, and records
// the first error of r other than io.EOF.
type detachableReader struct {
	mu       sync.Mutex
	r        io.Reader
	detached bool
	err      error
}

func (d *detachableReader) Read(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detached {
		return 0, errDetached
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF && d.err == nil {
		d.err = err
	}
	return n, err
}

// detach waits for a read in progress, makes later reads fail and returns
// the error of r, if any.
func (d *detachableReader) detach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.detached = true
	return d.err
}
