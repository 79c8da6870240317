package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider/mock"
	"github.com/stacyvm/stacyvm/internal/store"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
)

// observedStack is the whole server on loopback with metrics wired into
// the manager and the API, and event stream options set by the test.
type observedStack struct {
	*stack
	handler  http.Handler
	metrics  *Metrics
	provider *mock.Provider
	logs     *lockedBuffer // every log line of the manager and the API
}

type observedOptions struct {
	events EventOptions
	apiKey string
}

func newObservedStack(t *testing.T, opts observedOptions) *observedStack {
	t.Helper()
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(newTestLogWriter(t), logs),
		&slog.HandlerOptions{Level: slog.LevelDebug}))

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stacyvm.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	prov, err := mock.New(mock.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatalf("create mock provider: %v", err)
	}
	registry := orchestrator.NewRegistry("mock")
	registry.Register(prov)

	mx := NewMetrics()
	limits := config.Default().Limits
	manager, err := orchestrator.New(orchestrator.Options{
		Store:    st,
		Registry: registry,
		Limits:   limits,
		Logger:   logger,
		Metrics:  mx,
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
		APIKey:  config.Secret(opts.apiKey),
		Metrics: mx,
		Events:  opts.events,
	})
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)

	return &observedStack{
		stack:    &stack{t: t, srv: srv, manager: manager, apiKey: opts.apiKey},
		handler:  handler,
		metrics:  mx,
		provider: prov,
		logs:     logs,
	}
}

// newTestLogWriter returns a writer to t.Log that goes quiet when the test
// ends, because background loops may still log then.
func newTestLogWriter(t *testing.T) io.Writer {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sseMessage is one message of an event stream: an event, or a comment
// when comment is set.
type sseMessage struct {
	id      string
	event   string
	data    string
	comment string
}

// decoded returns the data line of an event message.
func (m sseMessage) decoded(t *testing.T) eventJSON {
	t.Helper()
	var e eventJSON
	if err := json.Unmarshal([]byte(m.data), &e); err != nil {
		t.Fatalf("decode event data %q: %v", m.data, err)
	}
	return e
}

// readSSE parses server-sent events from r into messages until r ends,
// then closes messages.
func readSSE(r io.Reader, messages chan<- sseMessage) {
	defer close(messages)
	sc := bufio.NewScanner(r)
	var m sseMessage
	var any bool
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if any {
				messages <- m
			}
			m, any = sseMessage{}, false
			continue
		}
		any = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			m.comment = value
		case "id":
			m.id = value
		case "event":
			m.event = value
		case "data":
			m.data = value
		}
	}
}

// sseClient is an open GET /events response.
type sseClient struct {
	resp     *http.Response
	messages chan sseMessage
	cancel   context.CancelFunc
}

// openEvents opens GET /api/v1/events with query and, when lastID is not
// empty, a Last-Event-ID header, and checks the response headers.
func (s *stack) openEvents(query, lastID string) *sseClient {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.t.Context())
	req := s.newRequest(ctx, "GET", "/api/v1/events"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		cancel()
		s.t.Fatalf("GET /events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		s.t.Fatalf("GET /events: status %d, want 200; body: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		s.t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}

	c := &sseClient{resp: resp, messages: make(chan sseMessage, 1024), cancel: cancel}
	go readSSE(resp.Body, c.messages)
	s.t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// nextEvent returns the next event, skipping comments.
func (c *sseClient) nextEvent(t *testing.T) sseMessage {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.messages:
			if !ok {
				t.Fatalf("event stream ended, want another event")
			}
			if m.comment == "" {
				return m
			}
		case <-timeout:
			t.Fatalf("no event within 10s")
		}
	}
}

// events returns the next n events.
func (c *sseClient) events(t *testing.T, n int) []sseMessage {
	t.Helper()
	list := make([]sseMessage, n)
	for i := range list {
		list[i] = c.nextEvent(t)
	}
	return list
}

