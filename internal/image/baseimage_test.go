package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBaseImages imports the images that scripts/images/build.sh writes and
// runs their tools in a chroot. It runs when STACYVM_IMAGE_DIR is set to the
// script's OUTDIR. The test does not build the images itself, because that
// takes minutes and needs the Debian mirror.
func TestBaseImages(t *testing.T) {
	out := os.Getenv("STACYVM_IMAGE_DIR")
	if out == "" {
		t.Skip("STACYVM_IMAGE_DIR is not set; run scripts/images/build.sh OUTDIR and set it to OUTDIR")
	}
	requireRoot(t)

	tests := []struct {
		name   string
		script string
		want   string
	}{
		{"minimal", "printf abc | sha256sum", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"minimal", "printf 'AB' | od -An -tx1", "41 42"},
		{"minimal", "printf 'one\\ntwo\\n' | head -n 1", "one"},
		{"minimal", "printf 'xyz' | dd bs=1 count=2 status=none", "xy"},
		{"minimal", "setsid sh -c 'echo session'", "session"},
		{"python", "python3 -c 'import json, sqlite3, subprocess; print(json.dumps([1]))'", "[1]"},
	}

	s := newStore(t, t.TempDir())
	roots := map[string]string{}
	for _, n := range []string{"minimal", "python"} {
		fromLayout, err := s.ImportLayout(t.Context(), "stacyvm/"+n, filepath.Join(out, n))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ImportArchive(t.Context(), "archive/"+n, filepath.Join(out, n+".tar")); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes, digest %s", n, fromLayout.Size, fromLayout.Digest)
		roots[n] = rootFS(t, s, "stacyvm/"+n)
		if archiveRoot := rootFS(t, s, "archive/"+n); archiveRoot != roots[n] {
			t.Errorf("%s: layout and archive unpack to %s and %s, want one tree", n, roots[n], archiveRoot)
		}
	}

	for _, tt := range tests {
		cmd := exec.CommandContext(t.Context(), "chroot", roots[tt.name], "/bin/sh", "-c", tt.script)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		got, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(got), tt.want) {
			t.Errorf("%s: %s = %q, %v; want output containing %q", tt.name, tt.script, got, err, tt.want)
		}
	}
}
