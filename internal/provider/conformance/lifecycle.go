package conformance

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

var lifecycleCases = []testCase{
	{"health", testHealth},
	{"capabilities_match_interfaces", testCapabilitiesMatchInterfaces},
	{"recover_after_spawn", testRecoverAfterSpawn},
	{"spawn_creates_directories", testSpawnCreatesDirectories},
	{"destroy", testDestroy},
	{"destroy_twice", testDestroyTwice},
	{"destroy_unknown", testDestroyUnknown},
	{"unknown_id", testUnknownID},
	{"calls_after_destroy", testCallsAfterDestroy},
	{"inventory_lists_runtime", testInventoryListsRuntime},
	{"logs", testLogs},
	{"stats", testStats},
}

func testHealth(t *testing.T, s *suite) {
	if err := s.p.Health(s.ctx(t)); err != nil {
		t.Errorf("Health: %v, want nil", err)
	}
	if s.p.Name() == "" {
		t.Error("Name() is empty")
	}
}

func testCapabilitiesMatchInterfaces(t *testing.T, s *suite) {
	caps := s.p.Capabilities()
	_, inventory := s.p.(provider.Inventory)
	_, stats := s.p.(provider.StatsReader)
	_, logs := s.p.(provider.LogReader)
	if caps.Inventory != inventory {
		t.Errorf("Capabilities().Inventory = %v, but implements Inventory = %v", caps.Inventory, inventory)
	}
	if caps.Stats != stats {
		t.Errorf("Capabilities().Stats = %v, but implements StatsReader = %v", caps.Stats, stats)
	}
	if caps.Logs != logs {
		t.Errorf("Capabilities().Logs = %v, but implements LogReader = %v", caps.Logs, logs)
	}
	if caps.Isolation == "" {
		t.Error("Capabilities().Isolation is empty")
	}
	if caps.Description == "" {
		t.Error("Capabilities().Description is empty")
	}
}

func testRecoverAfterSpawn(t *testing.T, s *suite) {
	id := s.spawn(t)
	if err := s.p.Recover(s.ctx(t), id); err != nil {
		t.Errorf("Recover after Spawn: %v, want nil", err)
	}
	if err := s.p.Recover(s.ctx(t), id); err != nil {
		t.Errorf("second Recover: %v, want nil", err)
	}
}

func testSpawnCreatesDirectories(t *testing.T, s *suite) {
	id := s.spawn(t)
	for _, dir := range []string{Workspace, "/tmp"} {
		if info := s.stat(t, id, dir); info.Type != provider.TypeDir {
			t.Errorf("Stat(%s).Type = %q, want %q", dir, info.Type, provider.TypeDir)
		}
	}
}

func testDestroy(t *testing.T, s *suite) {
	id := s.spawn(t)
	s.destroy(t, id)
	err := s.p.Recover(s.ctx(t), id)
	assertErrorIs(t, "Recover after Destroy", err, provider.ErrSandboxNotFound)
}

func testDestroyTwice(t *testing.T, s *suite) {
	id := s.spawn(t)
	s.destroy(t, id)
	if err := s.p.Destroy(s.ctx(t), id); err != nil {
		t.Errorf("second Destroy: %v, want nil", err)
	}
}

func testDestroyUnknown(t *testing.T, s *suite) {
	if err := s.p.Destroy(s.ctx(t), newID()); err != nil {
		t.Errorf("Destroy of an unknown ID: %v, want nil", err)
	}
}

func testUnknownID(t *testing.T, s *suite) {
	assertCallsNotFound(t, s, newID())
}

func testCallsAfterDestroy(t *testing.T, s *suite) {
	id := s.spawn(t)
	s.writeFile(t, id, Workspace+"/kept.txt", []byte("data"), 0o644)
	s.destroy(t, id)
	assertCallsNotFound(t, s, id)
}

