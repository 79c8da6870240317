package image

import (
	"archive/tar"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// richImage has three layers that use every kind of entry and every layer
// rule the unpacker implements.
func richImage(t *testing.T) v1.Image {
	t.Helper()
	setuid := fileEntry("bin/tool", "#!/bin/sh\necho tool\n", 0o4755)
	owned := fileEntry("data/file", "payload", 0o640)
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1001
	owned.hdr.ModTime = time.Unix(1600000000, 123456789)
	owned.hdr.PAXRecords = map[string]string{xattrPrefix + "user.origin": "layer1"}
	dataDir := dirEntry("data/", 0o750)
	dataDir.hdr.PAXRecords = map[string]string{xattrPrefix + "user.dir": "yes"}
	device := entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	fifo := entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620}}

	lower := testLayer(t,
		dirEntry("./", 0o755),
		dirEntry("bin/", 0o755), setuid,
		dirEntry("etc/", 0o755), fileEntry("etc/passwd", "root:x:0:0\n", 0o644),
		dirEntry("usr/", 0o755), dirEntry("usr/lib/", 0o755), fileEntry("usr/lib/libx.so", "ELF", 0o755),
		symlinkEntry("lib", "usr/lib"),
		symlinkEntry("abs", "/usr"),
		dataDir, owned, hardlinkEntry("data/hardlink", "data/file"),
		dirEntry("old/", 0o755), fileEntry("old/a", "a", 0o644), fileEntry("old/b", "b", 0o644),
		dirEntry("gone/", 0o755), fileEntry("gone/inner", "x", 0o644),
		dirEntry("opq/", 0o755), fileEntry("opq/lower", "lower", 0o644),
		dirEntry("opq/sub/", 0o755), fileEntry("opq/sub/deep", "deep", 0o644),
		dirEntry("dev/", 0o755), device,
		dirEntry("run/", 0o755), fifo,
		dirEntry("tmp/", 0o1777),
		dirEntry("readonly/", 0o555), fileEntry("readonly/x", "x", 0o444),
		fileEntry("swap", "file first", 0o644),
		dirEntry("swapdir/", 0o711), fileEntry("swapdir/child", "dropped", 0o644),
		fileEntry("implicit/parents/file", "no directory entries", 0o644),
	)
	middle := testLayer(t,
		whiteoutEntry("old/.wh.a"),
		whiteoutEntry(".wh.gone"),
		fileEntry("opq/new", "upper", 0o644),
		whiteoutEntry("opq/.wh..wh..opq"),
		fileEntry("lib/added", "via relative symlink", 0o644),
		dirEntry("abs/share/", 0o755),
		fileEntry("abs/share/x", "via absolute symlink", 0o644),
		fileEntry("etc/passwd", "root:x:0:0\nuser:x:1000:1000\n", 0o600),
		fileEntry("readonly/y", "y", 0o444),
		dirEntry("swap/", 0o700), fileEntry("swap/child", "now a directory", 0o644),
		fileEntry("swapdir", "now a file", 0o640),
	)
	upper := testLayer(t,
		whiteoutEntry("data/.wh.hardlink"),
		fileEntry("data/late", "late", 0o644),
	)
	return testImage(t, lower, middle, upper)
}

