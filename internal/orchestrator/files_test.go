package orchestrator

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

func TestFilesResolvePaths(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	files, err := env.m.Files(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	ctx := t.Context()

	calls := []struct {
		name string
		call func() error
		want string
	}{
		{"read relative", func() error { return closeReader(files.ReadFile(ctx, "notes.txt")) }, "read /workspace/notes.txt"},
		{"write absolute", func() error { return files.WriteFile(ctx, "/etc//motd", strings.NewReader("x"), 0o644) }, "write /etc/motd"},
		{"stat dotted", func() error { _, err := files.Stat(ctx, "./a/../b"); return err }, "stat /workspace/b"},
		{"list relative dir", func() error { _, err := files.ListDir(ctx, "src/"); return err }, "list /workspace/src"},
		{"mkdir", func() error { return files.Mkdir(ctx, "out/bin", 0o755) }, "mkdir /workspace/out/bin"},
		{"remove", func() error { return files.Remove(ctx, "/tmp/x/", true) }, "remove /tmp/x"},
		{"move", func() error { return files.Move(ctx, "a.txt", "/tmp/b.txt") }, "move /workspace/a.txt /tmp/b.txt"},
		{"chmod", func() error { return files.Chmod(ctx, "run.sh", 0o755) }, "chmod /workspace/run.sh"},
		{"glob relative", func() error { _, err := files.Glob(ctx, "src/**/*.go"); return err }, "glob /workspace/src/**/*.go"},
		{"glob absolute", func() error { _, err := files.Glob(ctx, "/etc/*.conf"); return err }, "glob /etc/*.conf"},
		{"read archive", func() error { return closeReader(files.ReadArchive(ctx, "")) }, ""},
		{"write archive", func() error { return files.WriteArchive(ctx, "dist", strings.NewReader("")) }, "write_archive /workspace/dist"},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			before := len(env.fake.fileCalls)
			err := c.call()
			if c.want == "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != "path" {
					t.Errorf("error = %v, want a FieldError naming path", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			env.fake.mu.Lock()
			got := env.fake.fileCalls[before:]
			env.fake.mu.Unlock()
			if !slices.Equal(got, []string{c.want}) {
				t.Errorf("provider calls = %q, want %q", got, c.want)
			}
		})
	}
}

func TestFilesRejectBadPaths(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	files, err := env.m.Files(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	ctx := t.Context()

	tests := []struct {
		name  string
		err   error
		field string
	}{
		{"empty path", files.Mkdir(ctx, "", 0o755), "path"},
		{"NUL in path", files.Chmod(ctx, "a\x00b", 0o600), "path"},
		{"empty old path", files.Move(ctx, "", "b"), "old_path"},
		{"empty new path", files.Move(ctx, "a", ""), "new_path"},
		{"malformed pattern", func() error { _, err := files.Glob(ctx, "src/[a-"); return err }(), "pattern"},
	}
	for _, tt := range tests {
		var fe *FieldError
		if !errors.As(tt.err, &fe) || fe.Field != tt.field {
			t.Errorf("%s: error = %v, want a FieldError naming %s", tt.name, tt.err, tt.field)
		}
	}
	if len(env.fake.fileCalls) != 0 {
		t.Errorf("provider calls = %q, want none for rejected paths", env.fake.fileCalls)
	}
}

func TestFilesKeepProviderErrors(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	files, err := env.m.Files(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	env.fake.set(func(f *fakeProvider) {
		f.fileErr = &provider.PathError{Op: "stat", Path: "/workspace/none", Err: provider.ErrPathNotFound}
	})

	_, err = files.Stat(t.Context(), "none")
	if !errors.Is(err, provider.ErrPathNotFound) {
		t.Errorf("error = %v, want ErrPathNotFound", err)
	}
	var pe *provider.PathError
	if !errors.As(err, &pe) || pe.Path != "/workspace/none" {
		t.Errorf("error = %v, want the provider's *PathError", err)
	}
}

func TestFilesOnVanishedRuntime(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	files, err := env.m.Files(t.Context(), sb.ID)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	env.fake.set(func(f *fakeProvider) { delete(f.runtimes, sb.ID) })

	err = files.WriteFile(t.Context(), "a", strings.NewReader("x"), 0o644)
	if !errors.Is(err, provider.ErrSandboxDestroyed) {
		t.Fatalf("error = %v, want ErrSandboxDestroyed", err)
	}
	if got := env.get(t, sb.ID); got.State != store.StateDestroyed {
		t.Errorf("state = %s, want destroyed", got.State)
	}
}

// closeReader closes rc when the call returned one.
func closeReader(rc io.ReadCloser, err error) error {
	if rc != nil {
		rc.Close()
	}
	return err
}
