package client_test

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"sort"
	"testing"

	"github.com/stacyvm/stacyvm/pkg/client"
)

// randomBytes returns n random bytes, which include every byte value.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// download reads a whole sandbox file.
func download(t *testing.T, c *client.Client, id, path string) []byte {
	t.Helper()
	body, err := c.Download(t.Context(), id, path)
	if err != nil {
		t.Fatalf("Download %s: %v", path, err)
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return data
}

func TestWriteFileAndDownload(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)
	data := randomBytes(t, 4096)

	if err := c.WriteFile(t.Context(), sb.ID, "/workspace/dir/blob.bin", data, 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if got := download(t, c, sb.ID, "/workspace/dir/blob.bin"); !bytes.Equal(got, data) {
		t.Errorf("Download: got %d bytes that differ from the %d written", len(got), len(data))
	}

	fi, err := c.Stat(t.Context(), sb.ID, "dir/blob.bin")
	if err != nil {
		t.Fatalf("Stat with a relative path: %v", err)
	}
	if fi.Size != int64(len(data)) || fi.Mode != 0o600 || fi.Type != client.TypeFile || fi.IsDir {
		t.Errorf("Stat: got size %d mode %v type %q dir %v, want %d 0600 file false",
			fi.Size, fi.Mode, fi.Type, fi.IsDir, len(data))
	}
	if fi.Path != "/workspace/dir/blob.bin" || fi.ModTime.IsZero() {
		t.Errorf("Stat: got path %q mod time %v, want the absolute path and a time", fi.Path, fi.ModTime)
	}
}

func TestUploadStreams(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)
	data := randomBytes(t, 8<<20)

	// A pipe has no length and cannot be rewound, so the upload must
	// stream it.
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, bytes.NewReader(data))
		pw.CloseWithError(err)
	}()
	if err := c.Upload(t.Context(), sb.ID, "/workspace/big.bin", pr, 0o755); err != nil {
		t.Fatalf("Upload: %v", err)
	}

	if got := download(t, c, sb.ID, "/workspace/big.bin"); !bytes.Equal(got, data) {
		t.Errorf("Download: got %d bytes that differ from the %d uploaded", len(got), len(data))
	}
	fi, err := c.Stat(t.Context(), sb.ID, "/workspace/big.bin")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if fi.Mode != 0o755 {
		t.Errorf("mode: got %v, want 0755", fi.Mode)
	}
}

func TestFileOperations(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)
	ctx := t.Context()

	if err := c.Mkdir(ctx, sb.ID, "/workspace/a/b"); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	if err := c.WriteFile(ctx, sb.ID, "/workspace/a/b/one.txt", []byte("1"), 0); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if err := c.WriteFile(ctx, sb.ID, "/workspace/a/two.txt", []byte("22"), 0); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}

	list, err := c.ListFiles(ctx, sb.ID, "/workspace/a")
	if err != nil {
		t.Fatalf("ListFiles: %v", err)
	}
	if got := names(list); len(got) != 2 || got[0] != "b" || got[1] != "two.txt" {
		t.Errorf("ListFiles: got %v, want [b two.txt]", got)
	}
	if !list[0].IsDir {
		t.Errorf("ListFiles: entry b is not a directory: %+v", list[0])
	}

	matches, err := c.Glob(ctx, sb.ID, "/workspace/**/*.txt")
	if err != nil {
		t.Fatalf("Glob: %v", err)
	}
	if got := paths(matches); len(got) != 2 || got[0] != "/workspace/a/b/one.txt" || got[1] != "/workspace/a/two.txt" {
		t.Errorf("Glob: got %v", got)
	}

	if err := c.Move(ctx, sb.ID, "/workspace/a/two.txt", "/workspace/c/2.txt"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	if got := download(t, c, sb.ID, "/workspace/c/2.txt"); string(got) != "22" {
		t.Errorf("moved file: got %q, want %q", got, "22")
	}
	if _, err := c.Stat(ctx, sb.ID, "/workspace/a/two.txt"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Stat of the old path: got %v, want ErrNotFound", err)
	}

	if err := c.Chmod(ctx, sb.ID, "/workspace/c/2.txt", 0o700); err != nil {
		t.Fatalf("Chmod: %v", err)
	}
	if fi, err := c.Stat(ctx, sb.ID, "/workspace/c/2.txt"); err != nil || fi.Mode != 0o700 {
		t.Errorf("Stat after Chmod: got mode %v err %v, want 0700", fi.Mode, err)
	}

	if err := c.Remove(ctx, sb.ID, "/workspace/a", false); !errors.Is(err, client.ErrConflict) {
		t.Errorf("Remove of a non-empty directory: got %v, want ErrConflict", err)
	}
	if err := c.Remove(ctx, sb.ID, "/workspace/a", true); err != nil {
		t.Fatalf("recursive Remove: %v", err)
	}
	if _, err := c.Stat(ctx, sb.ID, "/workspace/a"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Stat after Remove: got %v, want ErrNotFound", err)
	}
	if _, err := c.Download(ctx, sb.ID, "/workspace/missing"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Download of a missing file: got %v, want ErrNotFound", err)
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)
	blob := randomBytes(t, 70000)

	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	entries := []struct {
		hdr  tar.Header
		body []byte
	}{
		{tar.Header{Name: "src/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "src/main.go", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("package main\n")},
		{tar.Header{Name: "src/blob.bin", Typeflag: tar.TypeReg, Mode: 0o600}, blob},
	}
	for _, e := range entries {
		e.hdr.Size = int64(len(e.body))
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	if err := c.UploadArchive(t.Context(), sb.ID, "/workspace/project", &archive); err != nil {
		t.Fatalf("UploadArchive: %v", err)
	}
	if got := download(t, c, sb.ID, "/workspace/project/src/blob.bin"); !bytes.Equal(got, blob) {
		t.Errorf("extracted blob differs: got %d bytes, want %d", len(got), len(blob))
	}

	body, err := c.DownloadArchive(t.Context(), sb.ID, "/workspace/project")
	if err != nil {
		t.Fatalf("DownloadArchive: %v", err)
	}
	defer body.Close()
	got := make(map[string][]byte)
	modes := make(map[string]fs.FileMode)
	tr := tar.NewReader(body)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = data
		modes[hdr.Name] = hdr.FileInfo().Mode().Perm()
	}
	if !bytes.Equal(got["src/blob.bin"], blob) {
		t.Errorf("archive entry src/blob.bin: got %d bytes, want the %d uploaded", len(got["src/blob.bin"]), len(blob))
	}
	if string(got["src/main.go"]) != "package main\n" {
		t.Errorf("archive entry src/main.go: got %q", got["src/main.go"])
	}
	if modes["src/blob.bin"] != 0o600 {
		t.Errorf("archive entry src/blob.bin mode: got %v, want 0600", modes["src/blob.bin"])
	}
}

func names(list []client.FileInfo) []string {
	out := make([]string, len(list))
	for i, fi := range list {
		out[i] = fi.Name
	}
	return out
}

func paths(list []client.FileInfo) []string {
	out := make([]string, len(list))
	for i, fi := range list {
		out[i] = fi.Path
	}
	sort.Strings(out)
	return out
}
