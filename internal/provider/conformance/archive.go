package conformance

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/internal/provider"
)

var archiveCases = []testCase{
	{"round_trip", testArchiveRoundTrip},
	{"entry_names_relative", testArchiveEntryNamesRelative},
	{"extract_from_client", testArchiveExtractFromClient},
}

// archiveFile is a regular file of the tree the archive cases use.
type archiveFile struct {
	content string
	mode    fs.FileMode
}

var archiveTree = map[string]archiveFile{
	"a.txt":             {"alpha\n", 0o644},
	"bin/run.sh":        {"#!/bin/sh\necho run\n", 0o755},
	"nested/deep/c.txt": {"charlie\n", 0o600},
	"with space.txt":    {"spaced\n", 0o640},
}

// writeArchiveTree writes archiveTree under dir and an empty directory
// named "empty".
func (s *suite) writeArchiveTree(t *testing.T, id, dir string) {
	t.Helper()
	for name, f := range archiveTree {
		s.writeFile(t, id, dir+"/"+name, []byte(f.content), f.mode)
	}
	if err := s.p.Mkdir(s.ctx(t), id, dir+"/empty", 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
}

// readArchive reads the archive of dir into memory.
func (s *suite) readArchive(t *testing.T, id, dir string) []byte {
	t.Helper()
	r, err := s.p.ReadArchive(s.ctx(t), id, dir)
	if err != nil {
		t.Fatalf("ReadArchive(%s): %v", dir, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ReadArchive(%s): reading: %v", dir, err)
	}
	return data
}

// assertArchiveTree checks that dir holds archiveTree with its contents and
// modes, and the empty directory.
func (s *suite) assertArchiveTree(t *testing.T, id, dir string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(archiveTree)) {
		want := archiveTree[name]
		path := dir + "/" + name
		if got := string(s.readFile(t, id, path)); got != want.content {
			t.Errorf("%s content = %q, want %q", name, got, want.content)
		}
		if got := s.stat(t, id, path).Mode.Perm(); got != want.mode {
			t.Errorf("%s mode = %v, want %v", name, got, want.mode)
		}
	}
	if info := s.stat(t, id, dir+"/empty"); info.Type != provider.TypeDir {
		t.Errorf("empty Type = %q, want %q", info.Type, provider.TypeDir)
	}
}

func testArchiveRoundTrip(t *testing.T, s *suite) {
	id := s.spawn(t)
	src, dst := Workspace+"/src", Workspace+"/restored/dst"
	s.writeArchiveTree(t, id, src)

	data := s.readArchive(t, id, src)
	if err := s.p.WriteArchive(s.ctx(t), id, dst, bytes.NewReader(data)); err != nil {
		t.Fatalf("WriteArchive(%s): %v", dst, err)
	}
	s.assertArchiveTree(t, id, dst)

	out := s.mustShell(t, id, "restored/dst/bin/run.sh")
	if got := out.Stdout(); got != "run\n" {
		t.Errorf("running the extracted script printed %q, want %q", got, "run\n")
	}
}

func testArchiveEntryNamesRelative(t *testing.T, s *suite) {
	id := s.spawn(t)
	src := Workspace + "/src"
	s.writeArchiveTree(t, id, src)

	files := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(s.readArchive(t, id, src)))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the archive: %v", err)
		}
		if strings.HasPrefix(hdr.Name, "/") || strings.Contains(hdr.Name, "workspace") {
			t.Errorf("entry %q, want a name relative to the archived directory", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeReg {
			content, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("reading entry %s: %v", hdr.Name, err)
			}
			files[strings.TrimPrefix(hdr.Name, "./")] = string(content)
		}
	}

	for name, want := range archiveTree {
		if got, ok := files[name]; !ok || got != want.content {
			t.Errorf("entry %q = %q (present %v), want %q", name, got, ok, want.content)
		}
	}
}

func testArchiveExtractFromClient(t *testing.T, s *suite) {
	id := s.spawn(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(archiveTree)) {
		f := archiveTree[name]
		hdr := &tar.Header{Name: name, Mode: int64(f.mode), Size: int64(len(f.content)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "empty/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	dst := Workspace + "/from-client"
	if err := s.p.WriteArchive(s.ctx(t), id, dst, &buf); err != nil {
		t.Fatalf("WriteArchive: %v", err)
	}
	s.assertArchiveTree(t, id, dst)
}

// emptyTar returns a valid tar stream with no entries.
func emptyTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
