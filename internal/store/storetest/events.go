package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/store"
)

// appendEvents appends one event per time in times and returns their
// sequence numbers.
func appendEvents(t *testing.T, s store.Store, times ...time.Time) []int64 {
	t.Helper()
	seqs := make([]int64, len(times))
	for i, at := range times {
		e := store.Event{
			Type:      "sandbox.created",
			SandboxID: fmt.Sprintf("sb-%d", i),
			Time:      at,
			Data:      []byte(fmt.Sprintf(`{"index":%d}`, i)),
		}
		seq, err := s.AppendEvent(t.Context(), e)
		if err != nil {
			t.Fatalf("AppendEvent #%d: %v", i, err)
		}
		seqs[i] = seq
	}
	return seqs
}

// remainingSeqs returns the sequence numbers of every stored event.
func remainingSeqs(t *testing.T, s store.Store) []int64 {
	t.Helper()
	events, err := s.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	seqs := make([]int64, len(events))
	for i, e := range events {
		seqs[i] = e.Seq
	}
	return seqs
}

func assertSeqIncreasing(t *testing.T, events []store.Event) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		if events[i].Seq <= events[i-1].Seq {
			t.Errorf("event %d has seq %d after seq %d, want strictly increasing", i, events[i].Seq, events[i-1].Seq)
		}
	}
}

// repeat returns n copies of at.
func repeat(at time.Time, n int) []time.Time {
	times := make([]time.Time, n)
	for i := range times {
		times[i] = at
	}
	return times
}

func testEventsIncreasingSeq(t *testing.T, s store.Store) {
	zone := time.FixedZone("UTC-07:00", -7*3600)
	want := []store.Event{
		{Type: "sandbox.created", SandboxID: "sb-1", Time: base.In(zone), Data: []byte(`{"image":"python:3.12"}`)},
		{Type: "exec.completed", SandboxID: "sb-1", Time: base.Add(time.Nanosecond), Data: []byte(`{"exit_code":0,"note":"grüße ✓"}`)},
		{Type: "system.started", SandboxID: "", Time: base.Add(time.Second), Data: []byte(`{}`)},
	}

	for i := range want {
		// A Seq set by the caller must not matter.
		e := want[i]
		e.Seq = 1000
		seq, err := s.AppendEvent(t.Context(), e)
		if err != nil {
			t.Fatalf("AppendEvent #%d: %v", i, err)
		}
		if i > 0 && seq <= want[i-1].Seq {
			t.Errorf("AppendEvent #%d seq = %d, want more than %d", i, seq, want[i-1].Seq)
		}
		want[i].Seq = seq
	}

	got, err := s.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("EventsAfter returned %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || got[i].Type != want[i].Type || got[i].SandboxID != want[i].SandboxID {
			t.Errorf("event %d = seq %d %q %q, want seq %d %q %q",
				i, got[i].Seq, got[i].Type, got[i].SandboxID, want[i].Seq, want[i].Type, want[i].SandboxID)
		}
		if !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("event %d Data = %s, want %s", i, got[i].Data, want[i].Data)
		}
		assertTime(t, fmt.Sprintf("event %d Time", i), got[i].Time, want[i].Time)
	}
}

func testEventZeroTime(t *testing.T, s store.Store) {
	before := time.Now()
	appendEvents(t, s, time.Time{})
	after := time.Now()

	events, err := s.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	if len(events) != 1 {
		t.Fatalf("EventsAfter returned %d events, want 1", len(events))
	}
	if got := events[0].Time; got.Before(before) || got.After(after) {
		t.Errorf("event Time = %v, want the time of the append, between %v and %v", got, before, after)
	}
}

func testEventEmptyType(t *testing.T, s store.Store) {
	if _, err := s.AppendEvent(t.Context(), store.Event{SandboxID: "sb-1"}); err == nil {
		t.Errorf("AppendEvent with an empty type succeeded, want an error")
	}
	if seqs := remainingSeqs(t, s); len(seqs) != 0 {
		t.Errorf("stored events after a rejected append = %v, want none", seqs)
	}
}

