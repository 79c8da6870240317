package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// streamedEvent is one event read from GET /api/v1/events.
type streamedEvent struct {
	id        int64
	typ       string
	sandboxID string
}

// eventStream is an open GET /api/v1/events response of a serve process.
type eventStream struct {
	events chan streamedEvent // closed when the stream ends
	cancel context.CancelFunc
}

// openEventStream connects to the server's event stream, resuming after
// lastID when it is not empty.
func openEventStream(t *testing.T, serverURL, lastID string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", serverURL+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET /events: status %d, want 200", resp.StatusCode)
	}

	s := &eventStream{events: make(chan streamedEvent, 256), cancel: cancel}
	go s.read(t, resp.Body)
	t.Cleanup(cancel)
	return s
}

// read parses the stream into events until it ends. Comments are skipped.
func (s *eventStream) read(t *testing.T, body io.ReadCloser) {
	defer close(s.events)
	defer body.Close()
	sc := bufio.NewScanner(body)
	var e streamedEvent
	for sc.Scan() {
		field, value, _ := strings.Cut(sc.Text(), ": ")
		switch field {
		case "id":
			e.id, _ = strconv.ParseInt(value, 10, 64)
		case "event":
			e.typ = value
		case "data":
			var data struct {
				SandboxID string `json:"sandbox_id"`
			}
			if err := json.Unmarshal([]byte(value), &data); err != nil {
				t.Errorf("event data %q is not JSON: %v", value, err)
			}
			e.sandboxID = data.SandboxID
		case "":
			if e.typ != "" {
				s.events <- e
			}
			e = streamedEvent{}
		}
	}
}

// next returns the next event, failing the test after 15s or when the
// stream ends.
func (s *eventStream) next(t *testing.T) streamedEvent {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatalf("event stream ended, want another event")
		}
		return e
	case <-time.After(15 * time.Second):
		t.Fatalf("no event within 15s")
	}
	return streamedEvent{}
}

// wantNext checks that the next events have the given types and sandbox
// IDs, with ids increasing from after, and returns the last id.
func (s *eventStream) wantNext(t *testing.T, after int64, want ...streamedEvent) int64 {
	t.Helper()
	last := after
	for i, w := range want {
		got := s.next(t)
		if got.typ != w.typ || got.sandboxID != w.sandboxID {
			t.Fatalf("event %d: got %s for %s (id %d), want %s for %s", i, got.typ, got.sandboxID, got.id, w.typ, w.sandboxID)
		}
		if got.id <= last {
			t.Fatalf("event %d (%s): id %d, want above %d", i, got.typ, got.id, last)
		}
		last = got.id
	}
	return last
}

// waitStreamEnd waits up to 10s for the stream to end, discarding events.
func waitStreamEnd(t *testing.T, s *eventStream) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("event stream still open 10s after the server stopped")
		}
	}
}

func TestEventsResumeAcrossRestart(t *testing.T) {
	tests := []struct {
		name   string
		signal syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGKILL", syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := t.TempDir()
			srv := startServe(t, dataDir)
			stream := openEventStream(t, srv.url, "")

			a := spawnID(t, srv.url)
			seen := stream.wantNext(t, 0,
				streamedEvent{typ: "sandbox.created", sandboxID: a},
				streamedEvent{typ: "sandbox.running", sandboxID: a})

			stopped := time.Now()
			srv.kill(tt.signal)
			if tt.signal == syscall.SIGTERM {
				// The open stream must not hold the graceful shutdown
				// until its 15s timeout.
				if elapsed := time.Since(stopped); elapsed > 10*time.Second {
					t.Errorf("serve took %v to stop with an event stream open, want under 10s", elapsed)
				}
				if code := srv.exitCode(t, time.Second); code != 0 {
					t.Errorf("exit code after SIGTERM: got %d, want 0", code)
				}
			}
			waitStreamEnd(t, stream)

			srv = startServe(t, dataDir)
			b := spawnID(t, srv.url)
			mustCLI(t, srv.url, "exec", b, "--", "true")
			mustCLI(t, srv.url, "kill", a)

			resumed := openEventStream(t, srv.url, strconv.FormatInt(seen, 10))
			last := resumed.wantNext(t, seen,
				streamedEvent{typ: "sandbox.created", sandboxID: b},
				streamedEvent{typ: "sandbox.running", sandboxID: b},
				streamedEvent{typ: "exec.completed", sandboxID: b},
				streamedEvent{typ: "sandbox.destroyed", sandboxID: a})

			// The next event is the one of a later spawn, so nothing was
			// sent twice or out of order after the replay.
			c := spawnID(t, srv.url)
			resumed.wantNext(t, last, streamedEvent{typ: "sandbox.created", sandboxID: c})
		})
	}
}
