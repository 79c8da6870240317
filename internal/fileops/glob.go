package fileops

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Glob returns the entries matching the absolute pattern, sorted by path and
// described as by Stat. Each element of the pattern has the syntax of
// path.Match, except that an element "**" matches zero or more directories.
// A trailing "**" therefore matches the directory before it and every entry
// below it.
//
// The walk starts at the longest prefix of the pattern without wildcards,
// whose symlinks are followed. Below it, symlinks are matched as entries but
// never descended into, so the walk cannot loop or leave its tree.
// Directories that cannot be read are skipped, as path/filepath.Glob does.
// No match gives an empty, non-nil slice, and a malformed pattern gives
// ErrInvalidArgument.
func (f *FS) Glob(ctx context.Context, pattern string) ([]provider.FileInfo, error) {
	const op = "glob"
	if err := checkPath(op, pattern); err != nil {
		return nil, err
	}
	elems, err := splitPattern(pattern)
	if err != nil {
		return nil, &provider.PathError{Op: op, Path: pattern, Err: err}
	}

	literal := 0
	for literal < len(elems) && !hasMeta(elems[literal]) {
		literal++
	}
	base := "/" + path.Join(elems[:literal]...)

	g := globber{ctx: ctx, fs: f, matches: map[string]provider.FileInfo{}}
	if err := g.start(base, elems[literal:]); err != nil {
		return nil, f.pathError(op, pattern, err)
	}

	results := make([]provider.FileInfo, 0, len(g.matches))
	for _, info := range g.matches {
		results = append(results, info)
	}
	slices.SortFunc(results, func(a, b provider.FileInfo) int { return strings.Compare(a.Path, b.Path) })
	return results, nil
}

// splitPattern splits an absolute pattern into its elements, checks each
// with path.Match and merges runs of "**", which match the same as one.
func splitPattern(pattern string) ([]string, error) {
	var elems []string
	for _, elem := range strings.Split(pattern, "/")[1:] {
		if elem == "" {
			continue // the root pattern "/"
		}
		if elem == "**" && len(elems) > 0 && elems[len(elems)-1] == "**" {
			continue
		}
		if _, err := path.Match(elem, ""); err != nil {
			return nil, errors.Join(provider.ErrInvalidArgument, err)
		}
		elems = append(elems, elem)
	}
	return elems, nil
}

func hasMeta(elem string) bool {
	return strings.ContainsAny(elem, `*?[\`)
}

// globber collects the matches of one Glob call, keyed by sandbox path so
// that a path reached by several "**" expansions is listed once.
type globber struct {
	ctx     context.Context
	fs      *FS
	matches map[string]provider.FileInfo
}

// start resolves the literal prefix base and walks the remaining pattern
// elems below it. A missing base, or one that is not a directory while
// elements remain, matches nothing.
func (g *globber) start(base string, elems []string) error {
	if len(elems) == 0 {
		rel, err := g.fs.resolve(base, false)
		if err == nil {
			g.add(rel, base)
		}
		return ignoreMissing(err)
	}
	rel, err := g.fs.resolve(base, true)
	if err != nil {
		return ignoreMissing(err)
	}
	return g.walk(rel, base, elems)
}

// walk matches elems against the entries below the real directory rel,
// whose sandbox path is dir.
func (g *globber) walk(rel, dir string, elems []string) error {
	if err := g.ctx.Err(); err != nil {
		return err
	}
	elem, rest := elems[0], elems[1:]

	if elem == "**" {
		if len(rest) == 0 {
			g.add(rel, dir)
		} else if err := g.walk(rel, dir, rest); err != nil {
			return err
		}
	}

	names, err := g.names(rel, elem)
	if err != nil {
		return nil // unreadable or removed directory: no matches here
	}
	for _, name := range names {
		childRel, childDir := path.Join(rel, name), path.Join(dir, name)
		info, err := g.fs.root.Lstat(childRel)
		if err != nil {
			continue
		}
		switch {
		case elem == "**" && info.IsDir():
			err = g.walk(childRel, childDir, elems)
		case elem == "**" && len(rest) == 0:
			g.add(childRel, childDir)
		case elem == "**":
			// A non-directory cannot contain the remaining elements.
		case len(rest) == 0:
			g.add(childRel, childDir)
		case info.IsDir():
			err = g.walk(childRel, childDir, rest)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// names returns the entries of the directory rel that can match elem: the
// element itself when it has no wildcard, else the matching names read
// from the directory.
func (g *globber) names(rel, elem string) ([]string, error) {
	if !hasMeta(elem) {
		return []string{elem}, nil
	}
	all, err := readNames(g.fs.root, rel)
	if err != nil {
		return nil, err
	}
	if elem == "**" {
		return all, nil
	}
	var names []string
	for _, name := range all {
		if ok, _ := path.Match(elem, name); ok {
			names = append(names, name)
		}
	}
	return names, nil
}

// add records the entry rel under its sandbox path p, unless it vanished.
func (g *globber) add(rel, p string) {
	if info, err := describe(g.fs.root, rel, p); err == nil {
		g.matches[p] = info
	}
}

// ignoreMissing drops the errors that mean a glob prefix matches nothing.
func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
		return nil
	}
	return err
}
