//go:build linux

package proot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
)

// TestProvider runs the conformance suite and the PRoot cases against one
// image store, because unpacking the image takes seconds.
func TestProvider(t *testing.T) {
	requireHost(t)
	images := newImageStore(t)

	t.Run("Conformance", func(t *testing.T) {
		conformance.Run(t, conformance.Harness{
			New: func(t *testing.T) provider.Provider {
				return newTestProvider(t, testConfig(t, searchableTempDir(t), images))
			},
			Image: minimalImage,
		})
	})

	cases := []struct {
		name string
		run  func(t *testing.T, images *image.Store)
	}{
		{"symlinks_stay_in_sandbox", testSymlinksStayInSandbox},
		{"writes_outside_mounts_fail", testWritesOutsideMountsFail},
		{"destroy_keeps_shared_tree", testDestroyKeepsSharedTree},
		{"recover_after_restart", testRecoverAfterRestart},
		{"commands_run_as_sandbox_user", testCommandsRunAsSandboxUser},
		{"file_api_gives_files_to_user", testFileAPIGivesFilesToUser},
		{"long_listing_works", testLongListingWorks},
		{"overlapping_commands", testOverlappingCommands},
		{"server_env_does_not_leak", testServerEnvDoesNotLeak},
		{"root_lists_mounts", testRootListsMounts},
		{"glob_spans_both_trees", testGlobSpansBothTrees},
		{"destroy_stops_running_exec", testDestroyStopsRunningExec},
		{"spawn_rejects_ids", testSpawnRejectsIDs},
		{"fake_root", testFakeRoot},
		{"health_names_the_fix", testHealthNamesTheFix},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, images)
		})
	}
}

// sandboxOf returns the loaded sandbox id of p.
func sandboxOf(t *testing.T, p *Provider, id string) *sandbox {
	t.Helper()
	sb, err := p.lookup(t.Context(), id)
	if err != nil {
		t.Fatalf("lookup(%s): %v", id, err)
	}
	return sb
}

// readString reads the sandbox file at path through the file API.
func readString(t *testing.T, p *Provider, id, path string) (string, error) {
	t.Helper()
	rc, err := p.ReadFile(t.Context(), id, path)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return string(data), err
}

// scanTree returns the listing of the tree at dir, for comparisons before
// and after.
func scanTree(t *testing.T, dir string) image.Tree {
	t.Helper()
	tree, err := image.ScanTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// fileSHA256 returns the SHA-256 of the host file at path.
func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func testSymlinksStayInSandbox(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "links"})
	tree := sandboxOf(t, p, "links").tree
	imagePasswd, err := os.ReadFile(filepath.Join(tree, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	hostPasswd := fileSHA256(t, "/etc/passwd")
	before := scanTree(t, tree)

	res, out := conformance.Shell(t, p, "links", "ln -s / /workspace/root && ln -s /etc/passwd /workspace/pw && cat /workspace/pw")
	if res.ExitCode != 0 {
		t.Fatalf("making the links exited %d: %s", res.ExitCode, out.Stderr())
	}
	if out.Stdout() != string(imagePasswd) {
		t.Errorf("cat /workspace/pw in the sandbox printed %q, want the image's /etc/passwd", out.Stdout())
	}

	for _, path := range []string{"/workspace/pw", "/workspace/root/etc/passwd"} {
		got, err := readString(t, p, "links", path)
		if err != nil {
			t.Errorf("ReadFile(%s): %v", path, err)
		} else if got != string(imagePasswd) {
			t.Errorf("ReadFile(%s) = %q, want the image's /etc/passwd", path, got)
		}
	}

	info, err := p.Stat(t.Context(), "links", "/workspace/pw")
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != provider.TypeSymlink || info.LinkTarget != "/etc/passwd" || info.Path != "/workspace/pw" {
		t.Errorf("Stat(/workspace/pw) = %+v, want a symlink to /etc/passwd", info)
	}

	for _, path := range []string{"/workspace/pw", "/workspace/root/etc/passwd"} {
		err := p.WriteFile(t.Context(), "links", path, strings.NewReader("changed\n"), 0o644)
		if !errors.Is(err, provider.ErrInvalidArgument) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("WriteFile(%s): error = %v, want the read-only error", path, err)
		}
	}

	// A write through the link to "/" into a mount lands in the sandbox's
	// own directory, where a read by its plain path finds it.
	if err := p.WriteFile(t.Context(), "links", "/workspace/root/workspace/through.txt", strings.NewReader("through"), 0o644); err != nil {
		t.Fatalf("WriteFile through the link to /: %v", err)
	}
	if got, err := readString(t, p, "links", "/workspace/through.txt"); err != nil || got != "through" {
		t.Errorf("ReadFile(/workspace/through.txt) = %q, %v, want the file written through the link", got, err)
	}

	if fileSHA256(t, "/etc/passwd") != hostPasswd {
		t.Error("the host's /etc/passwd changed")
	}
	if after := scanTree(t, tree); !reflect.DeepEqual(before, after) {
		t.Error("the image's shared tree changed")
	}
}

