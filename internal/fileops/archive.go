package fileops

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// ReadArchive streams the directory at p as a tar archive in PAX format,
// following a final symlink. Entry names are relative to p, directories end
// with "/", and the directory itself has no entry. Regular files,
// directories and symlinks are stored with their modes and modification
// times, and symlinks are stored as links, never followed. Sockets, devices
// and FIFOs are skipped. A non-directory gives ErrNotDirectory.
//
// The archive is written by a goroutine as the caller reads. It stops when
// ctx ends, and Close stops it and waits for it to exit. An error met while
// streaming is returned by Read.
func (f *FS) ReadArchive(ctx context.Context, p string) (io.ReadCloser, error) {
	const op = "archive"
	if err := checkPath(op, p); err != nil {
		return nil, err
	}
	rel, err := f.resolve(p, true)
	if err != nil {
		return nil, f.pathError(op, p, err)
	}
	dir, err := f.openDir(rel)
	if err != nil {
		return nil, f.pathError(op, p, err)
	}

	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer dir.Close()
		w := archiveWriter{ctx: ctx, root: dir, tw: tar.NewWriter(pw)}
		err := w.addDir(".")
		if err == nil {
			err = w.tw.Close()
		}
		if err != nil {
			err = f.pathError(op, p, err)
		}
		pw.CloseWithError(err)
	}()
	return &archiveReader{PipeReader: pr, done: done}, nil
}

// archiveReader is the read end of ReadArchive's pipe.
type archiveReader struct {
	*io.PipeReader
	done chan struct{}
}

// Close makes the writing goroutine's next write fail and waits for it to
// exit.
func (r *archiveReader) Close() error {
	err := r.PipeReader.Close()
	<-r.done
	return err
}

// archiveWriter writes the tree of root into tw.
type archiveWriter struct {
	ctx  context.Context
	root *os.Root
	tw   *tar.Writer
}

// addDir writes the entries below the directory rel, depth first in name
// order. Entries removed during the walk are left out.
func (w *archiveWriter) addDir(rel string) error {
	names, err := readNames(w.root, rel)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		child := path.Join(rel, name)
		info, err := w.root.Lstat(child)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}

		switch {
		case info.IsDir():
			err = w.writeHeader(child+"/", tar.TypeDir, info, "")
			if err == nil {
				err = w.addDir(child)
			}
		case info.Mode().IsRegular():
			err = w.addFile(child)
		case info.Mode()&fs.ModeSymlink != 0:
			err = w.addSymlink(child, info)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// addFile writes the regular file rel. It is skipped when it was removed or
// replaced by a non-regular file since the directory was read.
func (w *archiveWriter) addFile(rel string) error {
	file, err := w.root.OpenFile(rel, os.O_RDONLY|openNonBlock, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()

	info, err := file.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	if err := w.writeHeader(rel, tar.TypeReg, info, ""); err != nil {
		return err
	}

	// A file that grows while it is copied is cut at the size in the
	// header, and one that shrinks fails the archive.
	_, err = io.CopyN(w.tw, contextReader{ctx: w.ctx, r: file}, info.Size())
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("file %s shrank while it was archived", rel)
	}
	return err
}

func (w *archiveWriter) addSymlink(rel string, info fs.FileInfo) error {
	target, err := w.root.Readlink(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return w.writeHeader(rel, tar.TypeSymlink, info, target)
}

func (w *archiveWriter) writeHeader(name string, kind byte, info fs.FileInfo, linkTarget string) error {
	hdr := &tar.Header{
		Typeflag: kind,
		Name:     name,
		Linkname: linkTarget,
		Mode:     unixMode(info.Mode()),
		ModTime:  info.ModTime(),
		Format:   tar.FormatPAX,
	}
	if kind == tar.TypeReg {
		hdr.Size = info.Size()
	}
	return w.tw.WriteHeader(hdr)
}

// unixMode returns the permission and special bits of mode in their Unix
// octal positions, as tar headers store them.
func unixMode(mode fs.FileMode) int64 {
	bits := int64(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits
}