func testEventsAfterPaging(t *testing.T, s store.Store) {
	want := appendEvents(t, s, repeat(base, 10)...)

	var got []int64
	var pageSizes []int
	after := int64(0)
	for range len(want) + 1 {
		page, err := s.EventsAfter(t.Context(), after, 3)
		if err != nil {
			t.Fatalf("EventsAfter(%d, 3): %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		pageSizes = append(pageSizes, len(page))
		for _, e := range page {
			got = append(got, e.Seq)
		}
		after = page[len(page)-1].Seq
	}

	if !slices.Equal(got, want) {
		t.Errorf("paged seqs = %v, want %v", got, want)
	}
	if wantSizes := []int{3, 3, 3, 1}; !slices.Equal(pageSizes, wantSizes) {
		t.Errorf("page sizes = %v, want %v", pageSizes, wantSizes)
	}

	middle, err := s.EventsAfter(t.Context(), want[4], 2)
	if err != nil {
		t.Fatalf("EventsAfter(%d, 2): %v", want[4], err)
	}
	if len(middle) != 2 || middle[0].Seq != want[5] || middle[1].Seq != want[6] {
		t.Errorf("EventsAfter(%d, 2) = %v, want seqs %v", want[4], middle, want[5:7])
	}
}

func testPruneByAge(t *testing.T, s store.Store) {
	old := time.Now().Add(-2 * time.Hour)
	recent := time.Now()
	seqs := appendEvents(t, s, old, old, recent, old, recent)

	deleted, err := s.PruneEvents(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatalf("PruneEvents with no limits: %v", err)
	}
	if deleted != 0 {
		t.Errorf("PruneEvents with no limits deleted %d, want 0", deleted)
	}

	deleted, err = s.PruneEvents(t.Context(), recent.Add(-time.Hour), 0)
	if err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
	if deleted != 3 {
		t.Errorf("PruneEvents deleted %d, want 3", deleted)
	}
	if got, want := remainingSeqs(t, s), []int64{seqs[2], seqs[4]}; !slices.Equal(got, want) {
		t.Errorf("remaining seqs = %v, want %v", got, want)
	}
}

func testPruneByCount(t *testing.T, s store.Store) {
	seqs := appendEvents(t, s, repeat(time.Now(), 6)...)

	deleted, err := s.PruneEvents(t.Context(), time.Time{}, 10)
	if err != nil {
		t.Fatalf("PruneEvents keeping more than stored: %v", err)
	}
	if deleted != 0 {
		t.Errorf("PruneEvents keeping more than stored deleted %d, want 0", deleted)
	}

	deleted, err = s.PruneEvents(t.Context(), time.Time{}, 2)
	if err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
	if deleted != 4 {
		t.Errorf("PruneEvents deleted %d, want 4", deleted)
	}
	if got, want := remainingSeqs(t, s), seqs[4:]; !slices.Equal(got, want) {
		t.Errorf("remaining seqs = %v, want %v", got, want)
	}
}

func testPruneByAgeAndCount(t *testing.T, s store.Store) {
	now := time.Now()
	old := now.Add(-2 * time.Hour)
	seqs := appendEvents(t, s, old, now, old, now, now, now)

	// The age limit removes the two old events, and the count limit then
	// removes the oldest two of the four recent ones.
	deleted, err := s.PruneEvents(t.Context(), now.Add(-time.Hour), 2)
	if err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
	if deleted != 4 {
		t.Errorf("PruneEvents deleted %d, want 4", deleted)
	}
	if got, want := remainingSeqs(t, s), seqs[4:]; !slices.Equal(got, want) {
		t.Errorf("remaining seqs = %v, want %v", got, want)
	}
}

func testSeqNotReused(t *testing.T, s store.Store) {
	now := time.Now()
	seqs := appendEvents(t, s, repeat(now, 3)...)
	last := seqs[len(seqs)-1]

	deleted, err := s.PruneEvents(t.Context(), now.Add(time.Hour), 0)
	if err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
	if deleted != 3 {
		t.Fatalf("PruneEvents deleted %d, want 3", deleted)
	}

	next := appendEvents(t, s, now)[0]
	if next <= last {
		t.Errorf("seq after pruning every event = %d, want more than %d", next, last)
	}

	events, err := s.EventsAfter(t.Context(), last, 0)
	if err != nil {
		t.Fatalf("EventsAfter(%d): %v", last, err)
	}
	if len(events) != 1 || events[0].Seq != next {
		t.Errorf("EventsAfter(%d) = %v, want only seq %d", last, events, next)
	}
}
