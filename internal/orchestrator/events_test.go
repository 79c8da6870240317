package orchestrator

import (
	"testing"
	"time"
)

func TestSubscribeDeliversEvents(t *testing.T) {
	env := newEnv(t)
	events, cancel := env.m.Subscribe(16)
	defer cancel()

	sb := env.spawn(t, SpawnRequest{})
	if err := env.m.Destroy(t.Context(), sb.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}

	want := []string{EventCreated, EventRunning, EventDestroyed}
	var lastSeq int64
	for i, typ := range want {
		select {
		case e := <-events:
			if e.Type != typ || e.SandboxID != sb.ID {
				t.Errorf("event %d = %s for %s, want %s for %s", i, e.Type, e.SandboxID, typ, sb.ID)
			}
			if e.Seq <= lastSeq {
				t.Errorf("event %d seq = %d, want above %d", i, e.Seq, lastSeq)
			}
			lastSeq = e.Seq
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%s) not delivered within 5s", i, typ)
		}
	}

	stored, err := env.m.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := stored[len(stored)-1].Seq; got != lastSeq {
		t.Errorf("last delivered seq = %d, want the stored seq %d", lastSeq, got)
	}
	missed, err := env.m.EventsAfter(t.Context(), stored[0].Seq, 1)
	if err != nil || len(missed) != 1 || missed[0].Seq != stored[1].Seq {
		t.Errorf("EventsAfter(first seq, 1) = %v, %v; want the second event only", missed, err)
	}
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	env := newEnv(t)
	slow, cancelSlow := env.m.Subscribe(1)
	defer cancelSlow()
	fast, cancelFast := env.m.Subscribe(64)
	defer cancelFast()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			env.spawn(t, SpawnRequest{})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("spawns blocked on a subscriber that does not read")
	}

	// The slow subscriber got the first event, then its channel closed.
	if _, ok := <-slow; !ok {
		t.Fatal("slow subscriber got no event at all")
	}
	if e, ok := <-slow; ok {
		t.Fatalf("slow subscriber channel still open (got %s), want it closed after lagging", e.Type)
	}

	if n := len(fast); n != 6 {
		t.Errorf("fast subscriber buffered %d events, want 6", n)
	}
}

func TestUnsubscribeClosesChannel(t *testing.T) {
	env := newEnv(t)
	events, cancel := env.m.Subscribe(4)
	cancel()
	cancel()
	if _, ok := <-events; ok {
		t.Fatal("channel open after cancel")
	}
	env.spawn(t, SpawnRequest{})
}

func TestCloseEndsSubscriptions(t *testing.T) {
	env := newEnv(t)
	events, cancel := env.m.Subscribe(4)
	defer cancel()
	if err := env.m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, ok := <-events; ok {
		t.Fatal("channel open after Close")
	}

	late, cancelLate := env.m.Subscribe(4)
	defer cancelLate()
	if _, ok := <-late; ok {
		t.Fatal("a subscription made after Close is open")
	}
}

func TestPruneEvents(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Manager.EventRetention = time.Hour })
	old := env.spawn(t, SpawnRequest{})
	env.clock.Advance(2 * time.Hour)
	recent := env.spawn(t, SpawnRequest{})

	env.m.pruneEvents(t.Context())

	if got := env.eventTypes(t, old.ID); len(got) != 0 {
		t.Errorf("events older than the retention = %v, want none", got)
	}
	if got := env.eventTypes(t, recent.ID); len(got) != 2 {
		t.Errorf("recent events = %v, want 2 kept", got)
	}
}

func TestPruneInterval(t *testing.T) {
	tests := []struct{ retention, want time.Duration }{
		{time.Minute, time.Minute},
		{24 * time.Hour, time.Hour},
		{3 * time.Hour, 18 * time.Minute},
	}
	for _, tt := range tests {
		if got := pruneInterval(tt.retention); got != tt.want {
			t.Errorf("pruneInterval(%s) = %s, want %s", tt.retention, got, tt.want)
		}
	}
}