func testWritesOutsideMountsFail(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "readonly"})
	tree := sandboxOf(t, p, "readonly").tree
	before := scanTree(t, tree)

	res, out := conformance.Shell(t, p, "readonly", "touch /usr/bin/x")
	if res.ExitCode == 0 {
		t.Error("touch /usr/bin/x in the sandbox succeeded")
	}
	if !strings.Contains(out.Stderr(), "Permission denied") {
		t.Errorf("touch /usr/bin/x printed %q, want Permission denied", out.Stderr())
	}
	res, _ = conformance.Shell(t, p, "readonly", "echo x >> /etc/passwd || exit 3; rm -f /bin/sh || exit 4")
	if res.ExitCode != 3 {
		t.Errorf("appending to /etc/passwd exited %d, want the failure's 3", res.ExitCode)
	}

	ctx := t.Context()
	calls := []struct {
		name string
		call func() error
	}{
		{"WriteFile(/usr/bin/x)", func() error {
			return p.WriteFile(ctx, "readonly", "/usr/bin/x", strings.NewReader("x"), 0o755)
		}},
		{"Mkdir(/opt/new)", func() error { return p.Mkdir(ctx, "readonly", "/opt/new", 0o755) }},
		{"Remove(/etc/passwd)", func() error { return p.Remove(ctx, "readonly", "/etc/passwd", false) }},
		{"Chmod(/etc/passwd)", func() error { return p.Chmod(ctx, "readonly", "/etc/passwd", 0o777) }},
		{"Move(/etc/passwd)", func() error { return p.Move(ctx, "readonly", "/etc/passwd", "/workspace/passwd") }},
		{"Move(to /usr)", func() error {
			if err := p.WriteFile(ctx, "readonly", "/workspace/f", strings.NewReader("f"), 0o644); err != nil {
				return err
			}
			return p.Move(ctx, "readonly", "/workspace/f", "/usr/f")
		}},
		{"WriteArchive(/opt)", func() error { return p.WriteArchive(ctx, "readonly", "/opt", bytes.NewReader(emptyTar())) }},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, provider.ErrInvalidArgument) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: error = %v, want the read-only error", c.name, err)
		}
		var pe *provider.PathError
		if !errors.As(err, &pe) {
			t.Errorf("%s: error %v is not a *provider.PathError", c.name, err)
		}
	}

	if err := p.Mkdir(ctx, "readonly", "/usr", 0o755); err != nil {
		t.Errorf("Mkdir of the existing /usr: %v, want nil", err)
	}
	if err := p.Remove(ctx, "readonly", "/workspace", true); !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("Remove(/workspace): error = %v, want ErrInvalidArgument", err)
	}
	if err := p.Remove(ctx, "readonly", "/no-such-file", false); !errors.Is(err, provider.ErrPathNotFound) {
		t.Errorf("Remove(/no-such-file): error = %v, want ErrPathNotFound", err)
	}

	if after := scanTree(t, tree); !reflect.DeepEqual(before, after) {
		t.Error("the image's shared tree changed")
	}
}

