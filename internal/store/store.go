// Package store defines how StacyVM persists what it promised: sandbox
// records, the lifecycle event log, spawn templates and idempotency keys.
// The store is the source of truth for promises; providers are the source
// of truth for what exists, and the manager reconciles the two.
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

// Template is a named set of spawn settings. A spawn that names a template
// takes every field it leaves zero from the template.
type Template struct {
	Name         string // 1 to 63 of a-z 0-9 - _ . starting with a letter or digit
	Description  string
	Image        string
	Provider     string
	Runtime      string
	MemoryMB     int
	VCPUs        int
	TTL          time.Duration
	Network      bool
	Env          map[string]string // environment applied to every exec
	Setup        []string          // shell commands run in order once after spawn
	SetupTimeout time.Duration     // bound of each setup command; 0 for the exec default
	Metadata     map[string]string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// IdempotencyKey records which sandbox a spawn request with an
// Idempotency-Key produced, so that a retry returns that sandbox. A record
// with an empty SandboxID is a claim by a spawn still in progress.
type IdempotencyKey struct {
	Key         string
	RequestHash string // hash of the request, to tell a retry from a reuse
	SandboxID   string // empty while the spawn is in progress
	CreatedAt   time.Time
	ExpiresAt   time.Time // after this the key may be claimed again
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

	// CreateTemplate inserts t; ErrConflict when a template has t.Name.
	CreateTemplate(ctx context.Context, t Template) error

	// GetTemplate returns the template named name; ErrNotFound when none.
	GetTemplate(ctx context.Context, name string) (Template, error)

	// ListTemplates returns every template, sorted by name.
	ListTemplates(ctx context.Context) ([]Template, error)

	// UpdateTemplate replaces the template named t.Name, keeping its
	// CreatedAt and setting UpdatedAt to the current time; ErrNotFound when
	// none.
	UpdateTemplate(ctx context.Context, t Template) error

	// DeleteTemplate deletes the template named name; ErrNotFound when none.
	DeleteTemplate(ctx context.Context, name string) error

	// ClaimIdempotencyKey inserts k as an in-progress claim, ignoring
	// k.SandboxID. A record of k.Key that expired at or before k.CreatedAt
	// is replaced, and one that has not expired gives ErrConflict. The
	// check and the insert are atomic, so of concurrent claims of one key
	// exactly one succeeds.
	ClaimIdempotencyKey(ctx context.Context, k IdempotencyKey) error

	// CompleteIdempotencyKey stores the sandbox that the claim of key
	// produced and moves the record's expiry to expiresAt; ErrNotFound when
	// no record has key.
	CompleteIdempotencyKey(ctx context.Context, key, sandboxID string, expiresAt time.Time) error

	// ReleaseIdempotencyKey deletes the record of key while it is an
	// in-progress claim, so that a retry after a failed spawn runs again. A
	// completed record stays, and a missing one is not an error.
	ReleaseIdempotencyKey(ctx context.Context, key string) error

	// GetIdempotencyKey returns the record of key, expired or not;
	// ErrNotFound when none.
	GetIdempotencyKey(ctx context.Context, key string) (IdempotencyKey, error)

	// PruneIdempotencyKeys deletes the records that expired at or before
	// now and returns how many it deleted.
	PruneIdempotencyKeys(ctx context.Context, now time.Time) (int64, error)

	// Close releases the store.
	Close() error
}
