package conformance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

var fileCases = []testCase{
	{"large_binary_round_trip", testLargeBinaryRoundTrip},
	{"write_applies_mode", testWriteAppliesMode},
	{"write_replaces", testWriteReplaces},
	{"write_creates_parents", testWriteCreatesParents},
	{"stat", testStat},
	{"stat_symlink", testStatSymlink},
	{"list_dir", testListDir},
	{"list_dir_of_file", testListDirOfFile},
	{"glob", testGlob},
	{"mkdir_parents", testMkdirParents},
	{"move", testMove},
	{"chmod", testChmod},
	{"remove", testRemove},
	{"unusual_names", testUnusualNames},
	{"missing_paths", testMissingPaths},
	{"read_directory", testReadDirectory},
}

func testLargeBinaryRoundTrip(t *testing.T, s *suite) {
	id := s.spawn(t)
	data := randomBytes(10 << 20)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	path := Workspace + "/big.bin"

	s.writeFile(t, id, path, data, 0o644)
	got := s.readFile(t, id, path)
	if gotSum := sha256.Sum256(got); !bytes.Equal(gotSum[:], sum[:]) {
		t.Errorf("read back %d bytes with sha256 %x, want %d bytes with sha256 %s", len(got), gotSum, len(data), want)
	}
	if info := s.stat(t, id, path); info.Size != int64(len(data)) {
		t.Errorf("Stat.Size = %d, want %d", info.Size, len(data))
	}

	out := s.mustShell(t, id, "sha256sum big.bin")
	if execSum, _, _ := strings.Cut(out.Stdout(), " "); execSum != want {
		t.Errorf("sha256sum inside the sandbox = %q, want %q", execSum, want)
	}
}

// randomBytes returns n bytes from a fixed seed, so failures repeat.
func randomBytes(n int) []byte {
	rng := rand.NewChaCha8([32]byte{'c', 'o', 'n', 'f', 'o', 'r', 'm'})
	b := make([]byte, n)
	_, _ = rng.Read(b)
	return b
}

func testWriteAppliesMode(t *testing.T, s *suite) {
	id := s.spawn(t)
	for _, mode := range []fs.FileMode{0o600, 0o640, 0o755} {
		path := fmt.Sprintf("%s/mode-%o", Workspace, mode)
		s.writeFile(t, id, path, []byte("#!/bin/sh\necho ran\n"), mode)
		if got := s.stat(t, id, path).Mode.Perm(); got != mode {
			t.Errorf("Stat(%s).Mode.Perm() = %v, want %v", path, got, mode)
		}
	}

	out := s.mustShell(t, id, "./mode-755")
	if got := out.Stdout(); got != "ran\n" {
		t.Errorf("running the 0755 file printed %q, want %q", got, "ran\n")
	}
}

func testWriteReplaces(t *testing.T, s *suite) {
	id := s.spawn(t)
	path := Workspace + "/replaced.txt"
	s.writeFile(t, id, path, []byte("the first, longer content"), 0o644)
	s.writeFile(t, id, path, []byte("second"), 0o600)

	if got := string(s.readFile(t, id, path)); got != "second" {
		t.Errorf("content = %q, want %q", got, "second")
	}
	if got := s.stat(t, id, path).Mode.Perm(); got != 0o600 {
		t.Errorf("mode = %v, want the new file's %v", got, fs.FileMode(0o600))
	}
}

func testWriteCreatesParents(t *testing.T, s *suite) {
	id := s.spawn(t)
	path := Workspace + "/a/b/c/file.txt"
	s.writeFile(t, id, path, []byte("deep"), 0o644)
	if got := string(s.readFile(t, id, path)); got != "deep" {
		t.Errorf("content = %q, want %q", got, "deep")
	}
	if info := s.stat(t, id, Workspace+"/a/b"); info.Type != provider.TypeDir {
		t.Errorf("Stat(a/b).Type = %q, want %q", info.Type, provider.TypeDir)
	}
}

