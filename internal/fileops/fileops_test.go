package fileops

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// newFS opens a file API on a fresh temporary root and returns it with the
// root's host directory.
func newFS(t *testing.T) (*FS, string) {
	t.Helper()
	dir := t.TempDir()
	fsys, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { fsys.Close() })
	return fsys, dir
}

// hostPath returns the host path of the sandbox path p under root.
func hostPath(root, p string) string {
	return filepath.Join(root, filepath.FromSlash(p))
}

// mustWriteHost creates a file on the host, with its parents.
func mustWriteHost(t *testing.T, name, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, fsys *FS, p, content string) {
	t.Helper()
	if err := fsys.WriteFile(t.Context(), p, strings.NewReader(content), 0); err != nil {
		t.Fatalf("WriteFile(%q): %v", p, err)
	}
}

func readString(t *testing.T, fsys *FS, p string) (string, error) {
	t.Helper()
	rc, err := fsys.ReadFile(t.Context(), p)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return string(data), err
}

func mustRead(t *testing.T, fsys *FS, p string) string {
	t.Helper()
	content, err := readString(t, fsys, p)
	if err != nil {
		t.Fatalf("ReadFile(%q): %v", p, err)
	}
	return content
}

func names(infos []provider.FileInfo) []string {
	out := []string{}
	for _, info := range infos {
		out = append(out, info.Name)
	}
	return out
}

func paths(infos []provider.FileInfo) []string {
	out := []string{}
	for _, info := range infos {
		out = append(out, info.Path)
	}
	return out
}

func hostNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, entry := range entries {
		out = append(out, entry.Name())
	}
	return out
}

func TestWriteReadRoundTrip(t *testing.T) {
	t.Parallel()
	fsys, _ := newFS(t)
	data := make([]byte, 10<<20)
	rand.Read(data)

	if err := fsys.WriteFile(t.Context(), "/workspace/blob.bin", bytes.NewReader(data), 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	rc, err := fsys.ReadFile(t.Context(), "/workspace/blob.bin")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	defer rc.Close()
	hash := sha256.New()
	n, err := io.Copy(hash, rc)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}

	if n != int64(len(data)) {
		t.Errorf("got %d bytes, want %d", n, len(data))
	}
	if got, want := hash.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Errorf("got sha256 %x, want %x", got, want)
	}
}

