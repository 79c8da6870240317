package proot

import (
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// ReadFile opens the regular file at p, following a final symlink.
func (v *view) ReadFile(ctx context.Context, p string) (io.ReadCloser, error) {
	r, err := v.lookup("read", p, true)
	if err != nil {
		return nil, err
	}
	files, _ := v.tree(r)
	rc, err := files.ReadFile(ctx, r)
	return rc, renamePathError(err, r, p)
}

// Stat describes p without following a final symlink.
func (v *view) Stat(ctx context.Context, p string) (provider.FileInfo, error) {
	r, err := v.lookup("stat", p, false)
	if err != nil {
		return provider.FileInfo{}, err
	}
	files, _ := v.tree(r)
	info, err := files.Stat(ctx, r)
	if err != nil {
		return provider.FileInfo{}, renamePathError(err, r, p)
	}
	info.Path, info.Name = p, path.Base(p)
	return info, nil
}

// ListDir lists the directory at p, following a final symlink. A listing
// of "/" shows the sandbox's own mount directories in place of the
// image's.
func (v *view) ListDir(ctx context.Context, p string) ([]provider.FileInfo, error) {
	r, err := v.lookup("list", p, true)
	if err != nil {
		return nil, err
	}
	files, _ := v.tree(r)
	entries, err := files.ListDir(ctx, r)
	if err != nil {
		return nil, renamePathError(err, r, p)
	}
	if r == "/" {
		if entries, err = v.withMounts(ctx, entries); err != nil {
			return nil, err
		}
	}
	for i := range entries {
		entries[i].Path = rebase(entries[i].Path, r, p)
	}
	return entries, nil
}

// withMounts returns the entries of the image's "/" with each mount
// directory described from the sandbox's own tree, sorted by name.
func (v *view) withMounts(ctx context.Context, entries []provider.FileInfo) ([]provider.FileInfo, error) {
	entries = slices.DeleteFunc(entries, func(e provider.FileInfo) bool { return isMount(e.Path) })
	for _, m := range mounts {
		info, err := v.upper.Stat(ctx, m)
		if err != nil {
			return nil, err
		}
		entries = append(entries, info)
	}
	slices.SortFunc(entries, func(a, b provider.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return entries, nil
}

// Glob returns the entries that match pattern, sorted by path. The
// pattern's leading elements without wildcards are resolved in the view,
// following symlinks, and the rest is matched in the tree that holds
// them. Below "/" the matches come from both trees, the sandbox's own
// for the mount directories and the image's for the rest.
func (v *view) Glob(ctx context.Context, pattern string) ([]provider.FileInfo, error) {
	const op = "glob"
	if err := checkPath(op, pattern); err != nil {
		return nil, err
	}
	elems := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	literal := 0
	for literal < len(elems) && !hasMeta(elems[literal]) {
		literal++
	}
	base := "/" + path.Join(elems[:literal]...)
	rest := elems[literal:]
	if len(rest) == 0 {
		return v.globLiteral(ctx, base)
	}

	r, err := v.lookup(op, base, true)
	if err != nil {
		return []provider.FileInfo{}, nil // a prefix that cannot be resolved matches nothing
	}
	resolved := path.Join(append([]string{r}, rest...)...)
	matches, err := v.globTrees(ctx, resolved, r == "/")
	if err != nil {
		return nil, renamePathError(err, resolved, pattern)
	}
	for i := range matches {
		matches[i].Path = rebase(matches[i].Path, r, base)
		matches[i].Name = path.Base(matches[i].Path)
	}
	slices.SortFunc(matches, func(a, b provider.FileInfo) int { return strings.Compare(a.Path, b.Path) })
	return matches, nil
}

// globLiteral matches a pattern without wildcards: the entry itself, not
// following a final symlink, or nothing.
func (v *view) globLiteral(ctx context.Context, p string) ([]provider.FileInfo, error) {
	info, err := v.Stat(ctx, p)
	if err != nil {
		return []provider.FileInfo{}, nil
	}
	return []provider.FileInfo{info}, nil
}

// globTrees matches the resolved pattern in the tree that holds it, or in
// both trees when it starts at "/".
func (v *view) globTrees(ctx context.Context, pattern string, fromRoot bool) ([]provider.FileInfo, error) {
	if !fromRoot {
		files, _ := v.tree(pattern)
		return files.Glob(ctx, pattern)
	}
	image, err := v.shared.Glob(ctx, pattern)
	if err != nil {
		return nil, err
	}
	own, err := v.upper.Glob(ctx, pattern)
	if err != nil {
		return nil, err
	}
	matches := slices.DeleteFunc(image, func(e provider.FileInfo) bool { return writable(e.Path) })
	for _, e := range own {
		if writable(e.Path) {
			matches = append(matches, e)
		}
	}
	return matches, nil
}

func hasMeta(elem string) bool {
	return strings.ContainsAny(elem, `*?[\`)
}

// ReadArchive streams the directory at p as a tar archive, following a
// final symlink. "/" is rejected, because its archive would have to merge
// both trees.
func (v *view) ReadArchive(ctx context.Context, p string) (io.ReadCloser, error) {
	const op = "archive"
	r, err := v.lookup(op, p, true)
	if err != nil {
		return nil, err
	}
	if r == "/" {
		return nil, &provider.PathError{Op: op, Path: p, Err: fmt.Errorf(
			"%w: archiving the sandbox root is not supported; archive /workspace, /tmp, /home or a directory of the image",
			provider.ErrInvalidArgument)}
	}
	files, _ := v.tree(r)
	rc, err := files.ReadArchive(ctx, r)
	return rc, renamePathError(err, r, p)
}
