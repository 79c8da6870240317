package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/store"
)

// DefaultEventHeartbeat is the interval of the ": ping" comments on an
// event stream when EventOptions.Heartbeat is zero. A proxy closes a
// connection that stays idle past its own timeout, so the interval must
// stay below the timeouts of the proxies in front of the server.
const DefaultEventHeartbeat = 15 * time.Second

// EventOptions configures GET /events. The zero value is usable.
type EventOptions struct {
	// Heartbeat is the interval of the ": ping" comments that keep idle
	// streams open through proxies. Default DefaultEventHeartbeat.
	Heartbeat time.Duration

	// Buffer is how many unsent events a stream's subscription holds
	// before the manager drops it. The stream then catches up from the
	// store. Zero selects the manager's default.
	Buffer int

	// Stopping, when closed, ends every open stream, so that a graceful
	// shutdown does not wait for them. Clients reconnect with
	// Last-Event-ID. Nil never ends streams.
	Stopping <-chan struct{}
}

// withDefaults returns o with zero fields set to their defaults.
func (o EventOptions) withDefaults() EventOptions {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultEventHeartbeat
	}
	return o
}

// replayPageSize is how many stored events one EventsAfter call reads
// while a stream catches up.
const replayPageSize = 500

// eventTypes lists the event types that ?type= accepts.
var eventTypes = []string{
	orchestrator.EventCreated,
	orchestrator.EventRunning,
	orchestrator.EventError,
	orchestrator.EventExpired,
	orchestrator.EventDestroyed,
	orchestrator.EventAdopted,
	orchestrator.EventExecCompleted,
}

// eventJSON is the data line of one server-sent event.
type eventJSON struct {
	Seq       int64           `json:"seq"`
	Type      string          `json:"type"`
	SandboxID string          `json:"sandbox_id"`
	Time      string          `json:"time"` // RFC 3339 in UTC, with fractional seconds
	Data      json.RawMessage `json:"data"` // the event's details; keys depend on the type
}

// eventQuery is a parsed GET /events request.
type eventQuery struct {
	after     int64 // resume after this seq; -1 to start from now
	types     map[string]bool
	sandboxes map[string]bool
}

// match reports whether e passes the type and sandbox filters.
func (q eventQuery) match(e store.Event) bool {
	if len(q.types) > 0 && !q.types[e.Type] {
		return false
	}
	return len(q.sandboxes) == 0 || q.sandboxes[e.SandboxID]
}

// parseEventQuery reads the resume point and the filters. The
// Last-Event-ID header wins over ?after=, because a browser's EventSource
// reconnects to the same URL and sends the header.
func parseEventQuery(r *http.Request) (eventQuery, error) {
	q := eventQuery{after: -1}
	query := r.URL.Query()

	source, raw := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if raw == "" {
		source, raw = "after", query.Get("after")
	}
	if raw != "" {
		after, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil || after < 0 {
			return eventQuery{}, invalidf("%s must be the non-negative integer id of an event, got %q", source, raw)
		}
		q.after = after
	}

	for _, typ := range splitValues(query["type"]) {
		if !slices.Contains(eventTypes, typ) {
			return eventQuery{}, invalidf("type %q is not an event type; use one or more of %s, comma-separated",
				typ, strings.Join(eventTypes, ", "))
		}
		q.types = addKey(q.types, typ)
	}
	for _, id := range splitValues(query["sandbox_id"]) {
		q.sandboxes = addKey(q.sandboxes, id)
	}
	return q, nil
}

// splitValues returns the non-empty items of repeated, comma-separated
// query values.
func splitValues(values []string) []string {
	var items []string
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
	}
	return items
}

func addKey(set map[string]bool, key string) map[string]bool {
	if set == nil {
		set = make(map[string]bool)
	}
	set[key] = true
	return set
}

// streamEvents serves GET /events: the lifecycle and exec events as
// server-sent events, first those after the resume point from the store,
// then new ones as the manager publishes them.
func (s *server) streamEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := parseEventQuery(r)
	if err != nil {
		return err
	}
	es := &eventStream{
		s:      s,
		w:      w,
		rc:     http.NewResponseController(w),
		query:  q,
		cursor: q.after,
	}
	defer es.close()
	return es.run(r.Context())
}

// errStopping ends an event stream when the server shuts down.
var errStopping = errors.New("server is shutting down")

// eventStream is one client's GET /events response.
type eventStream struct {
	s       *server
	w       http.ResponseWriter
	rc      *http.ResponseController
	query   eventQuery
	cursor  int64 // seq of the last event sent or filtered out; -1 before the first
	started bool
}

