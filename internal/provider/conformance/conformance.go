// Package conformance is the test suite that every provider passes. A
// provider's test file is a factory plus a gate:
//
//	func TestConformance(t *testing.T) {
//		if !dockerAvailable() {
//			t.Skip("docker: no engine reachable at /var/run/docker.sock")
//		}
//		conformance.Run(t, conformance.Harness{
//			New:   func(t *testing.T) provider.Provider { return newTestProvider(t) },
//			Image: "debian:bookworm-slim",
//		})
//	}
//
// Each case is a named subtest that spawns its own sandboxes and destroys
// them in t.Cleanup, so cases run in parallel and can be selected with
// -run, for example -run 'Conformance/exec/timeout'. The cases need only a
// POSIX sh and the coreutils of a minimal Debian image inside the sandbox.
// Commands refer to files by paths relative to their working directory,
// because on a provider without isolation an absolute path in a command
// names a host file.
// docs/provider-contract.md lists the cases.
package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Harness describes the provider under test.
type Harness struct {
	// New returns the provider under test. Run calls it once and shares
	// the provider among the cases, which run in parallel. New registers
	// any cleanup with t.Cleanup.
	New func(t *testing.T) provider.Provider

	// Image is the SpawnSpec.Image of every sandbox; empty for the
	// provider's default. Runtime is the SpawnSpec.Runtime.
	Image   string
	Runtime string

	// HostPaths is true when commands see host paths rather than sandbox
	// paths, as with the mock, so that pwd does not print "/workspace".
	HostPaths bool

	// Slack is added to every time bound the suite checks, such as how
	// soon a timed-out command must return, for providers with slow exec
	// round trips. Zero suits providers whose calls take milliseconds.
	Slack time.Duration
}

// Workspace is the directory that every sandbox has at spawn and that the
// cases work in.
const Workspace = "/workspace"

// Limits for single calls, so that a hanging provider fails the case
// instead of stalling the whole test binary.
const (
	spawnLimit = 2 * time.Minute
	callLimit  = time.Minute
)

// suite is the state shared by the cases of one Run.
type suite struct {
	h Harness
	p provider.Provider
}

// testCase is one named behaviour.
type testCase struct {
	name string
	run  func(t *testing.T, s *suite)
}

// Run runs every conformance case against the provider from h.New, grouped
// in the subtests lifecycle, exec and files.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("conformance: Harness.New is nil")
	}
	s := &suite{h: h, p: h.New(t)}
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"lifecycle", lifecycleCases},
		{"exec", execCases},
		{"files", fileCases},
		{"archive", archiveCases},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, s)
				})
			}
		})
	}
}

// newID returns a sandbox ID unique to this run, valid for every provider.
func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ct-" + hex.EncodeToString(b[:])
}

// baseSpec returns a SpawnSpec with a new ID and the harness's image.
func (s *suite) baseSpec() provider.SpawnSpec {
	return provider.SpawnSpec{ID: newID(), Image: s.h.Image, Runtime: s.h.Runtime}
}

// spawn creates a sandbox with a new ID and destroys it when the test ends.
func (s *suite) spawn(t *testing.T) string {
	t.Helper()
	return s.spawnSpec(t, s.baseSpec())
}

// spawnSpec creates the sandbox described by spec and destroys it when the
// test ends.
func (s *suite) spawnSpec(t *testing.T, spec provider.SpawnSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), spawnLimit+s.h.Slack)
	defer cancel()
	if err := s.p.Spawn(ctx, spec); err != nil {
		t.Fatalf("Spawn(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callLimit+s.h.Slack)
		defer cancel()
		if err := s.p.Destroy(ctx, spec.ID); err != nil {
			t.Errorf("Destroy(%s) in cleanup: %v", spec.ID, err)
		}
	})
	return spec.ID
}

// destroy destroys id and fails the test on an error.
func (s *suite) destroy(t *testing.T, id string) {
	t.Helper()
	if err := s.p.Destroy(s.ctx(t), id); err != nil {
		t.Fatalf("Destroy(%s): %v", id, err)
	}
}

// ctx returns a context for one call, bounded by callLimit plus the slack.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callLimit+s.h.Slack)
	t.Cleanup(cancel)
	return ctx
}

// within scales a time bound by the harness's slack.
func (s *suite) within(d time.Duration) time.Duration {
	return d + s.h.Slack
}

// assertErrorIs fails the test unless err matches target.
func assertErrorIs(t *testing.T, call string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error = %v, want one matching %q", call, err, target)
	}
}
