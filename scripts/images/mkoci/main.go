// Command mkoci turns a root filesystem directory into a single-layer OCI
// image layout, and optionally into a docker-save archive for `docker load`.
//
// The output depends only on the tree's contents, modes and numeric owners
// and on SOURCE_DATE_EPOCH. Entries are written in lexical order, and every
// modification time is set to SOURCE_DATE_EPOCH. Owner names are left out,
// and the gzip stream carries no name or time. Running it twice on the same
// tree gives byte-identical blobs.
//
// Usage:
//
//	SOURCE_DATE_EPOCH=1700000000 go run ./scripts/images/mkoci \
//	    -rootfs DIR -name stacyvm/minimal:latest -out LAYOUT \
//	    [-docker-archive FILE] [-env K=V]... [-cmd "/bin/bash"]
package main

import (
	"archive/tar"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// listFlag collects a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	rootfs        string
	name          string
	out           string
	dockerArchive string
	arch          string
	cmd           string
	env           listFlag
	epoch         time.Time
}

func main() {
	opts, err := parseFlags()
	if err == nil {
		err = run(opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkoci:", err)
		os.Exit(1)
	}
}

func parseFlags() (options, error) {
	var o options
	flag.StringVar(&o.rootfs, "rootfs", "", "root filesystem directory to pack (required)")
	flag.StringVar(&o.name, "name", "", "image name stored as the ref name annotation, such as stacyvm/minimal:latest (required)")
	flag.StringVar(&o.out, "out", "", "OCI image layout directory to create; an existing one is replaced (required)")
	flag.StringVar(&o.dockerArchive, "docker-archive", "", "also write a docker-save archive of the image to this file")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "architecture recorded in the image config")
	flag.StringVar(&o.cmd, "cmd", "/bin/sh", "default command, split on spaces")
	flag.Var(&o.env, "env", "environment variable K=V for the image config; may be repeated")
	flag.Parse()

	if o.rootfs == "" || o.name == "" || o.out == "" {
		flag.Usage()
		return o, errors.New("-rootfs, -name and -out are required")
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return o, err
	}
	o.epoch = epoch
	return o, nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (seconds since 1970), 0 when unset.
func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: %w", v, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func run(o options) error {
	tag, err := name.NewTag(o.name)
	if err != nil {
		return fmt.Errorf("invalid image name %q: %w", o.name, err)
	}

	layerFile, err := os.CreateTemp("", "mkoci-layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(layerFile.Name())
	if err := writeTree(layerFile, o.rootfs, o.epoch); err != nil {
		layerFile.Close()
		return fmt.Errorf("pack %s: %w", o.rootfs, err)
	}
	if err := layerFile.Close(); err != nil {
		return err
	}

	img, err := buildImage(layerFile.Name(), o)
	if err != nil {
		return err
	}
	if err := writeLayout(o.out, o.name, img); err != nil {
		return err
	}
	if o.dockerArchive != "" {
		if err := tarball.WriteToFile(o.dockerArchive, tag, img); err != nil {
			return fmt.Errorf("write docker archive %s: %w", o.dockerArchive, err)
		}
	}

	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", o.name, digest)
	return nil
}

func buildImage(layerPath string, o options) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: o.epoch}, CreatedBy: "stacyvm mkoci"},
	})
	if err != nil {
		return nil, err
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: o.epoch}
	cfg.OS = "linux"
	cfg.Architecture = o.arch
	cfg.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, o.env...)
	cfg.Config.Cmd = strings.Fields(o.cmd)
	return mutate.ConfigFile(img, cfg)
}

func writeLayout(dir, refName string, img v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	path, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return path.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": refName,
	}))
}

// writeTree writes the tree under root to w as an uncompressed tar stream.
func writeTree(w io.Writer, root string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{} // (device, inode) -> first name written

	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		hdr, err := header(path, filepath.ToSlash(rel), mtime, links)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			return copyFile(tw, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// header builds the tar header of one file with numeric owners only.
// Regular files seen before under another name become hard links.
func header(path, rel string, mtime time.Time, links map[[2]uint64]string) (*tar.Header, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no stat data", path)
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
		Format:  tar.FormatPAX,
	}

	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case syscall.S_IFREG:
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, seen := links[key]; seen && st.Nlink > 1 {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return hdr, nil
		}
		links[key] = rel
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
	case syscall.S_IFLNK:
		target, err := os.Readlink(path)
		if err != nil {
			return nil, err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case syscall.S_IFCHR, syscall.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64((st.Rdev >> 8) & 0xfff)
		hdr.Devminor = int64((st.Rdev & 0xff) | ((st.Rdev >> 12) & 0xfff00))
	case syscall.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("%s: unsupported file type %v", path, fi.Mode().Type())
	}
	return hdr, nil
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