// run sends events until the client leaves, the server stops, or the
// manager closes its subscriptions.
//
// Each round subscribes first, then replays the store after the cursor,
// then follows the subscription, skipping events at or below the cursor.
// When the manager drops the subscription because the stream fell behind,
// the next round reads what was missed from the store, so the client
// still receives every event once, in order.
func (es *eventStream) run(ctx context.Context) error {
	heartbeat := time.NewTicker(es.s.events.Heartbeat)
	defer heartbeat.Stop()

	for {
		events, unsubscribe := es.s.manager.Subscribe(es.s.events.Buffer)
		err := es.start()
		if err == nil {
			err = es.replay(ctx)
		}
		var received int
		if err == nil {
			received, err = es.follow(ctx, events, heartbeat.C)
		}
		unsubscribe()

		switch {
		case errors.Is(err, errStopping), ctx.Err() != nil:
			return nil
		case err != nil:
			return es.fail(err)
		case received == 0:
			// A lagged subscription was full when it was dropped, so a
			// subscription that delivered nothing was closed by the
			// manager shutting down.
			return nil
		}
		es.s.log.Debug("event stream fell behind; resuming from the store",
			"request_id", requestInfoFrom(ctx).id, "op", "events", "seq", es.cursor)
	}
}

// fail logs an error that ended a started stream. A client that stopped
// reading is not a server failure, so it is logged at Info.
func (es *eventStream) fail(err error) error {
	var write *streamWriteError
	if errors.As(err, &write) {
		es.s.log.Info("event stream write failed; closing it", "op", "events", "error", err)
		return nil
	}
	return err
}

// streamWriteError wraps a failed write to the client.
type streamWriteError struct{ err error }

func (e *streamWriteError) Error() string { return "write event stream: " + e.err.Error() }
func (e *streamWriteError) Unwrap() error { return e.err }

// start sends the response headers and an opening comment, once.
func (es *eventStream) start() error {
	if es.started {
		return nil
	}
	es.started = true
	h := es.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tells nginx not to buffer the stream
	es.w.WriteHeader(http.StatusOK)
	return es.write(": connected\n\n")
}

// replay sends the stored events after the cursor, page by page. A stream
// that starts from now has nothing to replay.
func (es *eventStream) replay(ctx context.Context) error {
	if es.cursor < 0 {
		return nil
	}
	for {
		page, err := es.s.manager.EventsAfter(ctx, es.cursor, replayPageSize)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := es.send(e); err != nil {
				return err
			}
		}
		if len(page) < replayPageSize {
			return nil
		}
	}
}

// follow sends the subscription's events and a heartbeat comment at each
// tick. It returns how many events it received when the subscription is
// closed.
func (es *eventStream) follow(ctx context.Context, events <-chan store.Event, tick <-chan time.Time) (int, error) {
	received := 0
	for {
		select {
		case <-ctx.Done():
			return received, ctx.Err()
		case <-es.s.events.Stopping:
			return received, errStopping
		case <-tick:
			if err := es.write(": ping\n\n"); err != nil {
				return received, err
			}
		case e, ok := <-events:
			if !ok {
				return received, nil
			}
			received++
			if err := es.send(e); err != nil {
				return received, err
			}
		}
	}
}

// send writes e when it is past the cursor and passes the filters, and
// moves the cursor to it.
func (es *eventStream) send(e store.Event) error {
	if es.cursor >= 0 && e.Seq <= es.cursor {
		return nil
	}
	es.cursor = e.Seq
	if !es.query.match(e) {
		return nil
	}

	data := json.RawMessage(e.Data)
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	line, err := json.Marshal(eventJSON{
		Seq:       e.Seq,
		Type:      e.Type,
		SandboxID: e.SandboxID,
		Time:      e.Time.UTC().Format(time.RFC3339Nano),
		Data:      data,
	})
	if err != nil {
		return fmt.Errorf("encode event %d: %w", e.Seq, err)
	}
	return es.write(fmt.Sprintf("id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, line))
}

// write sends text and flushes it. Like exec streams, each write may block
// for at most streamWriteTimeout, so a client that stopped reading cannot
// hold the handler forever.
func (es *eventStream) write(text string) error {
	// A writer without deadline support returns an error here, and then a
	// write can block until the connection breaks.
	_ = es.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := es.w.Write([]byte(text)); err != nil {
		return &streamWriteError{err}
	}
	if err := es.rc.Flush(); err != nil {
		return &streamWriteError{err}
	}
	return nil
}

// close clears the write deadline, which would otherwise stay on a
// keep-alive connection and break the next request on it.
func (es *eventStream) close() {
	if es.started {
		_ = es.rc.SetWriteDeadline(time.Time{})
	}
}