// TestModesIgnoreUmask changes the process umask, so it must not run in
// parallel with other tests.
func TestModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	fsys, root := newFS(t)
	special := fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

	tests := []struct {
		name string
		op   func(ctx context.Context, p string) error
		want fs.FileMode
	}{
		{"write 0600", func(ctx context.Context, p string) error {
			return fsys.WriteFile(ctx, p, strings.NewReader("x"), 0o600)
		}, 0o600},
		{"write 0755", func(ctx context.Context, p string) error {
			return fsys.WriteFile(ctx, p, strings.NewReader("x"), 0o755)
		}, 0o755},
		{"write 0 means 0644", func(ctx context.Context, p string) error {
			return fsys.WriteFile(ctx, p, strings.NewReader("x"), 0)
		}, 0o644},
		{"write octal setuid", func(ctx context.Context, p string) error {
			return fsys.WriteFile(ctx, p, strings.NewReader("x"), 0o4755)
		}, fs.ModeSetuid | 0o755},
		{"write FileMode setuid", func(ctx context.Context, p string) error {
			return fsys.WriteFile(ctx, p, strings.NewReader("x"), fs.ModeSetuid|0o750)
		}, fs.ModeSetuid | 0o750},
		{"mkdir 0750", func(ctx context.Context, p string) error {
			return fsys.Mkdir(ctx, p, 0o750)
		}, fs.ModeDir | 0o750},
		{"mkdir 0 means 0755", func(ctx context.Context, p string) error {
			return fsys.Mkdir(ctx, p, 0)
		}, fs.ModeDir | 0o755},
		{"mkdir sticky", func(ctx context.Context, p string) error {
			return fsys.Mkdir(ctx, p, 0o1777)
		}, fs.ModeDir | fs.ModeSticky | 0o777},
		{"chmod 0640", func(ctx context.Context, p string) error {
			if err := fsys.WriteFile(ctx, p, strings.NewReader("x"), 0o600); err != nil {
				return err
			}
			return fsys.Chmod(ctx, p, 0o640)
		}, 0o640},
		{"chmod 0777", func(ctx context.Context, p string) error {
			if err := fsys.WriteFile(ctx, p, strings.NewReader("x"), 0o600); err != nil {
				return err
			}
			return fsys.Chmod(ctx, p, 0o777)
		}, 0o777},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := "/modes/entry" + strconv.Itoa(i)
			if err := tt.op(t.Context(), p); err != nil {
				t.Fatalf("got error %v", err)
			}
			info, err := os.Lstat(hostPath(root, p))
			if err != nil {
				t.Fatal(err)
			}
			mode := info.Mode() & (special | fs.ModeType)
			if mode != tt.want {
				t.Errorf("got mode %v, want %v", mode, tt.want)
			}
		})
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	t.Parallel()
	fsys, _ := newFS(t)
	const size = 256 << 10
	const p = "/workspace/shared.bin"
	if err := fsys.WriteFile(t.Context(), p, bytes.NewReader(bytes.Repeat([]byte{'0'}, size)), 0); err != nil {
		t.Fatal(err)
	}

	var writers sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 100)
	for w := range 4 {
		writers.Go(func() {
			content := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range 15 {
				if err := fsys.WriteFile(t.Context(), p, bytes.NewReader(content), 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				data, err := readString(t, fsys, p)
				if err != nil {
					errs <- err
					return
				}
				if len(data) != size {
					errs <- fmt.Errorf("read a partial file: got %d bytes, want %d", len(data), size)
					return
				}
				if n := strings.Count(data, data[:1]); n != size {
					errs <- fmt.Errorf("read a mixed file: got %d bytes of %q, want all %d", n, data[:1], size)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	close(errs)

	for err := range errs {
		t.Error(err)
	}
	entries, err := fsys.ListDir(t.Context(), "/workspace")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(entries), []string{"shared.bin"}; !slices.Equal(got, want) {
		t.Errorf("got entries %q, want %q", got, want)
	}
}

func TestWriteFileCreatesParents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path string
	}{
		{"nested", "/a/b/c/d.txt"},
		{"space and non-ASCII", "/workspace/dir with space/ünïcødé 文件.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsys, root := newFS(t)
			mustWrite(t, fsys, tt.path, "hello")

			if got := mustRead(t, fsys, tt.path); got != "hello" {
				t.Errorf("got %q, want %q", got, "hello")
			}
			if _, err := os.Stat(hostPath(root, tt.path)); err != nil {
				t.Errorf("host file: %v", err)
			}
			parent, err := fsys.Stat(t.Context(), filepath.Dir(tt.path))
			if err != nil {
				t.Fatal(err)
			}
			if parent.Type != provider.TypeDir {
				t.Errorf("got parent type %q, want %q", parent.Type, provider.TypeDir)
			}
		})
	}
}

// failingReader returns some bytes and then an error.
type failingReader struct{ sent bool }

var errSource = errors.New("source failed")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.sent {
		return 0, errSource
	}
	r.sent = true
	return copy(p, "partial"), nil
}

func TestWriteFileFailureKeepsTarget(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		r    io.Reader
		want error
	}{
		{"reader error", t.Context(), &failingReader{}, errSource},
		{"canceled context", canceled, strings.NewReader("new content"), context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsys, _ := newFS(t)
			mustWrite(t, fsys, "/ws/target.txt", "old")

			err := fsys.WriteFile(tt.ctx, "/ws/target.txt", tt.r, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if got := mustRead(t, fsys, "/ws/target.txt"); got != "old" {
				t.Errorf("got content %q, want %q", got, "old")
			}
			entries, err := fsys.ListDir(t.Context(), "/ws")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := names(entries), []string{"target.txt"}; !slices.Equal(got, want) {
				t.Errorf("got entries %q, want %q (temporary file left behind)", got, want)
			}
		})
	}
}