// emptyTar returns a tar archive without entries.
func emptyTar() []byte {
	return make([]byte, 1024) // two zero blocks end an archive
}

func testDestroyKeepsSharedTree(t *testing.T, images *image.Store) {
	stateDir := searchableTempDir(t)
	p := newTestProvider(t, testConfig(t, stateDir, images))
	spawn(t, p, provider.SpawnSpec{ID: "gone"})
	sb := sandboxOf(t, p, "gone")
	tree, uid := sb.tree, sb.state.UID
	before := scanTree(t, tree)

	conformance.Shell(t, p, "gone", "echo data > file.txt; mkdir -p /tmp/a /home/b; touch /usr/bin/x 2>/dev/null; (sleep 60 &) ; true")
	if err := p.Destroy(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []string{filepath.Join(stateDir, "gone"), runDir(stateDir, uid)} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Destroy (stat error %v)", dir, err)
		}
	}
	if pids := processesWith(func(pid int) bool { u, ok := processUID(pid); return ok && u == uid }); len(pids) > 0 {
		t.Errorf("processes %v of the sandbox user %d survive Destroy", pids, uid)
	}
	if after := scanTree(t, tree); !reflect.DeepEqual(before, after) {
		t.Error("the image's shared tree changed")
	}
	if err := p.Recover(t.Context(), "gone"); !errors.Is(err, provider.ErrSandboxNotFound) {
		t.Errorf("Recover after Destroy: %v, want ErrSandboxNotFound", err)
	}
}