func testStat(t *testing.T, s *suite) {
	id := s.spawn(t)
	before := time.Now().Add(-time.Minute)
	path := Workspace + "/stat.txt"
	s.writeFile(t, id, path, []byte("12345"), 0o644)

	info := s.stat(t, id, path)
	if info.Name != "stat.txt" {
		t.Errorf("Name = %q, want %q", info.Name, "stat.txt")
	}
	if info.Path != path {
		t.Errorf("Path = %q, want %q", info.Path, path)
	}
	if info.Size != 5 {
		t.Errorf("Size = %d, want 5", info.Size)
	}
	if info.Type != provider.TypeFile || !info.Mode.IsRegular() {
		t.Errorf("Type = %q, Mode = %v, want a regular file", info.Type, info.Mode)
	}
	if info.ModTime.Before(before) || info.ModTime.After(time.Now().Add(time.Minute)) {
		t.Errorf("ModTime = %v, want about now", info.ModTime)
	}

	dir := s.stat(t, id, Workspace)
	if dir.Type != provider.TypeDir || !dir.Mode.IsDir() || !dir.IsDir() {
		t.Errorf("Stat(%s): Type = %q, Mode = %v, want a directory", Workspace, dir.Type, dir.Mode)
	}
}

func testStatSymlink(t *testing.T, s *suite) {
	id := s.spawn(t)
	s.writeFile(t, id, Workspace+"/target.txt", []byte("target"), 0o644)
	s.mustShell(t, id, "ln -s target.txt link")

	info := s.stat(t, id, Workspace+"/link")
	if info.Type != provider.TypeSymlink || info.Mode&fs.ModeSymlink == 0 {
		t.Errorf("Type = %q, Mode = %v, want a symlink (Stat must not follow it)", info.Type, info.Mode)
	}
	if info.LinkTarget != "target.txt" {
		t.Errorf("LinkTarget = %q, want %q", info.LinkTarget, "target.txt")
	}
}

