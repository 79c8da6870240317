package orchestrator

import "context"

// Kinds of operations tracked per sandbox.
const (
	opSpawn     = "spawn"
	opDestroy   = "destroy"
	opReconcile = "reconcile"
)

// operation is a spawn, destroy or reconcile action in flight on one
// sandbox in this process. done is closed when it ends, and err is its
// result, readable after done is closed.
type operation struct {
	kind string
	done chan struct{}
	err  error
}

// tryBegin registers an operation of kind on id and returns it. When
// another operation is in flight on id it returns nil and that operation.
func (m *Manager) tryBegin(id, kind string) (mine, current *operation) {
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	if op, ok := m.ops[id]; ok {
		return nil, op
	}
	op := &operation{kind: kind, done: make(chan struct{})}
	m.ops[id] = op
	return op, nil
}

// begin registers an operation of kind on id, waiting for operations in
// flight to end first. When join is true and the operation in flight is of
// the same kind, begin does not start a new one: it returns nil, true and
// that operation's result. It returns ctx.Err() when ctx ends first.
func (m *Manager) begin(ctx context.Context, id, kind string, join bool) (op *operation, joined bool, err error) {
	for {
		mine, current := m.tryBegin(id, kind)
		if mine != nil {
			return mine, false, nil
		}

		select {
		case <-current.done:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if join && current.kind == kind {
			return nil, true, current.err
		}
	}
}

// end records the result of op and removes it from id.
func (m *Manager) end(id string, op *operation, err error) {
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	op.err = err
	delete(m.ops, id)
	close(op.done)
}

// busy reports whether an operation is in flight on id.
func (m *Manager) busy(id string) bool {
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	_, ok := m.ops[id]
	return ok
}