func testRecoverAfterRestart(t *testing.T, images *image.Store) {
	cfg := testConfig(t, searchableTempDir(t), images)
	first := newTestProvider(t, cfg)
	spec := provider.SpawnSpec{
		ID:       "restart-1",
		Image:    minimalImage,
		Env:      map[string]string{"KEPT": "across restarts"},
		OwnerID:  "owner-1",
		Metadata: map[string]string{"k": "v"},
	}
	spawn(t, first, spec)
	if err := first.WriteFile(t.Context(), spec.ID, "/workspace/kept.txt", strings.NewReader("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out := conformance.Shell(t, first, spec.ID, "id -u")
	uid := strings.TrimSpace(out.Stdout())

	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Recover(t.Context(), spec.ID); err != nil {
		t.Fatalf("Recover on a new Provider: %v", err)
	}
	runtimes, err := second.ListRuntimes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(runtimes) != 1 {
		t.Fatalf("ListRuntimes returned %d runtimes, want 1", len(runtimes))
	}
	got := runtimes[0]
	if got.ID != spec.ID || got.Image != minimalImage || got.OwnerID != "owner-1" || got.Metadata["k"] != "v" || !got.Running {
		t.Errorf("ListRuntimes = %+v, want the spawned sandbox", got)
	}

	_, out = conformance.Shell(t, second, spec.ID, `cat kept.txt; echo " $KEPT"; id -u`)
	if want := "kept across restarts\n" + uid + "\n"; out.Stdout() != want {
		t.Errorf("exec after restart printed %q, want %q: the file, the spawn Env and the same user", out.Stdout(), want)
	}
	if err := second.Destroy(t.Context(), spec.ID); err != nil {
		t.Fatalf("Destroy on the new Provider: %v", err)
	}
}

func testCommandsRunAsSandboxUser(t *testing.T, images *image.Store) {
	cfg := testConfig(t, searchableTempDir(t), images)
	p := newTestProvider(t, cfg)
	spawn(t, p, provider.SpawnSpec{ID: "user-a"})
	spawn(t, p, provider.SpawnSpec{ID: "user-b"})

	uids := map[string]int{}
	for _, id := range []string{"user-a", "user-b"} {
		_, out := conformance.Shell(t, p, id, "id -u; id -g; stat -c %u /workspace")
		fields := strings.Fields(out.Stdout())
		if len(fields) != 3 {
			t.Fatalf("%s: id and stat printed %q", id, out.Stdout())
		}
		uid, _ := strconv.Atoi(fields[0])
		if uid < cfg.UIDStart || uid >= cfg.UIDStart+cfg.UIDCount {
			t.Errorf("%s: commands run as uid %d, want one of %d+%d", id, uid, cfg.UIDStart, cfg.UIDCount)
		}
		if fields[1] != fields[0] || fields[2] != fields[0] {
			t.Errorf("%s: uid, gid and the owner of /workspace are %q, want one ID", id, fields)
		}
		uids[id] = uid
	}
	if uids["user-a"] == uids["user-b"] {
		t.Errorf("both sandboxes run as uid %d, want one user each", uids["user-a"])
	}
}

func testFileAPIGivesFilesToUser(t *testing.T, images *image.Store) {
	stateDir := searchableTempDir(t)
	p := newTestProvider(t, testConfig(t, stateDir, images))
	spawn(t, p, provider.SpawnSpec{ID: "owned"})
	uid := sandboxOf(t, p, "owned").state.UID
	ctx := t.Context()

	if err := p.WriteFile(ctx, "owned", "/workspace/a/b/c.txt", strings.NewReader("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Mkdir(ctx, "owned", "/home/d/e", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteArchive(ctx, "owned", "/tmp/x", bytes.NewReader(tarOf(t, "y/z.txt", "z"))); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFile(ctx, "owned", "/workspace/suid", strings.NewReader("#!/bin/sh\n"), 0o4755); err != nil {
		t.Fatal(err)
	}

	upper := filepath.Join(stateDir, "owned", upperDir)
	for _, rel := range []string{"workspace/a", "workspace/a/b", "workspace/a/b/c.txt", "home/d", "home/d/e", "tmp/x", "tmp/x/y", "tmp/x/y/z.txt"} {
		info, err := os.Lstat(filepath.Join(upper, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != uid {
			t.Errorf("%s is owned by %d:%d, want the sandbox user %d", rel, st.Uid, st.Gid, uid)
		}
	}
	if info, err := p.Stat(ctx, "owned", "/workspace/suid"); err != nil || info.Mode&fs.ModeSetuid == 0 {
		t.Errorf("Stat(/workspace/suid) = %v, %v, want the setuid bit kept after the owner changed", info.Mode, err)
	}

	res, out := conformance.Shell(t, p, "owned", "echo two >> a/b/c.txt && mkdir a/b/more && touch /home/d/e/f /tmp/x/y/w && cat a/b/c.txt")
	if res.ExitCode != 0 || out.Stdout() != "one\ntwo\n" {
		t.Errorf("changing files the file API made exited %d with %q %q, want 0 and both lines", res.ExitCode, out.Stdout(), out.Stderr())
	}
}

func testLongListingWorks(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "listing"})
	if err := p.WriteFile(t.Context(), "listing", "/workspace/seven.txt", strings.NewReader("1234567"), 0o644); err != nil {
		t.Fatal(err)
	}

	res, out := conformance.Shell(t, p, "listing", "ls -l /workspace; stat -c %s seven.txt; test -x /bin/sh && echo exec")
	if res.ExitCode != 0 {
		t.Fatalf("ls, stat and test exited %d: %s", res.ExitCode, out.Stderr())
	}
	if strings.Contains(out.Stdout(), "?") || !strings.Contains(out.Stdout(), " 7 ") || !strings.Contains(out.Stdout(), "seven.txt") {
		t.Errorf("ls -l printed %q, want seven.txt with its size 7", out.Stdout())
	}
	if !strings.HasSuffix(out.Stdout(), "\n7\nexec\n") {
		t.Errorf("output ends %q, want stat's size 7 and test -x's exec", out.Stdout())
	}
}

func testOverlappingCommands(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "overlap"})

	long := make(chan string, 1)
	go func() {
		out := &conformance.Output{}
		req := provider.ExecRequest{Argv: []string{"sh", "-c", "sleep 1.5; ls /usr/bin | head -c 100 >/dev/null; echo long"}, Workdir: "/workspace"}
		res, err := p.Exec(context.Background(), "overlap", req, out.Func)
		if err != nil || res.ExitCode != 0 {
			long <- "failed"
			return
		}
		long <- out.Stdout()
	}()

	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	for i := range 5 {
		res, out := conformance.Shell(t, p, "overlap", "ls /usr/bin | wc -l >/dev/null && echo short-"+strconv.Itoa(i))
		if res.ExitCode != 0 || out.Stdout() != "short-"+strconv.Itoa(i)+"\n" {
			t.Errorf("short command %d exited %d with %q %q", i, res.ExitCode, out.Stdout(), out.Stderr())
		}
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("5 short commands took %v while a long one ran, want under 1s: they waited for it", elapsed)
	}
	if got := <-long; got != "long\n" {
		t.Errorf("the long command printed %q, want %q", got, "long\n")
	}
}

func testServerEnvDoesNotLeak(t *testing.T, images *image.Store) {
	// The variable is in the test binary's environment for its whole
	// run; nothing reads it but this case.
	os.Setenv("STACYVM_SERVER_SECRET", "do-not-leak")
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "env", Env: map[string]string{"FROM_SPAWN": "yes"}})

	_, out := conformance.Exec(t, p, "env", provider.ExecRequest{Argv: []string{"env"}})
	vars := map[string]string{}
	for line := range strings.Lines(out.Stdout()) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		vars[k] = v
	}
	if _, ok := vars["STACYVM_SERVER_SECRET"]; ok {
		t.Error("the server's environment reached the command")
	}
	want := map[string]string{
		"PATH":       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":       "/home",
		"TMPDIR":     "/tmp",
		"LANG":       "C.UTF-8",
		"FROM_SPAWN": "yes",
	}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("%s = %q, want %q", k, vars[k], v)
		}
	}
}

