package api

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
)

func TestFileWriteReadStat(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	resp := s.do("POST", sandboxPath(id, "/files"), map[string]string{
		"path": "/workspace/notes/a.txt", "content": "hello", "mode": "0600",
	})
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[writtenJSON](t, resp); got.Path != "/workspace/notes/a.txt" || got.Size != 5 {
		t.Errorf("write = %+v, want path /workspace/notes/a.txt and size 5", got)
	}

	resp = s.do("GET", sandboxPath(id, "/files?path=/workspace/notes/a.txt"), nil)
	resp.wantStatus(t, http.StatusOK)
	if string(resp.body) != "hello" {
		t.Errorf("read = %q, want hello", resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q, want application/octet-stream", ct)
	}
	if cl := resp.header.Get("Content-Length"); cl != "5" {
		t.Errorf("Content-Length = %q, want 5", cl)
	}

	resp = s.do("GET", sandboxPath(id, "/files/stat?path=notes/a.txt"), nil)
	resp.wantStatus(t, http.StatusOK)
	info := decodeBody[fileJSON](t, resp)
	want := fileJSON{Name: "a.txt", Path: "/workspace/notes/a.txt", Size: 5, Mode: "0600", Type: "file"}
	modTime := info.ModTime
	info.ModTime = ""
	if info != want {
		t.Errorf("stat = %+v, want %+v", info, want)
	}
	if ts := parseUTC(t, "mod_time", modTime); time.Since(ts) > time.Minute {
		t.Errorf("mod_time = %v, want about now", ts)
	}
	if !bytes.Contains(resp.body, []byte(`"link_target":""`)) {
		t.Errorf("stat body %s has no empty link_target", resp.body)
	}
}

func TestFileWriteBase64(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()
	data := []byte{0, 1, 2, 0xff, 0xfe, '\n'}

	s.do("POST", sandboxPath(id, "/files"), map[string]string{
		"path": "bin.dat", "content": base64.StdEncoding.EncodeToString(data), "encoding": "base64",
	}).wantStatus(t, http.StatusOK)

	resp := s.do("GET", sandboxPath(id, "/files?path=bin.dat"), nil)
	resp.wantStatus(t, http.StatusOK)
	if !bytes.Equal(resp.body, data) {
		t.Errorf("read = %v, want %v", resp.body, data)
	}
}

func TestFileDirectoryOperations(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()
	write := func(path string) {
		t.Helper()
		s.do("PUT", sandboxPath(id, "/files?path="+url.QueryEscape(path)), "data").wantStatus(t, http.StatusOK)
	}

	resp := s.do("POST", sandboxPath(id, "/files/mkdir"), map[string]string{"path": "/workspace/src/pkg", "mode": "0750"})
	resp.wantStatus(t, http.StatusOK)
	write("/workspace/src/main.go")
	write("/workspace/src/pkg/lib.go")
	write("/workspace/src/pkg/README")

	resp = s.do("GET", sandboxPath(id, "/files/list?path=/workspace/src"), nil)
	resp.wantStatus(t, http.StatusOK)
	if got := entryNames(decodeBody[[]fileJSON](t, resp)); !slices.Equal(got, []string{"main.go", "pkg"}) {
		t.Errorf("list = %v, want [main.go pkg]", got)
	}
	for _, e := range decodeBody[[]fileJSON](t, resp) {
		if e.Name == "pkg" && (!e.IsDir || e.Type != "dir" || e.Mode != "0750") {
			t.Errorf("pkg entry = %+v, want a dir with mode 0750", e)
		}
	}

	resp = s.do("GET", sandboxPath(id, "/files/glob?pattern="+url.QueryEscape("/workspace/**/*.go")), nil)
	resp.wantStatus(t, http.StatusOK)
	if got := entryPaths(decodeBody[[]fileJSON](t, resp)); !slices.Equal(got, []string{"/workspace/src/main.go", "/workspace/src/pkg/lib.go"}) {
		t.Errorf("glob = %v, want the two .go files", got)
	}
	resp = s.do("GET", sandboxPath(id, "/files/glob?pattern=/workspace/*.none"), nil)
	resp.wantStatus(t, http.StatusOK)
	if string(bytes.TrimSpace(resp.body)) != "[]" {
		t.Errorf("glob without matches = %s, want []", resp.body)
	}

	s.do("POST", sandboxPath(id, "/files/move"), map[string]string{
		"old_path": "/workspace/src/main.go", "new_path": "/workspace/bin/app.go",
	}).wantStatus(t, http.StatusOK)
	s.do("GET", sandboxPath(id, "/files/stat?path=/workspace/src/main.go"), nil).
		wantError(t, http.StatusNotFound, codeNotFound)
	s.do("GET", sandboxPath(id, "/files/stat?path=/workspace/bin/app.go"), nil).wantStatus(t, http.StatusOK)

	s.do("POST", sandboxPath(id, "/files/chmod"), map[string]string{"path": "/workspace/bin/app.go", "mode": "0755"}).
		wantStatus(t, http.StatusOK)
	resp = s.do("GET", sandboxPath(id, "/files/stat?path=/workspace/bin/app.go"), nil)
	if got := decodeBody[fileJSON](t, resp).Mode; got != "0755" {
		t.Errorf("mode after chmod = %q, want 0755", got)
	}
	s.do("POST", sandboxPath(id, "/files/chmod"), map[string]string{"path": "/workspace/bin/app.go"}).
		wantError(t, http.StatusBadRequest, codeBadRequest, "mode")

	s.do("DELETE", sandboxPath(id, "/files?path=/workspace/src"), nil).
		wantError(t, http.StatusConflict, codeConflict)
	resp = s.do("DELETE", sandboxPath(id, "/files?path=/workspace/src&recursive=true"), nil)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[map[string]string](t, resp)["status"]; got != "deleted" {
		t.Errorf("delete status = %q, want deleted", got)
	}
	s.do("GET", sandboxPath(id, "/files/list?path=/workspace/src"), nil).
		wantError(t, http.StatusNotFound, codeNotFound)
}

func entryNames(list []fileJSON) []string {
	var names []string
	for _, e := range list {
		names = append(names, e.Name)
	}
	return names
}

func entryPaths(list []fileJSON) []string {
	var paths []string
	for _, e := range list {
		paths = append(paths, e.Path)
	}
	return paths
}

func TestFileSymlinkStaysInside(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()

	// The link's absolute target resolves inside the sandbox, where
	// /etc/passwd does not exist, and never to the host's file.
	s.do("POST", sandboxPath(id, "/exec"), map[string]any{"command": "ln -s / escape"}).wantStatus(t, http.StatusOK)
	resp := s.do("GET", sandboxPath(id, "/files?path=/workspace/escape/etc/passwd"), nil)
	if resp.status != http.StatusBadRequest && resp.status != http.StatusNotFound {
		t.Errorf("read through a symlink to / = %d, want 400 or 404; body %s", resp.status, resp.body)
	}
	if bytes.Contains(resp.body, []byte("root:")) {
		t.Errorf("read through a symlink to / returned the host's /etc/passwd")
	}
}

func TestFileBinaryRoundTrip(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()
	data := make([]byte, 10<<20)
	rand.Read(data)
	want := sha256.Sum256(data)

	resp := s.do("PUT", sandboxPath(id, "/files?path=/workspace/big.bin&mode=0640"), data)
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[writtenJSON](t, resp); got.Size != int64(len(data)) {
		t.Errorf("upload size = %d, want %d", got.Size, len(data))
	}

	resp = s.do("GET", sandboxPath(id, "/files?path=/workspace/big.bin"), nil)
	resp.wantStatus(t, http.StatusOK)
	if got := sha256.Sum256(resp.body); got != want {
		t.Errorf("download sha256 = %x, want %x (%d bytes, want %d)", got, want, len(resp.body), len(data))
	}
	if cl := resp.header.Get("Content-Length"); cl != strconv.Itoa(len(data)) {
		t.Errorf("Content-Length = %q, want %d", cl, len(data))
	}

	resp = s.do("GET", sandboxPath(id, "/files/stat?path=/workspace/big.bin"), nil)
	if got := decodeBody[fileJSON](t, resp).Mode; got != "0640" {
		t.Errorf("mode = %q, want 0640", got)
	}
}

func TestFileUploadTooLarge(t *testing.T) {
	s := newStack(t, stackOptions{limits: func(l *config.Limits) { l.MaxUploadBytes = 1 << 20 }})
	id := s.spawn()
	data := make([]byte, 2<<20)

	s.do("PUT", sandboxPath(id, "/files?path=/workspace/big.bin"), data).
		wantError(t, http.StatusRequestEntityTooLarge, codePayloadTooLarge, strconv.Itoa(1<<20))

	// Without a Content-Length the body is cut while it streams, and the
	// atomic write leaves no file behind, or the old file as it was.
	req := s.newRequest(t.Context(), "PUT", sandboxPath(id, "/files?path=/workspace/big.bin"),
		io.MultiReader(bytes.NewReader(data)))
	req.ContentLength = -1
	s.send(req).wantError(t, http.StatusRequestEntityTooLarge, codePayloadTooLarge)
	s.do("GET", sandboxPath(id, "/files/stat?path=/workspace/big.bin"), nil).
		wantError(t, http.StatusNotFound, codeNotFound)

	s.do("PUT", sandboxPath(id, "/files?path=/workspace/old.txt"), "old content").wantStatus(t, http.StatusOK)
	req = s.newRequest(t.Context(), "PUT", sandboxPath(id, "/files?path=/workspace/old.txt"),
		io.MultiReader(bytes.NewReader(data)))
	req.ContentLength = -1
	s.send(req).wantError(t, http.StatusRequestEntityTooLarge, codePayloadTooLarge)
	if resp := s.do("GET", sandboxPath(id, "/files?path=/workspace/old.txt"), nil); string(resp.body) != "old content" {
		t.Errorf("file after a failed upload = %q, want the old content", resp.body)
	}

	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	req = s.newRequest(t.Context(), "PUT", sandboxPath(id, "/files/archive?path=/workspace/x"),
		io.MultiReader(&archive))
	req.ContentLength = -1
	s.send(req).wantError(t, http.StatusRequestEntityTooLarge, codePayloadTooLarge)
}

func TestArchiveRoundTrip(t *testing.T) {
	s := newStack(t, stackOptions{})
	id := s.spawn()
	files := map[string]string{"a.txt": "alpha", "dir/b.txt": "beta", "dir/deeper/c.bin": "\x00\x01\x02"}

	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	for _, name := range []string{"a.txt", "dir/b.txt", "dir/deeper/c.bin"} {
		content := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	resp := s.do("PUT", sandboxPath(id, "/files/archive?path=/workspace/in"), archive.Bytes())
	resp.wantStatus(t, http.StatusOK)
	if got := decodeBody[extractedJSON](t, resp); got.Size != int64(archive.Len()) {
		t.Errorf("extract size = %d, want %d", got.Size, archive.Len())
	}
	resp = s.do("GET", sandboxPath(id, "/files?path=/workspace/in/dir/b.txt"), nil)
	if string(resp.body) != "beta" {
		t.Errorf("extracted dir/b.txt = %q, want beta", resp.body)
	}

	resp = s.do("GET", sandboxPath(id, "/files/archive?path=/workspace/in"), nil)
	resp.wantStatus(t, http.StatusOK)
	if ct := resp.header.Get("Content-Type"); ct != "application/x-tar" {
		t.Errorf("Content-Type = %q, want application/x-tar", ct)
	}
	got := readTar(t, resp.body)
	for name, content := range files {
		if got[name] != content {
			t.Errorf("archive entry %s = %q, want %q", name, got[name], content)
		}
	}

	s.do("GET", sandboxPath(id, "/files/archive?path=/workspace/missing"), nil).
		wantError(t, http.StatusNotFound, codeNotFound)
	resp = s.do("PUT", sandboxPath(id, "/files/archive?path=/workspace/bad"), "this is not a tar archive, not at all")
	if resp.status < 400 || resp.status >= 500 {
		t.Errorf("extract of garbage = %d, want a 4xx; body %s", resp.status, resp.body)
	}
}

// readTar returns the regular files of a tar archive by name.
func readTar(t *testing.T, data []byte) map[string]string {
	t.Helper()
	files := make(map[string]string)
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read archive entry %s: %v", hdr.Name, err)
		}
		files[strings.TrimPrefix(hdr.Name, "./")] = string(content)
	}
}