// wantEvents checks that got are exactly the stored events want, in order,
// with matching ids, types and data.
func wantEvents(t *testing.T, got []sseMessage, want []store.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i, m := range got {
		w := want[i]
		if m.id != strconv.FormatInt(w.Seq, 10) || m.event != w.Type {
			t.Errorf("event %d: got id %s type %s, want id %d type %s", i, m.id, m.event, w.Seq, w.Type)
			continue
		}
		e := m.decoded(t)
		if e.Seq != w.Seq || e.Type != w.Type || e.SandboxID != w.SandboxID {
			t.Errorf("event %d data: got seq %d type %s sandbox %s, want %d %s %s",
				i, e.Seq, e.Type, e.SandboxID, w.Seq, w.Type, w.SandboxID)
		}
		if !bytes.Equal(e.Data, w.Data) {
			t.Errorf("event %d details: got %s, want %s", i, e.Data, w.Data)
		}
	}
}

// storedEvents returns every event in the store.
func (s *stack) storedEvents() []store.Event {
	s.t.Helper()
	all, err := s.manager.EventsAfter(s.t.Context(), 0, 0)
	if err != nil {
		s.t.Fatalf("read stored events: %v", err)
	}
	return all
}

func TestEventsReplayFromResumePoint(t *testing.T) {
	s := newObservedStack(t, observedOptions{})
	first := s.spawn()
	s.do("DELETE", sandboxPath(first, ""), nil).wantStatus(t, http.StatusOK)
	s.spawn()
	stored := s.storedEvents()
	if len(stored) != 5 {
		t.Fatalf("stored %d events, want 5 (created, running, destroyed, created, running)", len(stored))
	}
	resume := strconv.FormatInt(stored[1].Seq, 10)

	tests := []struct {
		name   string
		query  string
		lastID string
	}{
		{"Last-Event-ID header", "", resume},
		{"after query", "?after=" + resume, ""},
		{"header wins over query", "?after=0", resume},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.openEvents(tt.query, tt.lastID)
			wantEvents(t, c.events(t, 3), stored[2:])
		})
	}

	t.Run("live events follow the replay", func(t *testing.T) {
		c := s.openEvents("", resume)
		wantEvents(t, c.events(t, 3), stored[2:])

		third := s.spawn()
		live := c.events(t, 2)
		for i, typ := range []string{orchestrator.EventCreated, orchestrator.EventRunning} {
			if e := live[i].decoded(t); e.Type != typ || e.SandboxID != third {
				t.Errorf("live event %d: got %s for %s, want %s for %s", i, e.Type, e.SandboxID, typ, third)
			}
		}
		wantEvents(t, live, s.storedEvents()[5:])
	})
}

func TestEventsStartFromNow(t *testing.T) {
	s := newObservedStack(t, observedOptions{})
	s.spawn()

	c := s.openEvents("", "")
	id := s.spawn()
	resp := s.do("POST", sandboxPath(id, "/exec"), map[string]any{"command": "exit 3"})
	resp.wantStatus(t, http.StatusOK)

	got := c.events(t, 3)
	wantEvents(t, got, s.storedEvents()[2:])
	exec := got[2].decoded(t)
	if exec.Type != orchestrator.EventExecCompleted {
		t.Fatalf("third event: got %s, want %s", exec.Type, orchestrator.EventExecCompleted)
	}
	var details struct {
		ExitCode int `json:"exit_code"`
	}
	if err := json.Unmarshal(exec.Data, &details); err != nil || details.ExitCode != 3 {
		t.Errorf("exec.completed data %s: got exit_code %d (%v), want 3", exec.Data, details.ExitCode, err)
	}
}