func testRootListsMounts(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "root"})
	if err := p.WriteFile(t.Context(), "root", "/workspace/mine.txt", strings.NewReader("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	entries, err := p.ListDir(t.Context(), "root", "/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if e.Path != "/"+e.Name {
			t.Errorf("entry %s has path %q", e.Name, e.Path)
		}
	}
	for _, want := range []string{"etc", "home", "tmp", "usr", "workspace"} {
		if !slices.Contains(names, want) {
			t.Errorf("ListDir(/) = %q, want %s in it", names, want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("ListDir(/) = %q, want it sorted", names)
	}

	listed, err := p.ListDir(t.Context(), "root", "/workspace")
	if err != nil || len(listed) != 1 || listed[0].Path != "/workspace/mine.txt" {
		t.Errorf("ListDir(/workspace) = %+v, %v, want mine.txt", listed, err)
	}
	if _, err := p.ReadArchive(t.Context(), "root", "/"); !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("ReadArchive(/): error = %v, want ErrInvalidArgument", err)
	}
}

func testGlobSpansBothTrees(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "glob"})
	ctx := t.Context()
	for _, path := range []string{"/workspace/a.conf", "/home/b/c.conf"} {
		if err := p.WriteFile(ctx, "glob", path, strings.NewReader("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conformance.Shell(t, p, "glob", "ln -s /etc /workspace/etc-link")

	paths := func(pattern string) []string {
		t.Helper()
		matches, err := p.Glob(ctx, "glob", pattern)
		if err != nil {
			t.Fatalf("Glob(%s): %v", pattern, err)
		}
		var got []string
		for _, m := range matches {
			got = append(got, m.Path)
		}
		return got
	}

	top := paths("/*")
	for _, want := range []string{"/etc", "/home", "/usr", "/workspace"} {
		if !slices.Contains(top, want) {
			t.Errorf("Glob(/*) = %q, want %s in it", top, want)
		}
	}
	if got, want := paths("/*/**/*.conf"), []string{"/home/b/c.conf", "/workspace/a.conf"}; !containsAll(got, want) {
		t.Errorf("Glob(/*/**/*.conf) = %q, want %q among them", got, want)
	}
	if got := paths("/workspace/etc-link/passw?"); !slices.Equal(got, []string{"/workspace/etc-link/passwd"}) {
		t.Errorf("Glob through a link into the image = %q, want /workspace/etc-link/passwd", got)
	}
}

func containsAll(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

func testDestroyStopsRunningExec(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "busy"})

	errc := make(chan error, 1)
	go func() {
		req := provider.ExecRequest{Argv: []string{"sleep", "30"}, Workdir: "/workspace"}
		_, err := p.Exec(context.Background(), "busy", req, nil)
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	if err := p.Destroy(t.Context(), "busy"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Destroy took %v with a running command, want under 3s", elapsed)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, provider.ErrSandboxDestroyed) {
			t.Errorf("Exec error = %v, want ErrSandboxDestroyed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Exec still running after Destroy returned")
	}
}

func testSpawnRejectsIDs(t *testing.T, images *image.Store) {
	p := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	spawn(t, p, provider.SpawnSpec{ID: "taken"})

	for _, id := range []string{"taken", "", "Upper", "dot.dot", "../escape", "a/b", strings.Repeat("a", 65)} {
		err := p.Spawn(t.Context(), provider.SpawnSpec{ID: id, Image: minimalImage})
		if !errors.Is(err, provider.ErrInvalidArgument) {
			t.Errorf("Spawn(%q): error = %v, want ErrInvalidArgument", id, err)
		}
	}
	if err := p.Recover(t.Context(), "taken"); err != nil {
		t.Errorf("Recover(taken) after the rejected second Spawn: %v", err)
	}
	err := p.Spawn(t.Context(), provider.SpawnSpec{ID: "no-image", Image: "stacyvm/no-such-image"})
	if !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Spawn of a missing image: error = %v, want image.ErrNotFound", err)
	}
}

func testFakeRoot(t *testing.T, images *image.Store) {
	cfg := testConfig(t, searchableTempDir(t), images)
	cfg.FakeRoot = true
	p := newTestProvider(t, cfg)
	spawn(t, p, provider.SpawnSpec{ID: "fake"})

	_, out := conformance.Shell(t, p, "fake", "id -u; touch /usr/bin/x 2>/dev/null && echo wrote")
	if out.Stdout() != "0\n" {
		t.Errorf("id -u and a write to /usr/bin printed %q, want 0 and no write", out.Stdout())
	}
}

func testHealthNamesTheFix(t *testing.T, images *image.Store) {
	cfg := testConfig(t, searchableTempDir(t), images)
	p := newTestProvider(t, cfg)
	if err := p.Health(t.Context()); err != nil {
		t.Fatalf("Health: %v", err)
	}

	cfg.Binary = "no-such-proot-binary"
	missing := newTestProvider(t, cfg)
	err := missing.Health(t.Context())
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "apt-get install proot") {
		t.Errorf("Health without the binary: %v, want ErrUnavailable naming apt-get install proot", err)
	}

	notRoot := newTestProvider(t, testConfig(t, searchableTempDir(t), images))
	notRoot.euid = 1000
	if err := notRoot.Health(t.Context()); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Health when not root: %v, want ErrUnavailable", err)
	}
	if err := notRoot.Spawn(t.Context(), provider.SpawnSpec{ID: "x", Image: minimalImage}); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Spawn when not root: %v, want ErrUnavailable", err)
	}
}