func TestErrorSentinels(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWriteHost(t, hostPath(root, "/ws/file.txt"), "data", 0o644)
	mustWriteHost(t, hostPath(root, "/ws/full/child.txt"), "data", 0o644)
	if err := os.Mkdir(hostPath(root, "/ws/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "loop2", hostPath(root, "/ws/loop1"))
	mustSymlink(t, "loop1", hostPath(root, "/ws/loop2"))
	if err := syscall.Mkfifo(hostPath(root, "/ws/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	body := func() io.Reader { return strings.NewReader("x") }

	tests := []struct {
		name string
		call func() error
		path string // the path the error must name
		want error
	}{
		{"read missing", func() error { _, err := fsys.ReadFile(ctx, "/ws/missing"); return err }, "/ws/missing", provider.ErrPathNotFound},
		{"read directory", func() error { _, err := fsys.ReadFile(ctx, "/ws/full"); return err }, "/ws/full", provider.ErrIsDirectory},
		{"read FIFO", func() error { _, err := fsys.ReadFile(ctx, "/ws/fifo"); return err }, "/ws/fifo", provider.ErrInvalidArgument},
		{"read root", func() error { _, err := fsys.ReadFile(ctx, "/"); return err }, "/", provider.ErrIsDirectory},
		{"read relative path", func() error { _, err := fsys.ReadFile(ctx, "ws/file.txt"); return err }, "ws/file.txt", provider.ErrInvalidArgument},
		{"read empty path", func() error { _, err := fsys.ReadFile(ctx, ""); return err }, "", provider.ErrInvalidArgument},
		{"read unclean path", func() error { _, err := fsys.ReadFile(ctx, "/ws/../ws/file.txt"); return err }, "/ws/../ws/file.txt", provider.ErrInvalidArgument},
		{"read trailing slash", func() error { _, err := fsys.ReadFile(ctx, "/ws/file.txt/"); return err }, "/ws/file.txt/", provider.ErrInvalidArgument},
		{"read NUL byte", func() error { _, err := fsys.ReadFile(ctx, "/ws/a\x00b"); return err }, "/ws/a\x00b", provider.ErrInvalidArgument},
		{"read under file", func() error { _, err := fsys.ReadFile(ctx, "/ws/file.txt/x"); return err }, "/ws/file.txt/x", provider.ErrNotDirectory},
		{"read symlink loop", func() error { _, err := fsys.ReadFile(ctx, "/ws/loop1"); return err }, "/ws/loop1", provider.ErrInvalidArgument},
		{"write onto directory", func() error { return fsys.WriteFile(ctx, "/ws/full", body(), 0) }, "/ws/full", provider.ErrIsDirectory},
		{"write root", func() error { return fsys.WriteFile(ctx, "/", body(), 0) }, "/", provider.ErrIsDirectory},
		{"write under file", func() error { return fsys.WriteFile(ctx, "/ws/file.txt/x", body(), 0) }, "/ws/file.txt/x", provider.ErrNotDirectory},
		{"write relative path", func() error { return fsys.WriteFile(ctx, "x.txt", body(), 0) }, "x.txt", provider.ErrInvalidArgument},
		{"stat missing", func() error { _, err := fsys.Stat(ctx, "/ws/missing"); return err }, "/ws/missing", provider.ErrPathNotFound},
		{"stat under file", func() error { _, err := fsys.Stat(ctx, "/ws/file.txt/x"); return err }, "/ws/file.txt/x", provider.ErrNotDirectory},
		{"list file", func() error { _, err := fsys.ListDir(ctx, "/ws/file.txt"); return err }, "/ws/file.txt", provider.ErrNotDirectory},
		{"list missing", func() error { _, err := fsys.ListDir(ctx, "/ws/missing"); return err }, "/ws/missing", provider.ErrPathNotFound},
		{"mkdir over file", func() error { return fsys.Mkdir(ctx, "/ws/file.txt", 0) }, "/ws/file.txt", provider.ErrPathExists},
		{"mkdir under file", func() error { return fsys.Mkdir(ctx, "/ws/file.txt/sub", 0) }, "/ws/file.txt/sub", provider.ErrNotDirectory},
		{"remove missing", func() error { return fsys.Remove(ctx, "/ws/missing", false) }, "/ws/missing", provider.ErrPathNotFound},
		{"remove missing recursive", func() error { return fsys.Remove(ctx, "/ws/missing", true) }, "/ws/missing", provider.ErrPathNotFound},
		{"remove non-empty directory", func() error { return fsys.Remove(ctx, "/ws/full", false) }, "/ws/full", provider.ErrDirectoryNotEmpty},
		{"remove root", func() error { return fsys.Remove(ctx, "/", false) }, "/", provider.ErrInvalidArgument},
		{"remove root recursive", func() error { return fsys.Remove(ctx, "/", true) }, "/", provider.ErrInvalidArgument},
		{"move missing", func() error { return fsys.Move(ctx, "/ws/missing", "/ws/other") }, "/ws/missing", provider.ErrPathNotFound},
		{"move root", func() error { return fsys.Move(ctx, "/", "/ws/root") }, "/", provider.ErrInvalidArgument},
		{"move onto root", func() error { return fsys.Move(ctx, "/ws/file.txt", "/") }, "/ws/file.txt", provider.ErrInvalidArgument},
		{"move directory into itself", func() error { return fsys.Move(ctx, "/ws/full", "/ws/full/inner") }, "/ws/full", provider.ErrInvalidArgument},
		{"move directory onto directory", func() error { return fsys.Move(ctx, "/ws/full", "/ws/empty") }, "/ws/full", provider.ErrPathExists},
		{"move file onto directory", func() error { return fsys.Move(ctx, "/ws/file.txt", "/ws/empty") }, "/ws/file.txt", provider.ErrPathExists},
		{"chmod missing", func() error { return fsys.Chmod(ctx, "/ws/missing", 0o644) }, "/ws/missing", provider.ErrPathNotFound},
		{"glob bad pattern", func() error { _, err := fsys.Glob(ctx, "/ws/[a"); return err }, "/ws/[a", provider.ErrInvalidArgument},
		{"glob relative pattern", func() error { _, err := fsys.Glob(ctx, "*.txt"); return err }, "*.txt", provider.ErrInvalidArgument},
		{"archive of file", func() error { _, err := fsys.ReadArchive(ctx, "/ws/file.txt"); return err }, "/ws/file.txt", provider.ErrNotDirectory},
		{"archive of missing", func() error { _, err := fsys.ReadArchive(ctx, "/ws/missing"); return err }, "/ws/missing", provider.ErrPathNotFound},
		{"extract onto file", func() error { return fsys.WriteArchive(ctx, "/ws/file.txt", emptyTar(t)) }, "/ws/file.txt", provider.ErrNotDirectory},
		{"extract malformed archive", func() error { return fsys.WriteArchive(ctx, "/ws/out", strings.NewReader("not a tar archive")) }, "/ws/out", provider.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			var pathErr *provider.PathError
			if !errors.As(err, &pathErr) {
				t.Fatalf("got error type %T, want *provider.PathError", err)
			}
			if pathErr.Path != tt.path {
				t.Errorf("got error path %q, want %q", pathErr.Path, tt.path)
			}
		})
	}
}

func TestErrorKeepsCause(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWriteHost(t, hostPath(root, "/ws/full/child.txt"), "data", 0o644)

	err := fsys.Remove(t.Context(), "/ws/full", false)
	if !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("remove: got %v, want it to match ENOTEMPTY", err)
	}
	_, err = fsys.ReadFile(t.Context(), "/ws/missing")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read: got %v, want it to match fs.ErrNotExist", err)
	}
	if strings.Contains(err.Error(), root) {
		t.Errorf("got message %q, which reveals the host root %q", err, root)
	}
}

func TestStat(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWriteHost(t, hostPath(root, "/ws/file.txt"), "12345", 0o640)
	mustSymlink(t, "file.txt", hostPath(root, "/ws/link"))
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(hostPath(root, "/ws/file.txt"), mtime, mtime); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		path   string
		want   provider.FileInfo
		noSize bool // directory sizes depend on the file system
	}{
		{"/ws/file.txt", provider.FileInfo{Name: "file.txt", Path: "/ws/file.txt", Size: 5, Mode: 0o640, Type: provider.TypeFile, ModTime: mtime}, false},
		{"/ws/link", provider.FileInfo{Name: "link", Path: "/ws/link", Type: provider.TypeSymlink, LinkTarget: "file.txt"}, true},
		{"/ws", provider.FileInfo{Name: "ws", Path: "/ws", Type: provider.TypeDir}, true},
		{"/", provider.FileInfo{Name: "/", Path: "/", Type: provider.TypeDir}, true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := fsys.Stat(t.Context(), tt.path)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if got.Name != tt.want.Name || got.Path != tt.want.Path || got.Type != tt.want.Type || got.LinkTarget != tt.want.LinkTarget {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if tt.noSize {
				return
			}
			if got.Size != tt.want.Size || got.Mode != tt.want.Mode || !got.ModTime.Equal(tt.want.ModTime) {
				t.Errorf("got size %d mode %v time %v, want %d %v %v", got.Size, got.Mode, got.ModTime, tt.want.Size, tt.want.Mode, tt.want.ModTime)
			}
		})
	}
}