func testListDir(t *testing.T, s *suite) {
	id := s.spawn(t)
	dir := Workspace + "/list"
	s.writeFile(t, id, dir+"/b.txt", []byte("bb"), 0o644)
	s.writeFile(t, id, dir+"/a.txt", []byte("a"), 0o644)
	s.writeFile(t, id, dir+"/sub/inner.txt", []byte("inner"), 0o644)
	s.mustShell(t, id, "ln -s a.txt list/link")

	entries, err := s.p.ListDir(s.ctx(t), id, dir)
	if err != nil {
		t.Fatalf("ListDir: %v", err)
	}
	type entry struct {
		name  string
		path  string
		typ   provider.FileType
		bytes int64
	}
	var got []entry
	for _, e := range entries {
		size := e.Size
		if e.Type != provider.TypeFile {
			size = -1 // directory and link sizes vary by file system
		}
		got = append(got, entry{e.Name, e.Path, e.Type, size})
	}
	want := []entry{
		{"a.txt", dir + "/a.txt", provider.TypeFile, 1},
		{"b.txt", dir + "/b.txt", provider.TypeFile, 2},
		{"link", dir + "/link", provider.TypeSymlink, -1},
		{"sub", dir + "/sub", provider.TypeDir, -1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListDir = %+v, want %+v", got, want)
	}

	empty := Workspace + "/empty"
	if err := s.p.Mkdir(s.ctx(t), id, empty, 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	entries, err = s.p.ListDir(s.ctx(t), id, empty)
	if err != nil || len(entries) != 0 {
		t.Errorf("ListDir(empty dir) = %v, %v; want no entries and no error", entries, err)
	}
}

func testListDirOfFile(t *testing.T, s *suite) {
	id := s.spawn(t)
	path := Workspace + "/plain.txt"
	s.writeFile(t, id, path, []byte("x"), 0o644)
	_, err := s.p.ListDir(s.ctx(t), id, path)
	assertErrorIs(t, "ListDir(file)", err, provider.ErrNotDirectory)
}

func testGlob(t *testing.T, s *suite) {
	id := s.spawn(t)
	root := Workspace + "/g"
	for _, name := range []string{"a.txt", "x/b.txt", "x/y/c.txt", "x/y/d.md", "z.md"} {
		s.writeFile(t, id, root+"/"+name, []byte(name), 0o644)
	}

	tests := []struct {
		pattern string
		want    []string
	}{
		{root + "/**/*.txt", []string{root + "/a.txt", root + "/x/b.txt", root + "/x/y/c.txt"}},
		{root + "/*.md", []string{root + "/z.md"}},
		{root + "/x/*", []string{root + "/x/b.txt", root + "/x/y"}},
		{root + "/**/*.go", nil},
	}
	for _, tt := range tests {
		matches, err := s.p.Glob(s.ctx(t), id, tt.pattern)
		if err != nil {
			t.Errorf("Glob(%s): %v", tt.pattern, err)
			continue
		}
		var got []string
		for _, m := range matches {
			got = append(got, m.Path)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Glob(%s) = %q, want %q", tt.pattern, got, tt.want)
		}
	}
}

func testMkdirParents(t *testing.T, s *suite) {
	id := s.spawn(t)
	path := Workspace + "/m/a/b/c"
	if err := s.p.Mkdir(s.ctx(t), id, path, 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	for _, p := range []string{Workspace + "/m", Workspace + "/m/a/b", path} {
		if info := s.stat(t, id, p); info.Type != provider.TypeDir {
			t.Errorf("Stat(%s).Type = %q, want %q", p, info.Type, provider.TypeDir)
		}
	}
	if err := s.p.Mkdir(s.ctx(t), id, path, 0o755); err != nil {
		t.Errorf("Mkdir of an existing directory: %v, want nil", err)
	}
}

func testMove(t *testing.T, s *suite) {
	id := s.spawn(t)

	s.writeFile(t, id, Workspace+"/old.txt", []byte("moved"), 0o644)
	if err := s.p.Move(s.ctx(t), id, Workspace+"/old.txt", Workspace+"/new/parent/new.txt"); err != nil {
		t.Fatalf("Move to a path with missing parents: %v", err)
	}
	if got := string(s.readFile(t, id, Workspace+"/new/parent/new.txt")); got != "moved" {
		t.Errorf("moved content = %q, want %q", got, "moved")
	}
	s.assertAbsent(t, id, Workspace+"/old.txt")

	s.writeFile(t, id, Workspace+"/replacement.txt", []byte("replacement"), 0o644)
	if err := s.p.Move(s.ctx(t), id, Workspace+"/replacement.txt", Workspace+"/new/parent/new.txt"); err != nil {
		t.Fatalf("Move over an existing file: %v", err)
	}
	if got := string(s.readFile(t, id, Workspace+"/new/parent/new.txt")); got != "replacement" {
		t.Errorf("content after replacing move = %q, want %q", got, "replacement")
	}

	if err := s.p.Move(s.ctx(t), id, Workspace+"/new", Workspace+"/renamed"); err != nil {
		t.Fatalf("Move of a directory: %v", err)
	}
	if got := string(s.readFile(t, id, Workspace+"/renamed/parent/new.txt")); got != "replacement" {
		t.Errorf("content in the moved directory = %q, want %q", got, "replacement")
	}
	s.assertAbsent(t, id, Workspace+"/new")
}

func testChmod(t *testing.T, s *suite) {
	id := s.spawn(t)
	path := Workspace + "/chmod.sh"
	s.writeFile(t, id, path, []byte("#!/bin/sh\necho executable\n"), 0o644)
	if err := s.p.Chmod(s.ctx(t), id, path, 0o750); err != nil {
		t.Fatalf("Chmod: %v", err)
	}
	if got := s.stat(t, id, path).Mode.Perm(); got != 0o750 {
		t.Errorf("mode = %v, want %v", got, fs.FileMode(0o750))
	}
	out := s.mustShell(t, id, "./chmod.sh")
	if got := out.Stdout(); got != "executable\n" {
		t.Errorf("running the file printed %q, want %q", got, "executable\n")
	}
}

func testRemove(t *testing.T, s *suite) {
	id := s.spawn(t)
	ctx := s.ctx(t)
	s.writeFile(t, id, Workspace+"/file.txt", []byte("x"), 0o644)
	s.writeFile(t, id, Workspace+"/tree/a/b.txt", []byte("x"), 0o644)
	if err := s.p.Mkdir(ctx, id, Workspace+"/empty", 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}

	if err := s.p.Remove(ctx, id, Workspace+"/file.txt", false); err != nil {
		t.Errorf("Remove(file): %v", err)
	}
	s.assertAbsent(t, id, Workspace+"/file.txt")

	if err := s.p.Remove(ctx, id, Workspace+"/empty", false); err != nil {
		t.Errorf("Remove(empty dir): %v", err)
	}
	s.assertAbsent(t, id, Workspace+"/empty")

	err := s.p.Remove(ctx, id, Workspace+"/tree", false)
	assertErrorIs(t, "Remove(non-empty dir) without recursive", err, provider.ErrDirectoryNotEmpty)
	if got := string(s.readFile(t, id, Workspace+"/tree/a/b.txt")); got != "x" {
		t.Errorf("content after the rejected Remove = %q, want it kept", got)
	}

	if err := s.p.Remove(ctx, id, Workspace+"/tree", true); err != nil {
		t.Errorf("Remove(non-empty dir, recursive): %v", err)
	}
	s.assertAbsent(t, id, Workspace+"/tree")
}

func testUnusualNames(t *testing.T, s *suite) {
	id := s.spawn(t)
	dir := Workspace + "/dir with spaces"
	name := "naïve résumé ☃ 日本.txt"
	path := dir + "/" + name
	s.writeFile(t, id, path, []byte("unicode"), 0o644)

	if got := string(s.readFile(t, id, path)); got != "unicode" {
		t.Errorf("ReadFile = %q, want %q", got, "unicode")
	}
	entries, err := s.p.ListDir(s.ctx(t), id, dir)
	if err != nil {
		t.Fatalf("ListDir: %v", err)
	}
	if len(entries) != 1 || entries[0].Name != name || entries[0].Path != path {
		t.Errorf("ListDir = %+v, want one entry named %q", entries, name)
	}
	out := s.mustShell(t, id, "cat 'dir with spaces/"+name+"'")
	if got := out.Stdout(); got != "unicode" {
		t.Errorf("cat inside the sandbox = %q, want %q", got, "unicode")
	}
}

func testMissingPaths(t *testing.T, s *suite) {
	id := s.spawn(t)
	ctx := s.ctx(t)
	missing := Workspace + "/missing"
	calls := []namedCall{
		{"ReadFile", func() error { return closeIfOpened(s.p.ReadFile(ctx, id, missing)) }},
		{"Stat", func() error { _, err := s.p.Stat(ctx, id, missing); return err }},
		{"ListDir", func() error { _, err := s.p.ListDir(ctx, id, missing); return err }},
		{"Remove", func() error { return s.p.Remove(ctx, id, missing, false) }},
		{"Remove recursive", func() error { return s.p.Remove(ctx, id, missing, true) }},
		{"Move", func() error { return s.p.Move(ctx, id, missing, Workspace+"/elsewhere") }},
		{"Chmod", func() error { return s.p.Chmod(ctx, id, missing, 0o644) }},
		{"ReadArchive", func() error { return closeIfOpened(s.p.ReadArchive(ctx, id, missing)) }},
	}
	for _, c := range calls {
		err := c.call()
		assertErrorIs(t, c.name, err, provider.ErrPathNotFound)
		assertPathError(t, c.name, err)
	}
}

func testReadDirectory(t *testing.T, s *suite) {
	id := s.spawn(t)
	err := closeIfOpened(s.p.ReadFile(s.ctx(t), id, Workspace))
	assertErrorIs(t, "ReadFile(directory)", err, provider.ErrIsDirectory)
	assertPathError(t, "ReadFile(directory)", err)
}

// assertPathError fails the test unless err is a *provider.PathError.
func assertPathError(t *testing.T, call string, err error) {
	t.Helper()
	var pe *provider.PathError
	if err != nil && !errors.As(err, &pe) {
		t.Errorf("%s: error %v (%T) is not a *provider.PathError", call, err, err)
	}
}