// assertCallsNotFound checks that every call on id fails with
// ErrSandboxNotFound.
func assertCallsNotFound(t *testing.T, s *suite, id string) {
	t.Helper()
	ctx := s.ctx(t)
	file := Workspace + "/kept.txt"
	tarball := emptyTar(t)
	calls := []namedCall{
		{"Recover", func() error { return s.p.Recover(ctx, id) }},
		{"Exec", func() error {
			req := provider.ExecRequest{Argv: []string{"true"}, Workdir: Workspace}
			_, err := s.p.Exec(ctx, id, req, (&Output{}).Func)
			return err
		}},
		{"ReadFile", func() error { return closeIfOpened(s.p.ReadFile(ctx, id, file)) }},
		{"WriteFile", func() error { return s.p.WriteFile(ctx, id, file, strings.NewReader("x"), 0o644) }},
		{"Stat", func() error { _, err := s.p.Stat(ctx, id, file); return err }},
		{"ListDir", func() error { _, err := s.p.ListDir(ctx, id, Workspace); return err }},
		{"Mkdir", func() error { return s.p.Mkdir(ctx, id, Workspace+"/d", 0o755) }},
		{"Remove", func() error { return s.p.Remove(ctx, id, file, false) }},
		{"Move", func() error { return s.p.Move(ctx, id, file, file+".moved") }},
		{"Chmod", func() error { return s.p.Chmod(ctx, id, file, 0o600) }},
		{"Glob", func() error { _, err := s.p.Glob(ctx, id, Workspace+"/*"); return err }},
		{"ReadArchive", func() error { return closeIfOpened(s.p.ReadArchive(ctx, id, Workspace)) }},
		{"WriteArchive", func() error { return s.p.WriteArchive(ctx, id, Workspace, bytes.NewReader(tarball)) }},
	}
	if logs, ok := s.p.(provider.LogReader); ok {
		calls = append(calls, namedCall{"Logs", func() error { _, err := logs.Logs(ctx, id, 0); return err }})
	}
	if stats, ok := s.p.(provider.StatsReader); ok {
		calls = append(calls, namedCall{"Stats", func() error { _, err := stats.Stats(ctx, id); return err }})
	}
	for _, c := range calls {
		assertErrorIs(t, c.name, c.call(), provider.ErrSandboxNotFound)
	}
}

// namedCall is one provider call on a sandbox, for checks that every call
// fails the same way.
type namedCall struct {
	name string
	call func() error
}

// closeIfOpened closes r when the call succeeded and returns the call's
// error.
func closeIfOpened(r io.ReadCloser, err error) error {
	if err == nil {
		r.Close()
	}
	return err
}

func testInventoryListsRuntime(t *testing.T, s *suite) {
	inv, ok := s.p.(provider.Inventory)
	if !ok {
		t.Skip("the provider does not implement Inventory")
	}
	spec := s.baseSpec()
	spec.OwnerID = "owner-conformance"
	spec.Metadata = map[string]string{"purpose": "conformance", "team": "platform"}
	before := time.Now().Add(-time.Minute)
	s.spawnSpec(t, spec)

	got, found := findRuntime(t, s, inv, spec.ID)
	if !found {
		t.Fatalf("ListRuntimes does not contain %s", spec.ID)
	}
	if got.OwnerID != spec.OwnerID {
		t.Errorf("OwnerID = %q, want %q", got.OwnerID, spec.OwnerID)
	}
	if got.Metadata["purpose"] != "conformance" || got.Metadata["team"] != "platform" {
		t.Errorf("Metadata = %v, want it to contain %v", got.Metadata, spec.Metadata)
	}
	if !got.Running {
		t.Error("Running = false for a live sandbox, want true")
	}
	if got.CreatedAt.Before(before) {
		t.Errorf("CreatedAt = %v, want a time after %v", got.CreatedAt, before)
	}

	s.destroy(t, spec.ID)
	if _, found := findRuntime(t, s, inv, spec.ID); found {
		t.Errorf("ListRuntimes contains %s after Destroy", spec.ID)
	}
}

// findRuntime returns the entry for id from ListRuntimes.
func findRuntime(t *testing.T, s *suite, inv provider.Inventory, id string) (provider.RuntimeInfo, bool) {
	t.Helper()
	runtimes, err := inv.ListRuntimes(s.ctx(t))
	if err != nil {
		t.Fatalf("ListRuntimes: %v", err)
	}
	i := slices.IndexFunc(runtimes, func(r provider.RuntimeInfo) bool { return r.ID == id })
	if i < 0 {
		return provider.RuntimeInfo{}, false
	}
	return runtimes[i], true
}

func testLogs(t *testing.T, s *suite) {
	logs, ok := s.p.(provider.LogReader)
	if !ok {
		t.Skip("the provider does not implement LogReader")
	}
	id := s.spawn(t)
	s.mustShell(t, id, "echo logged")

	all, err := logs.Logs(s.ctx(t), id, 0)
	if err != nil {
		t.Fatalf("Logs(all): %v", err)
	}
	if len(all) == 0 {
		t.Error("Logs(all) is empty after a spawn and an exec")
	}
	last, err := logs.Logs(s.ctx(t), id, 1)
	if err != nil {
		t.Fatalf("Logs(1): %v", err)
	}
	if len(last) > 1 {
		t.Errorf("Logs(1) returned %d lines, want at most 1", len(last))
	}
	if len(all) > 0 && len(last) == 1 && last[0] != all[len(all)-1] {
		t.Errorf("Logs(1) = %q, want the last line %q", last[0], all[len(all)-1])
	}
}

func testStats(t *testing.T, s *suite) {
	stats, ok := s.p.(provider.StatsReader)
	if !ok {
		t.Skip("the provider does not implement StatsReader")
	}
	id := s.spawn(t)
	got, err := stats.Stats(s.ctx(t), id)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got.CPUPercent < 0 || got.MemoryBytes < 0 || got.Pids < 0 {
		t.Errorf("Stats = %+v, want no negative values", got)
	}
}
