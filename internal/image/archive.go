package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

type archiveFormat int

const (
	formatDockerSave archiveFormat = iota // manifest.json lists the images
	formatOCILayout                       // oci-layout and index.json at the top
)

// archive is an image archive ready to read: path is the archive itself or a
// decompressed copy that cleanup removes.
type archive struct {
	path    string
	format  archiveFormat
	cleanup func()
}

// openArchive decompresses a gzip-compressed archive into the store's
// temporary directory and detects the archive's format. Docker 25 and later
// write both manifest.json and an OCI layout; such archives are read through
// manifest.json.
func (s *Store) openArchive(src string) (*archive, error) {
	arc := &archive{path: src, cleanup: func() {}}
	compressed, err := isGzip(src)
	if err != nil {
		return nil, err
	}
	if compressed {
		tmp, err := s.gunzipToTemp(src)
		if err != nil {
			return nil, err
		}
		arc.path = tmp
		arc.cleanup = func() { os.Remove(tmp) }
	}

	names, err := topLevelNames(arc.path)
	if err != nil {
		arc.cleanup()
		return nil, err
	}
	switch {
	case names["manifest.json"]:
		arc.format = formatDockerSave
	case names["oci-layout"] && names["index.json"]:
		arc.format = formatOCILayout
	default:
		arc.cleanup()
		return nil, fmt.Errorf("%w: %s is neither a docker-save archive (no manifest.json) nor an OCI image layout (no oci-layout and index.json)", ErrInvalid, src)
	}
	return arc, nil
}

func isGzip(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()

	magic := make([]byte, 2)
	if _, err := io.ReadFull(f, magic); err != nil {
		return false, fmt.Errorf("%w: read %s: %v", ErrInvalid, p, err)
	}
	return bytes.Equal(magic, []byte{0x1f, 0x8b}), nil
}

func (s *Store) gunzipToTemp(src string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	zr, err := gzip.NewReader(bufio.NewReader(in))
	if err != nil {
		return "", fmt.Errorf("%w: decompress %s: %v", ErrInvalid, src, err)
	}

	out, err := os.CreateTemp(s.tmpDir(), "archive-*.tar")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, zr)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", fmt.Errorf("decompress %s: %w", src, err)
	}
	return out.Name(), nil
}

// topLevelNames lists the regular files at the top of a tar archive.
func topLevelNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: read tar archive %s: %v", ErrInvalid, p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			names[path.Clean(hdr.Name)] = true
		}
	}
}

// extractLayoutArchive writes the directories and regular files of a tar
// archive into dir. Entries of other types are skipped, because an OCI
// layout has none, and names that leave dir are rejected.
func extractLayoutArchive(ctx context.Context, src, dir string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()

	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: read tar archive: %v", ErrInvalid, err)
		}

		rel, err := cleanEntryName(hdr.Name)
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			err = writeRegular(target, tr)
		}
		if err != nil {
			return err
		}
	}
}

func writeRegular(target string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
