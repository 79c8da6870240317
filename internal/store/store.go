// Package store defines how StacyVM persists what it promised: sandbox
// records and the lifecycle event log. The store is the source of truth for
// promises; providers are the source of truth for what exists, and the
// manager reconciles the two.
//
// The sqlite subpackage is the embedded default.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every Store implementation, wrapped with context.
var (
	// ErrNotFound: no record has the requested key.
	ErrNotFound = errors.New("not found")

	// ErrConflict: a record with the key already exists, or an update lost a
	// race with another writer.
	ErrConflict = errors.New("conflict")
)

// State is a sandbox's lifecycle state. The manager owns the transitions:
//
//	creating ──► running ──► destroying ──► destroyed
//	    │           │  ▲          ▲
//	    ▼           ▼  │          │
//	  error ◄───────┘  └─ error ──┘
//
// creating: the provider is building the runtime.
// running: the runtime accepts exec and file calls.
// error: the runtime's state is unknown or broken (its provider is down, or a
// spawn or destroy failed half way); reconcile retries, and destroy is
// allowed.
// destroying: a destroy is in progress.
// destroyed: final; the record stays so that later calls say "destroyed".
type State string

// Sandbox states.
const (
	StateCreating   State = "creating"
	StateRunning    State = "running"
	StateError      State = "error"
	StateDestroying State = "destroying"
	StateDestroyed  State = "destroyed"
)

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	switch s {
	case StateCreating, StateRunning, StateError, StateDestroying, StateDestroyed:
		return true
	}
	return false
}

// Live reports whether a sandbox in state s may still hold a runtime.
func (s State) Live() bool { return s != StateDestroyed }

// Sandbox is the persisted record of one sandbox.
type Sandbox struct {
	ID          string
	State       State
	Provider    string
	Image       string
	Runtime     string // OCI runtime or variant chosen at spawn; empty for the provider default
	MemoryMB    int
	VCPUs       int
	Network     bool
	OwnerID     string
	Template    string            // template the sandbox was spawned from, if any
	Env         map[string]string // environment applied to every exec
	Metadata    map[string]string
	Error       string // last error for the error state, for people
	CreatedAt   time.Time
	UpdatedAt   time.Time
	ExpiresAt   time.Time
	DestroyedAt time.Time // zero until destroyed
}

// Filter selects sandboxes in List. Zero fields match everything.
type Filter struct {
	State   State
	OwnerID string
	Live    bool // only records whose state is not destroyed
	Limit   int  // at most this many, newest first; 0 for all
}

// Event is one entry of the lifecycle event log. Seq is assigned by the store
// and increases strictly, so clients can resume after the last seq they saw.
type Event struct {
	Seq       int64
	Type      string // such as "sandbox.created" or "exec.completed"
	SandboxID string
	Time      time.Time
	Data      []byte // JSON object with event details
}

// Store persists sandboxes and events. Implementations are safe for
// concurrent use.
type Store interface {
	// CreateSandbox inserts a new record; ErrConflict when the ID exists.
	CreateSandbox(ctx context.Context, sb Sandbox) error

	// GetSandbox returns the record with id; ErrNotFound when none.
	GetSandbox(ctx context.Context, id string) (Sandbox, error)

	// ListSandboxes returns matching records, newest (by CreatedAt) first.
	ListSandboxes(ctx context.Context, f Filter) ([]Sandbox, error)

	// UpdateSandbox replaces the record with sb.ID and sets UpdatedAt;
	// ErrNotFound when none.
	UpdateSandbox(ctx context.Context, sb Sandbox) error

	// CountLive returns how many records are not destroyed, for all owners
	// when ownerID is empty.
	CountLive(ctx context.Context, ownerID string) (int, error)

	// AppendEvent stores e with the next sequence number and returns it.
	AppendEvent(ctx context.Context, e Event) (int64, error)

	// EventsAfter returns up to limit events with Seq > after, oldest first.
	EventsAfter(ctx context.Context, after int64, limit int) ([]Event, error)

	// PruneEvents deletes events older than before and keeps at most keep of
	// the newest; it returns how many it deleted.
	PruneEvents(ctx context.Context, before time.Time, keep int) (int64, error)

	// Close releases the store.
	Close() error
}