func TestListDir(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWriteHost(t, hostPath(root, "/ws/b.txt"), "b", 0o644)
	mustWriteHost(t, hostPath(root, "/ws/a.txt"), "a", 0o644)
	mustWriteHost(t, hostPath(root, "/ws/c/inner.txt"), "c", 0o644)
	mustSymlink(t, "a.txt", hostPath(root, "/ws/link"))

	entries, err := fsys.ListDir(t.Context(), "/ws")
	if err != nil {
		t.Fatal(err)
	}

	if got, want := paths(entries), []string{"/ws/a.txt", "/ws/b.txt", "/ws/c", "/ws/link"}; !slices.Equal(got, want) {
		t.Fatalf("got paths %q, want %q", got, want)
	}
	wantTypes := []provider.FileType{provider.TypeFile, provider.TypeFile, provider.TypeDir, provider.TypeSymlink}
	for i, entry := range entries {
		if entry.Type != wantTypes[i] {
			t.Errorf("%s: got type %q, want %q", entry.Path, entry.Type, wantTypes[i])
		}
	}
	if entries[3].LinkTarget != "a.txt" {
		t.Errorf("got link target %q, want %q", entries[3].LinkTarget, "a.txt")
	}

}

func TestMkdir(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)

	if err := fsys.Mkdir(t.Context(), "/a/b/c", 0o700); err != nil {
		t.Fatalf("Mkdir nested: %v", err)
	}
	info, err := os.Stat(hostPath(root, "/a/b/c"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("got mode %v, want 0700", info.Mode().Perm())
	}

	if err := fsys.Mkdir(t.Context(), "/a/b/c", 0o755); err != nil {
		t.Errorf("Mkdir existing: got %v, want nil", err)
	}
	info, err = os.Stat(hostPath(root, "/a/b/c"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("existing directory: got mode %v, want it unchanged at 0700", info.Mode().Perm())
	}
	if err := fsys.Mkdir(t.Context(), "/", 0); err != nil {
		t.Errorf("Mkdir root: got %v, want nil", err)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWriteHost(t, hostPath(root, "/ws/file.txt"), "x", 0o644)
	mustWriteHost(t, hostPath(root, "/ws/target.txt"), "x", 0o644)
	mustSymlink(t, "target.txt", hostPath(root, "/ws/link"))
	mustWriteHost(t, hostPath(root, "/ws/tree/a/b/c.txt"), "x", 0o644)
	if err := os.Mkdir(hostPath(root, "/ws/empty"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		path      string
		recursive bool
	}{
		{"file", "/ws/file.txt", false},
		{"symlink", "/ws/link", false},
		{"empty directory", "/ws/empty", false},
		{"tree", "/ws/tree", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := fsys.Remove(t.Context(), tt.path, tt.recursive); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if _, err := os.Lstat(hostPath(root, tt.path)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("got %v after Remove, want not exist", err)
			}
		})
	}
	if _, err := os.Stat(hostPath(root, "/ws/target.txt")); err != nil {
		t.Errorf("symlink target: got %v, want it kept", err)
	}
}

func TestMove(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWrite(t, fsys, "/ws/a.txt", "a")
	mustWrite(t, fsys, "/ws/b.txt", "b")
	mustSymlink(t, "b.txt", hostPath(root, "/ws/link"))

	if err := fsys.Move(t.Context(), "/ws/a.txt", "/ws/b.txt"); err != nil {
		t.Fatalf("Move over file: %v", err)
	}
	if got := mustRead(t, fsys, "/ws/b.txt"); got != "a" {
		t.Errorf("replaced file: got %q, want %q", got, "a")
	}
	if _, err := fsys.Stat(t.Context(), "/ws/a.txt"); !errors.Is(err, provider.ErrPathNotFound) {
		t.Errorf("old path: got %v, want ErrPathNotFound", err)
	}

	if err := fsys.Move(t.Context(), "/ws/b.txt", "/new/parents/c.txt"); err != nil {
		t.Fatalf("Move to new parents: %v", err)
	}
	if got := mustRead(t, fsys, "/new/parents/c.txt"); got != "a" {
		t.Errorf("moved file: got %q, want %q", got, "a")
	}

	if err := fsys.Move(t.Context(), "/ws/link", "/ws/moved-link"); err != nil {
		t.Fatalf("Move symlink: %v", err)
	}
	info, err := fsys.Stat(t.Context(), "/ws/moved-link")
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != provider.TypeSymlink || info.LinkTarget != "b.txt" {
		t.Errorf("got %s to %q, want a symlink to %q", info.Type, info.LinkTarget, "b.txt")
	}
}

func TestSymlinksInsideRoot(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWriteHost(t, hostPath(root, "/ws/real.txt"), "real content", 0o644)
	mustWriteHost(t, hostPath(root, "/ws/dir/inner.txt"), "inner", 0o644)
	mustSymlink(t, "/ws/real.txt", hostPath(root, "/ws/abs"))
	mustSymlink(t, "real.txt", hostPath(root, "/ws/rel"))
	mustSymlink(t, "../ws/real.txt", hostPath(root, "/other/up"))
	mustSymlink(t, "/ws/rel", hostPath(root, "/ws/chain"))
	mustSymlink(t, "/ws/dir", hostPath(root, "/ws/absdir"))
	mustSymlink(t, "dir", hostPath(root, "/ws/reldir"))

	reads := []struct {
		path string
		want string
	}{
		{"/ws/abs", "real content"},
		{"/ws/rel", "real content"},
		{"/other/up", "real content"},
		{"/ws/chain", "real content"},
		{"/ws/absdir/inner.txt", "inner"},
		{"/ws/reldir/inner.txt", "inner"},
	}
	for _, tt := range reads {
		t.Run("read "+tt.path, func(t *testing.T) {
			if got := mustRead(t, fsys, tt.path); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("write through absolute link", func(t *testing.T) {
		mustWrite(t, fsys, "/ws/abs", "rewritten")
		if got := mustRead(t, fsys, "/ws/real.txt"); got != "rewritten" {
			t.Errorf("target: got %q, want %q", got, "rewritten")
		}
		info, err := fsys.Stat(t.Context(), "/ws/abs")
		if err != nil {
			t.Fatal(err)
		}
		if info.Type != provider.TypeSymlink {
			t.Errorf("link: got type %q, want it kept as %q", info.Type, provider.TypeSymlink)
		}
	})

	t.Run("list through directory link", func(t *testing.T) {
		entries, err := fsys.ListDir(t.Context(), "/ws/absdir")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := paths(entries), []string{"/ws/absdir/inner.txt"}; !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestSymlinkEscapes(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	hostDir := t.TempDir()
	hostFile := filepath.Join(hostDir, "secret.txt")
	mustWriteHost(t, hostFile, "host secret", 0o600)
	hostInfo, err := os.Stat(hostFile)
	if err != nil {
		t.Fatal(err)
	}

	mustWriteHost(t, hostPath(root, "/ws/mine.txt"), "mine", 0o644)
	mustSymlink(t, "/", hostPath(root, "/ws/toroot"))
	mustSymlink(t, hostFile, hostPath(root, "/ws/tohost"))
	mustSymlink(t, hostDir, hostPath(root, "/ws/tohostdir"))
	mustSymlink(t, "../../..", hostPath(root, "/ws/up"))
	sandboxRoot, err := fsys.ListDir(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	t.Run("read host file link", func(t *testing.T) {
		content, err := readString(t, fsys, "/ws/tohost")
		if !errors.Is(err, provider.ErrPathNotFound) {
			t.Errorf("got %q, %v, want ErrPathNotFound", content, err)
		}
	})
	t.Run("read through host directory link", func(t *testing.T) {
		content, err := readString(t, fsys, "/ws/tohostdir/secret.txt")
		if !errors.Is(err, provider.ErrPathNotFound) {
			t.Errorf("got %q, %v, want ErrPathNotFound", content, err)
		}
	})
	t.Run("read through parent link", func(t *testing.T) {
		content, err := readString(t, fsys, filepath.ToSlash(filepath.Join("/ws/up", hostFile)))
		if !errors.Is(err, provider.ErrPathNotFound) {
			t.Errorf("got %q, %v, want ErrPathNotFound", content, err)
		}
	})
	t.Run("read own file through root link", func(t *testing.T) {
		if got := mustRead(t, fsys, "/ws/toroot/ws/mine.txt"); got != "mine" {
			t.Errorf("got %q, want %q", got, "mine")
		}
	})
	for _, link := range []string{"/ws/toroot", "/ws/up"} {
		t.Run("list "+link, func(t *testing.T) {
			entries, err := fsys.ListDir(ctx, link)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := names(entries), names(sandboxRoot); !slices.Equal(got, want) {
				t.Errorf("got %q, want the sandbox root %q", got, want)
			}
		})
	}
	t.Run("stat links", func(t *testing.T) {
		for link, target := range map[string]string{"/ws/toroot": "/", "/ws/tohost": hostFile, "/ws/up": "../../.."} {
			info, err := fsys.Stat(ctx, link)
			if err != nil {
				t.Fatal(err)
			}
			if info.Type != provider.TypeSymlink || info.LinkTarget != target {
				t.Errorf("%s: got %s to %q, want a symlink to %q", link, info.Type, info.LinkTarget, target)
			}
		}
	})
	t.Run("glob through host directory link", func(t *testing.T) {
		matches, err := fsys.Glob(ctx, "/ws/tohostdir/*")
		if err != nil {
			t.Fatal(err)
		}
		if len(matches) != 0 {
			t.Errorf("got %q, want no matches", paths(matches))
		}
	})
	t.Run("chmod host file link", func(t *testing.T) {
		if err := fsys.Chmod(ctx, "/ws/tohost", 0o666); !errors.Is(err, provider.ErrPathNotFound) {
			t.Errorf("got %v, want ErrPathNotFound", err)
		}
	})
	t.Run("write host file link", func(t *testing.T) {
		mustWrite(t, fsys, "/ws/tohost", "written")
		if got, err := os.ReadFile(hostPath(root, hostFile)); err != nil || string(got) != "written" {
			t.Errorf("sandbox copy of the host path: got %q, %v, want %q", got, err, "written")
		}
		if got := mustRead(t, fsys, "/ws/tohost"); got != "written" {
			t.Errorf("read back: got %q, want %q", got, "written")
		}
	})
	t.Run("write through host directory link", func(t *testing.T) {
		mustWrite(t, fsys, "/ws/tohostdir/new.txt", "new")
		if err := fsys.Mkdir(ctx, "/ws/tohostdir/newdir", 0); err != nil {
			t.Fatal(err)
		}
		if err := fsys.WriteArchive(ctx, "/ws/tohostdir/extracted", buildTar(t, []tarEntry{{name: "x.txt", body: "x"}})); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(hostPath(root, filepath.Join(hostDir, "new.txt"))); err != nil {
			t.Errorf("sandbox copy of the host directory: %v", err)
		}
	})
	t.Run("archive root link", func(t *testing.T) {
		rc, err := fsys.ReadArchive(ctx, "/ws/toroot")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		entries := tarNames(t, rc)
		if !slices.Contains(entries, "ws/mine.txt") {
			t.Errorf("got entries %q, want them to include ws/mine.txt", entries)
		}
	})
	t.Run("remove host file link", func(t *testing.T) {
		if err := fsys.Remove(ctx, "/ws/tohost", false); err != nil {
			t.Fatal(err)
		}
	})

	got, err := os.ReadFile(hostFile)
	if err != nil || string(got) != "host secret" {
		t.Errorf("host file: got %q, %v, want it unchanged", got, err)
	}
	info, err := os.Stat(hostFile)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != hostInfo.Mode() || !info.ModTime().Equal(hostInfo.ModTime()) {
		t.Errorf("host file: got mode %v time %v, want %v %v", info.Mode(), info.ModTime(), hostInfo.Mode(), hostInfo.ModTime())
	}
	if got, want := hostNames(t, hostDir), []string{"secret.txt"}; !slices.Equal(got, want) {
		t.Errorf("host directory: got %q, want %q", got, want)
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	for _, p := range []string{"/g/a.txt", "/g/b.log", "/g/sub/c.txt", "/g/sub/deep/d.txt", "/g/sub/deep/e.md", "/g/other/f.txt"} {
		mustWriteHost(t, hostPath(root, p), "x", 0o644)
	}
	mustSymlink(t, "/g", hostPath(root, "/g/loop"))
	mustSymlink(t, "sub", hostPath(root, "/g/linkdir"))

	tests := []struct {
		name    string
		pattern string
		want    []string
	}{
		{"star in last element", "/g/*.txt", []string{"/g/a.txt"}},
		{"double star at start", "/**/d.txt", []string{"/g/sub/deep/d.txt"}},
		{"double star in middle", "/g/**/*.txt", []string{"/g/a.txt", "/g/other/f.txt", "/g/sub/c.txt", "/g/sub/deep/d.txt"}},
		{"double star at end", "/g/sub/**", []string{"/g/sub", "/g/sub/c.txt", "/g/sub/deep", "/g/sub/deep/d.txt", "/g/sub/deep/e.md"}},
		{"repeated double star", "/g/**/**/d.txt", []string{"/g/sub/deep/d.txt"}},
		{"question mark", "/g/s?b/*.txt", []string{"/g/sub/c.txt"}},
		{"symlinks listed as entries", "/g/l*", []string{"/g/linkdir", "/g/loop"}},
		{"symlinked directory not walked", "/g/**/c.txt", []string{"/g/sub/c.txt"}},
		{"literal path", "/g/a.txt", []string{"/g/a.txt"}},
		{"literal symlink prefix followed", "/g/linkdir/*.txt", []string{"/g/linkdir/c.txt"}},
		{"root", "/", []string{"/"}},
		{"no match", "/g/*.none", []string{}},
		{"missing prefix", "/nothere/**", []string{}},
		{"prefix is a file", "/g/a.txt/*", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			matches, err := fsys.Glob(t.Context(), tt.pattern)
			if err != nil {
				t.Fatalf("Glob(%q): %v", tt.pattern, err)
			}
			if matches == nil {
				t.Errorf("got nil, want a non-nil slice")
			}
			if got := paths(matches); !slices.Equal(got, tt.want) {
				t.Errorf("Glob(%q): got %q, want %q", tt.pattern, got, tt.want)
			}
		})
	}
}

// tarEntry describes one entry of a test archive. The zero typeflag means
// a regular file.
type tarEntry struct {
	name     string
	typeflag byte
	body     string
	linkname string
	mode     int64
}

func buildTar(t *testing.T, entries []tarEntry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typeflag, Linkname: e.linkname, Mode: e.mode, ModTime: time.Now()}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.body))
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func emptyTar(t *testing.T) io.Reader { return buildTar(t, nil) }

func tarNames(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading archive: %v", err)
		}
		out = append(out, hdr.Name)
	}
}

// treeEntry is what the round trip compares for each host file.
type treeEntry struct {
	mode    fs.FileMode
	modTime time.Time
	sum     [32]byte
	link    string
}

func snapshot(t *testing.T, dir string) map[string]treeEntry {
	t.Helper()
	tree := map[string]treeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		entry := treeEntry{mode: info.Mode()}
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			entry.sum = sha256.Sum256(data)
			entry.modTime = info.ModTime()
		case info.IsDir():
			entry.modTime = info.ModTime()
		case info.Mode()&fs.ModeSymlink != 0:
			if entry.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		tree[filepath.ToSlash(rel)] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestArchiveRoundTrip(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	src := hostPath(root, "/src")
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	mustWriteHost(t, filepath.Join(src, "private.txt"), "private", 0o600)
	mustWriteHost(t, filepath.Join(src, "run.sh"), "#!/bin/sh\n", 0o755)
	mustWriteHost(t, filepath.Join(src, "nested/deeper/blob.bin"), string(blob), 0o644)
	mustWriteHost(t, filepath.Join(src, "nested/ünïcødé 文件.txt"), "text", 0o644)
	if err := os.Mkdir(filepath.Join(src, "locked"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "readonly"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWriteHost(t, filepath.Join(src, "readonly/inside.txt"), "inside", 0o444)
	mustSymlink(t, "private.txt", filepath.Join(src, "rel-link"))
	mustSymlink(t, "/src/run.sh", filepath.Join(src, "abs-link"))
	mustSymlink(t, "missing", filepath.Join(src, "dangling"))
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	stamp := time.Date(2023, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	for _, p := range []string{"private.txt", "nested/deeper/blob.bin", "nested/deeper", "nested", "locked", "readonly/inside.txt"} {
		if err := os.Chtimes(filepath.Join(src, p), stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	// Made read-only last, so that the extraction must fill it first.
	if err := os.Chmod(filepath.Join(src, "readonly"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "readonly"), 0o755) })

	rc, err := fsys.ReadArchive(t.Context(), "/src")
	if err != nil {
		t.Fatalf("ReadArchive: %v", err)
	}
	var archive bytes.Buffer
	if _, err := io.Copy(&archive, rc); err != nil {
		t.Fatalf("reading archive: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	t.Run("entry names", func(t *testing.T) {
		got := tarNames(t, bytes.NewReader(archive.Bytes()))
		want := []string{"abs-link", "dangling", "locked/", "nested/", "nested/deeper/", "nested/deeper/blob.bin",
			"nested/ünïcødé 文件.txt", "private.txt", "readonly/", "readonly/inside.txt", "rel-link", "run.sh"}
		if !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("extracted tree", func(t *testing.T) {
		if err := fsys.WriteArchive(t.Context(), "/dst/copy", bytes.NewReader(archive.Bytes())); err != nil {
			t.Fatalf("WriteArchive: %v", err)
		}
		dst := hostPath(root, "/dst/copy")
		t.Cleanup(func() { os.Chmod(filepath.Join(dst, "readonly"), 0o755) })
		want, got := snapshot(t, src), snapshot(t, dst)
		delete(want, "fifo")
		for name, w := range want {
			g, ok := got[name]
			switch {
			case !ok:
				t.Errorf("%s: missing after extraction", name)
			case g.mode != w.mode:
				t.Errorf("%s: got mode %v, want %v", name, g.mode, w.mode)
			case g.sum != w.sum:
				t.Errorf("%s: got sha256 %x, want %x", name, g.sum, w.sum)
			case g.link != w.link:
				t.Errorf("%s: got link target %q, want %q", name, g.link, w.link)
			case !g.modTime.Equal(w.modTime):
				t.Errorf("%s: got modification time %v, want %v", name, g.modTime, w.modTime)
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("%s: extracted but not in the source", name)
			}
		}
	})
}

func TestWriteArchiveContainsEntries(t *testing.T) {
	t.Parallel()
	hostDir := t.TempDir()
	hostFile := filepath.Join(hostDir, "secret.txt")
	mustWriteHost(t, hostFile, "host secret", 0o600)

	tests := []struct {
		name    string
		entries []tarEntry
		want    error  // nil when the archive must extract
		inside  string // a sandbox path that must then exist
	}{
		{"parent element", []tarEntry{{name: "../evil", body: "x"}}, provider.ErrPathEscapes, ""},
		{"dot then parent", []tarEntry{{name: "./a/../../evil", body: "x"}}, provider.ErrPathEscapes, ""},
		{"absolute name kept inside", []tarEntry{{name: "/abs/evil", body: "x"}}, nil, "/ws/dest/abs/evil"},
		{"symlink to parent then write through it", []tarEntry{
			{name: "link", typeflag: tar.TypeSymlink, linkname: "../../.."},
			{name: "link/evil", body: "x"},
		}, provider.ErrPathEscapes, ""},
		{"symlink to host directory then write through it", []tarEntry{
			{name: "link", typeflag: tar.TypeSymlink, linkname: hostDir},
			{name: "link/evil", body: "x"},
		}, provider.ErrPathEscapes, ""},
		{"symlink to root then write through it", []tarEntry{
			{name: "link", typeflag: tar.TypeSymlink, linkname: "/"},
			{name: "link/evil", body: "x"},
		}, provider.ErrPathEscapes, ""},
		{"symlink to host file then replaced by a file", []tarEntry{
			{name: "link", typeflag: tar.TypeSymlink, linkname: hostFile},
			{name: "link", body: "replacement"},
		}, nil, "/ws/dest/link"},
		{"hard link outside", []tarEntry{{name: "hard", typeflag: tar.TypeLink, linkname: "../outside.txt"}}, provider.ErrPathEscapes, ""},
		{"hard link inside", []tarEntry{
			{name: "orig.txt", body: "orig"},
			{name: "hard", typeflag: tar.TypeLink, linkname: "orig.txt"},
		}, nil, "/ws/dest/hard"},
		{"device and fifo skipped", []tarEntry{
			{name: "null", typeflag: tar.TypeChar},
			{name: "fifo", typeflag: tar.TypeFifo},
			{name: "after.txt", body: "x"},
		}, nil, "/ws/dest/after.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fsys, root := newFS(t)
			mustWriteHost(t, hostPath(root, "/ws/outside.txt"), "outside", 0o644)

			err := fsys.WriteArchive(t.Context(), "/ws/dest", buildTar(t, tt.entries))
			if tt.want == nil && err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if tt.inside != "" {
				if _, err := os.Lstat(hostPath(root, tt.inside)); err != nil {
					t.Errorf("%s: %v", tt.inside, err)
				}
			}
			for _, p := range []string{"/ws/evil", "/evil", "/ws/dest/null", "/ws/dest/fifo"} {
				if _, err := os.Lstat(hostPath(root, p)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: got %v, want not exist", p, err)
				}
			}
			if got, err := os.ReadFile(hostFile); err != nil || string(got) != "host secret" {
				t.Errorf("host file: got %q, %v, want it unchanged", got, err)
			}
			if got, want := hostNames(t, hostDir), []string{"secret.txt"}; !slices.Equal(got, want) {
				t.Errorf("host directory: got %q, want %q", got, want)
			}
		})
	}
}

// TestReadArchiveCloseStopsWriter counts goroutines, so it must not run in
// parallel with other tests.
func TestReadArchiveCloseStopsWriter(t *testing.T) {
	fsys, root := newFS(t)
	big := make([]byte, 4<<20)
	for i := range 4 {
		mustWriteHost(t, hostPath(root, fmt.Sprintf("/big/file%d.bin", i)), string(big), 0o644)
	}
	before := runtime.NumGoroutine()

	for range 5 {
		rc, err := fsys.ReadArchive(t.Context(), "/big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 4096)); err != nil {
			t.Fatalf("reading: %v", err)
		}
		closed := make(chan error, 1)
		go func() { closed <- rc.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return within 5s")
		}
	}

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Errorf("got %d goroutines after Close, want at most %d", got, before)
	}
}

func TestReadArchiveStopsOnCancel(t *testing.T) {
	t.Parallel()
	fsys, root := newFS(t)
	mustWriteHost(t, hostPath(root, "/big/file.bin"), string(make([]byte, 4<<20)), 0o644)
	ctx, cancel := context.WithCancel(t.Context())

	rc, err := fsys.ReadArchive(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 4096)); err != nil {
		t.Fatalf("reading: %v", err)
	}
	cancel()

	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// TestImportBudget keeps the package small enough for the in-sandbox agent:
// it may import only the standard library and the provider contract.
func TestImportBudget(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range file.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			first, _, _ := strings.Cut(imp, "/")
			if strings.Contains(first, ".") && imp != "github.com/stacyvm/stacyvm/internal/provider" {
				t.Errorf("%s imports %s, want only the standard library and internal/provider", name, imp)
			}
		}
	}
}