func TestEventsFilters(t *testing.T) {
	s := newObservedStack(t, observedOptions{})
	a, b := s.spawn(), s.spawn()
	s.do("DELETE", sandboxPath(a, ""), nil).wantStatus(t, http.StatusOK)
	s.do("DELETE", sandboxPath(b, ""), nil).wantStatus(t, http.StatusOK)

	tests := []struct {
		name  string
		query string
		want  func(e store.Event) bool
	}{
		{"type", "?after=0&type=sandbox.destroyed", func(e store.Event) bool {
			return e.Type == orchestrator.EventDestroyed
		}},
		{"types comma-separated", "?after=0&type=sandbox.created,sandbox.destroyed", func(e store.Event) bool {
			return e.Type == orchestrator.EventCreated || e.Type == orchestrator.EventDestroyed
		}},
		{"sandbox", "?after=0&sandbox_id=" + b, func(e store.Event) bool {
			return e.SandboxID == b
		}},
		{"sandbox and type", "?after=0&sandbox_id=" + a + "&type=sandbox.running", func(e store.Event) bool {
			return e.SandboxID == a && e.Type == orchestrator.EventRunning
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []store.Event
			for _, e := range s.storedEvents() {
				if tt.want(e) {
					want = append(want, e)
				}
			}
			c := s.openEvents(tt.query, "")
			wantEvents(t, c.events(t, len(want)), want)
		})
	}

	t.Run("live events", func(t *testing.T) {
		c := s.openEvents("?type=sandbox.destroyed", "")
		id := s.spawn()
		s.do("DELETE", sandboxPath(id, ""), nil).wantStatus(t, http.StatusOK)

		// The destroy is the first event that passes the filter, so the
		// created and running events before it were left out.
		if e := c.nextEvent(t).decoded(t); e.SandboxID != id || e.Type != orchestrator.EventDestroyed {
			t.Errorf("first event: got %s for %s, want %s for %s", e.Type, e.SandboxID, orchestrator.EventDestroyed, id)
		}
	})
}

func TestEventsInvalidQuery(t *testing.T) {
	s := newObservedStack(t, observedOptions{})
	tests := []struct {
		name     string
		query    string
		lastID   string
		fragment string
	}{
		{"Last-Event-ID not a number", "", "abc", "Last-Event-ID"},
		{"negative after", "?after=-1", "", "after"},
		{"unknown type", "?type=sandbox.exploded", "", "sandbox.created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := s.newRequest(t.Context(), "GET", "/api/v1/events"+tt.query, nil)
			if tt.lastID != "" {
				req.Header.Set("Last-Event-ID", tt.lastID)
			}
			s.send(req).wantError(t, http.StatusBadRequest, codeBadRequest, tt.fragment)
		})
	}
}

func TestEventsHeartbeat(t *testing.T) {
	s := newObservedStack(t, observedOptions{events: EventOptions{Heartbeat: 50 * time.Millisecond}})
	c := s.openEvents("", "")

	timeout := time.After(5 * time.Second)
	pings := 0
	for pings < 2 {
		select {
		case m, ok := <-c.messages:
			if !ok {
				t.Fatalf("event stream ended after %d pings, want 2", pings)
			}
			if m.comment == "ping" {
				pings++
			} else if m.comment == "" {
				t.Fatalf("got event %s on an idle stream, want only comments", m.event)
			}
		case <-timeout:
			t.Fatalf("got %d ping comments within 5s, want 2", pings)
		}
	}
}

func TestEventsEndWhenServerStops(t *testing.T) {
	stopping := make(chan struct{})
	s := newObservedStack(t, observedOptions{events: EventOptions{Stopping: stopping}})
	c := s.openEvents("", "")

	close(stopping)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-c.messages:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("event stream still open 5s after Stopping was closed")
		}
	}
}

// gatedWriter is a ResponseWriter whose writes block until open is closed,
// like a client that stops reading.
type gatedWriter struct {
	header    http.Header
	open      chan struct{}
	attempted chan struct{} // closed at the first write
	once      sync.Once
	body      lockedBuffer
}

func newGatedWriter() *gatedWriter {
	return &gatedWriter{header: make(http.Header), open: make(chan struct{}), attempted: make(chan struct{})}
}