func TestUnpackLayerRules(t *testing.T) {
	requireRoot(t)
	s := newStore(t, t.TempDir())
	if _, err := s.ImportLayout(t.Context(), "test/rich", writeLayout(t, t.TempDir(), "test/rich:latest", richImage(t))); err != nil {
		t.Fatal(err)
	}
	root := rootFS(t, s, "test/rich")
	tree := scan(t, root)

	absent := []string{"swapdir/child", "old/a", "gone", "gone/inner", "opq/lower", "opq/sub", "data/hardlink", "abs/share"}
	for _, p := range absent {
		if _, ok := tree[p]; ok {
			t.Errorf("%s exists, want it deleted", p)
		}
	}

	wantMode := map[string]fs.FileMode{
		".":               fs.ModeDir | 0o755,
		"bin/tool":        fs.ModeSetuid | 0o755,
		"tmp":             fs.ModeDir | fs.ModeSticky | 0o777,
		"readonly":        fs.ModeDir | 0o555,
		"readonly/y":      0o444,
		"etc/passwd":      0o600,
		"data":            fs.ModeDir | 0o750,
		"data/file":       0o640,
		"swap":            fs.ModeDir | 0o700,
		"lib":             fs.ModeSymlink | 0o777,
		"run/fifo":        fs.ModeNamedPipe | 0o620,
		"dev/null":        fs.ModeDevice | fs.ModeCharDevice | 0o666,
		"old/b":           0o644,
		"opq/new":         0o644,
		"usr/lib/libx.so": 0o755,
	}
	for p, want := range wantMode {
		if got := tree[p].Mode; got != want {
			t.Errorf("mode of %s = %v, want %v", p, got, want)
		}
	}

	wantContent := map[string]string{
		"etc/passwd":    "root:x:0:0\nuser:x:1000:1000\n",
		"usr/lib/added": "via relative symlink",
		"usr/share/x":   "via absolute symlink",
		"swap/child":    "now a directory",
		"opq/new":       "upper",
		"data/late":     "late",
	}
	for p, want := range wantContent {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(got) != want {
			t.Errorf("content of %s = %q, %v; want %q", p, got, err, want)
		}
	}

	if got := tree["lib"].Link; got != "usr/lib" {
		t.Errorf("lib links to %q, want usr/lib", got)
	}
	if got := tree["abs"].Link; got != "/usr" {
		t.Errorf("abs links to %q, want /usr", got)
	}
	file := tree["data/file"]
	if file.UID != 1000 || file.GID != 1001 {
		t.Errorf("owner of data/file = %d:%d, want 1000:1001", file.UID, file.GID)
	}
	if want := time.Unix(1600000000, 123456789); !file.ModTime.Equal(want) {
		t.Errorf("mtime of data/file = %v, want %v", file.ModTime, want)
	}
	if got := file.Xattrs["user.origin"]; got != "layer1" {
		t.Errorf("xattr user.origin of data/file = %q, want layer1", got)
	}
	if got := tree["data"].Xattrs["user.dir"]; got != "yes" {
		t.Errorf("xattr user.dir of data = %q, want yes", got)
	}
	if got, want := tree["dev/null"].Rdev, unix.Mkdev(1, 3); got != want {
		t.Errorf("device number of dev/null = %d, want %d", got, want)
	}
	fi, err := os.Stat(filepath.Join(root, "readonly"))
	if err != nil {
		t.Fatal(err)
	}
	if want := testTime; !fi.ModTime().Equal(want) {
		t.Errorf("mtime of readonly = %v, want %v (directory times are set after the last layer)", fi.ModTime(), want)
	}
}

func TestUnpackHardLinkSharesInode(t *testing.T) {
	img := testImage(t, testLayer(t,
		fileEntry("a", "shared", 0o644),
		hardlinkEntry("b", "a"),
		symlinkEntry("dir", "sub"),
		entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "sub/", Mode: 0o755}},
		fileEntry("sub/c", "through symlink", 0o644),
		hardlinkEntry("d", "dir/c"),
	))
	s := newStore(t, t.TempDir())
	if _, err := s.ImportLayout(t.Context(), "test/links", writeLayout(t, t.TempDir(), "test/links:latest", img)); err != nil {
		t.Fatal(err)
	}
	root := rootFS(t, s, "test/links")

	for _, pair := range [][2]string{{"a", "b"}, {"sub/c", "d"}} {
		first, err := os.Stat(filepath.Join(root, pair[0]))
		if err != nil {
			t.Fatal(err)
		}
		second, err := os.Stat(filepath.Join(root, pair[1]))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(first, second) {
			t.Errorf("%s and %s are different files, want one inode", pair[0], pair[1])
		}
	}
	if got := scan(t, root)["b"].HardLink; got != "a" {
		t.Errorf("ScanTree HardLink of b = %q, want a", got)
	}
}

func TestUnpackRejectsEscapes(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		layers  [][]entry
		invalid bool     // RootFS fails with ErrInvalid
		inside  []string // paths that must exist in the tree afterwards
	}{
		{
			name:    "dotdot entry",
			layers:  [][]entry{{fileEntry("../escape", "x", 0o644)}},
			invalid: true,
		},
		{
			name:    "dotdot after a directory",
			layers:  [][]entry{{dirEntry("a/", 0o755), fileEntry("a/../../escape", "x", 0o644)}},
			invalid: true,
		},
		{
			name:    "hard link above the root",
			layers:  [][]entry{{hardlinkEntry("stolen", "../../../../../../.."+secret)}},
			invalid: true,
		},
		{
			name: "hard link through an absolute symlink",
			layers: [][]entry{
				{symlinkEntry("out", outside)},
				{hardlinkEntry("stolen", "out/secret")},
			},
			invalid: true,
		},
		{
			name: "absolute symlink from an earlier layer",
			layers: [][]entry{
				{dirEntry("deep/", 0o755), symlinkEntry("deep/out", outside)},
				{fileEntry("deep/out/pwned", "x", 0o644)},
			},
			inside: []string{strings.TrimPrefix(outside, "/") + "/pwned"},
		},
		{
			name: "relative symlink climbing above the root",
			layers: [][]entry{
				{symlinkEntry("up", "../../../../../../../../.."+outside)},
				{fileEntry("up/pwned", "x", 0o644)},
			},
			inside: []string{strings.TrimPrefix(outside, "/") + "/pwned"},
		},
		{
			name: "symlink in the same layer",
			layers: [][]entry{
				{symlinkEntry("out", outside), fileEntry("out/pwned", "x", 0o644)},
			},
			inside: []string{strings.TrimPrefix(outside, "/") + "/pwned"},
		},
		{
			name: "file replacing a symlink to a host file",
			layers: [][]entry{
				{symlinkEntry("link", secret)},
				{fileEntry("link", "replaced", 0o644)},
			},
			inside: []string{"link"},
		},
		{
			name: "whiteout through a symlink",
			layers: [][]entry{
				{symlinkEntry("out", outside)},
				{whiteoutEntry("out/.wh.secret")},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, entries := range tt.layers {
				layers = append(layers, testLayer(t, entries...))
			}
			s := newStore(t, t.TempDir())
			if _, err := s.ImportLayout(t.Context(), "test/escape", writeLayout(t, t.TempDir(), "test/escape:latest", testImage(t, layers...))); err != nil {
				t.Fatal(err)
			}

			root, release, err := s.RootFS(t.Context(), "test/escape")
			if tt.invalid {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("RootFS error = %v, want ErrInvalid", err)
				}
			} else if err != nil {
				t.Fatalf("RootFS: %v", err)
			} else {
				defer release()
			}

			entries, err := os.ReadDir(outside)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "secret" {
				t.Errorf("host directory %s holds %v, want only secret", outside, entries)
			}
			data, err := os.ReadFile(secret)
			if err != nil || string(data) != "host" {
				t.Errorf("host file = %q, %v; want it unchanged", data, err)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(secret, &st); err != nil || st.Nlink != 1 {
				t.Errorf("host file has %d links (%v), want 1", st.Nlink, err)
			}
			for _, p := range tt.inside {
				if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
					t.Errorf("%s not created inside the tree: %v", p, err)
				}
			}
		})
	}
}

func TestUnpackChecksDiffID(t *testing.T) {
	img := simpleImage(t, "content")
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	bad, err := mutateConfig(img, cfg)
	if err != nil {
		t.Fatal(err)
	}

	s := newStore(t, t.TempDir())
	if _, err := s.ImportLayout(t.Context(), "test/bad", writeLayout(t, t.TempDir(), "test/bad:latest", bad)); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.RootFS(t.Context(), "test/bad")
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("RootFS error = %v, want ErrInvalid for a layer that does not match its diff ID", err)
	}
	entries, err := os.ReadDir(s.rootfsDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("rootfs/ holds %d entries after a failed unpack, want none", len(entries))
	}
	tmp, err := os.ReadDir(s.tmpDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(tmp) != 0 {
		t.Errorf("tmp/ holds %v after a failed unpack, want nothing", tmp)
	}
}

func TestUnpackUnprivilegedSkipsDevices(t *testing.T) {
	img := testImage(t, testLayer(t,
		entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		entry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "disk", Mode: 0o660, Devmajor: 8, Devminor: 0}},
		fileEntry("owned", "x", 0o644),
	))
	root := t.TempDir()
	u := &unpacker{root: root, log: newStore(t, t.TempDir()).log, buf: make([]byte, 4096), dirs: map[string]dirMeta{}}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := u.applyLayer(t.Context(), layers[0], cfg.RootFS.DiffIDs[0]); err != nil {
		t.Fatal(err)
	}

	if got := u.stats.skippedDevices; got != 2 {
		t.Errorf("skipped devices = %d, want 2", got)
	}
	for _, p := range []string{"null", "disk"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: Lstat error = %v, want not exist", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "owned")); err != nil {
		t.Errorf("owned: %v", err)
	}
}

func TestUnpackImplicitDirsIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)

	s := newStore(t, t.TempDir())
	img := testImage(t, testLayer(t, fileEntry("a/b/file", "x", 0o644)))
	if _, err := s.ImportLayout(t.Context(), "test/umask", writeLayout(t, t.TempDir(), "x", img)); err != nil {
		t.Fatal(err)
	}
	tree := scan(t, rootFS(t, s, "test/umask"))
	for _, p := range []string{".", "a", "a/b"} {
		if got, want := tree[p].Mode, fs.ModeDir|0o755; got != want {
			t.Errorf("mode of %s = %v, want %v", p, got, want)
		}
	}
}