func (g *gatedWriter) Header() http.Header { return g.header }
func (g *gatedWriter) WriteHeader(int)     {}
func (g *gatedWriter) Flush()              {}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.once.Do(func() { close(g.attempted) })
	<-g.open
	return g.body.Write(p)
}

// serveGated runs GET /api/v1/events plus query on the stack's handler
// with a gated writer. It returns once the handler has subscribed and is blocked on its
// first write, and a function that ends the request and waits for the
// handler.
func (s *observedStack) serveGated(t *testing.T, w *gatedWriter, query string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "GET", "/api/v1/events"+query, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handler.ServeHTTP(w, req)
	}()

	select {
	case <-w.attempted:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("event handler did not start its response within 10s")
	}

	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-w.open:
			default:
				close(w.open)
			}
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitForEvents waits up to 10s until the gated stream has sent n events.
func waitForEvents(w *gatedWriter, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(w.body.String(), "\nevent: ") < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// gatedEvents waits until the gated stream has sent n events, then ends
// it and returns its events.
func gatedEvents(w *gatedWriter, stop func(), n int) []sseMessage {
	waitForEvents(w, n)
	stop()

	messages := make(chan sseMessage, 1024)
	readSSE(strings.NewReader(w.body.String()), messages)
	var got []sseMessage
	for m := range messages {
		if m.comment == "" {
			got = append(got, m)
		}
	}
	return got
}

func TestEventsNoDuplicatesAfterReplay(t *testing.T) {
	s := newObservedStack(t, observedOptions{})
	s.spawn()
	w := newGatedWriter()
	stop := s.serveGated(t, w, "?after=0")

	// The handler subscribed and is blocked before its replay, so these
	// events reach both its subscription and the store it replays from.
	s.spawn()
	s.spawn()
	close(w.open)
	waitForEvents(w, len(s.storedEvents()))

	// Duplicates would arrive before the events of this spawn.
	s.spawn()
	want := s.storedEvents()
	wantEvents(t, gatedEvents(w, stop, len(want)), want)
}

func TestEventsCatchUpAfterFallingBehind(t *testing.T) {
	s := newObservedStack(t, observedOptions{events: EventOptions{Buffer: 1}})
	w := newGatedWriter()
	stop := s.serveGated(t, w, "")

	// The handler is blocked, so its one-event subscription overflows
	// and the manager drops it.
	for range 4 {
		s.spawn()
	}
	if !strings.Contains(s.logs.String(), "event subscriber lagged and was dropped") {
		t.Fatalf("the manager did not drop the blocked subscription; the test needs it to")
	}
	close(w.open)

	waitForEvents(w, len(s.storedEvents()))
	third := s.spawn() // the stream follows live events again after catching up
	want := s.storedEvents()
	got := gatedEvents(w, stop, len(want))
	wantEvents(t, got, want)
	if last := got[len(got)-1].decoded(t); last.SandboxID != third {
		t.Errorf("last event is for %s, want the sandbox spawned after catching up, %s", last.SandboxID, third)
	}
}

func TestEventsStalledClientDoesNotBlockSpawns(t *testing.T) {
	s := newObservedStack(t, observedOptions{events: EventOptions{Buffer: 2}})
	w := newGatedWriter()
	s.serveGated(t, w, "") // never opened before the test ends

	// The spawns run in another goroutine so that a blocked one fails the
	// test instead of hanging it.
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for range 10 {
			resp, err := s.srv.Client().Post(s.srv.URL+"/api/v1/sandboxes", "application/json", strings.NewReader("{}"))
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("spawn: status %d, want 201", resp.StatusCode)
				return
			}
		}
	}()
	select {
	case err := <-errs:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("10 spawns did not finish within 30s while an event stream was stalled")
	}

	if got := len(s.storedEvents()); got != 20 {
		t.Errorf("stored %d events, want 20", got)
	}
}
