package proot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// WriteFile streams r into p, following a final symlink, and gives the
// new file and any parents it created to the sandbox's user.
func (v *view) WriteFile(ctx context.Context, p string, r io.Reader, mode fs.FileMode) error {
	const op = "write"
	resolved, err := v.lookup(op, p, true)
	if err != nil {
		return err
	}
	if !writable(resolved) {
		return v.rejectWrite(op, p, resolved, false)
	}
	if err := v.upper.WriteFile(ctx, resolved, r, mode); err != nil {
		return renamePathError(err, resolved, p)
	}
	return v.ownership(op, p, v.own(resolved))
}

// Mkdir creates the directory p and its parents, following a final
// symlink. An existing directory is fine anywhere, but a new one can only
// be made below a mount.
func (v *view) Mkdir(ctx context.Context, p string, mode fs.FileMode) error {
	const op = "mkdir"
	resolved, err := v.lookup(op, p, true)
	if err != nil {
		return err
	}
	if !writable(resolved) {
		info, err := v.lstat(resolved)
		switch {
		case err == nil && info.IsDir():
			return nil
		case err == nil:
			return &provider.PathError{Op: op, Path: p, Err: provider.ErrPathExists}
		}
		return v.rejectWrite(op, p, resolved, false)
	}
	if err := v.upper.Mkdir(ctx, resolved, mode); err != nil {
		return renamePathError(err, resolved, p)
	}
	return v.ownership(op, p, v.own(resolved))
}

// Remove deletes p, never following a final symlink. The mount
// directories themselves cannot be removed.
func (v *view) Remove(ctx context.Context, p string, recursive bool) error {
	const op = "remove"
	resolved, err := v.lookup(op, p, false)
	if err != nil {
		return err
	}
	if isMount(resolved) {
		return &provider.PathError{Op: op, Path: p, Err: fmt.Errorf(
			"%w: %s is a mount directory of the sandbox and cannot be removed; remove its entries instead",
			provider.ErrInvalidArgument, resolved)}
	}
	if !writable(resolved) {
		return v.rejectWrite(op, p, resolved, true)
	}
	return renamePathError(v.upper.Remove(ctx, resolved, recursive), resolved, p)
}

// Move renames oldPath to newPath, following neither final symlink. Both
// must lie below the mounts; moves between them work, because all mounts
// share one host directory.
func (v *view) Move(ctx context.Context, oldPath, newPath string) error {
	const op = "move"
	oldResolved, err := v.lookup(op, oldPath, false)
	if err != nil {
		return err
	}
	newResolved, err := v.lookup(op, newPath, false)
	if err != nil {
		return err
	}
	for _, m := range []struct{ requested, resolved string }{{oldPath, oldResolved}, {newPath, newResolved}} {
		if isMount(m.resolved) {
			return &provider.PathError{Op: op, Path: m.requested, Err: fmt.Errorf(
				"%w: %s is a mount directory of the sandbox and cannot be moved or replaced",
				provider.ErrInvalidArgument, m.resolved)}
		}
	}
	if !writable(oldResolved) {
		return v.rejectWrite(op, oldPath, oldResolved, true)
	}
	if !writable(newResolved) {
		return v.rejectWrite(op, newPath, newResolved, false)
	}

	err = v.upper.Move(ctx, oldResolved, newResolved)
	err = renamePathError(err, oldResolved, oldPath)
	if err = renamePathError(err, newResolved, newPath); err != nil {
		return err
	}
	return v.ownership(op, newPath, v.own(newResolved))
}

// Chmod sets the mode of p, following a final symlink.
func (v *view) Chmod(ctx context.Context, p string, mode fs.FileMode) error {
	const op = "chmod"
	resolved, err := v.lookup(op, p, true)
	if err != nil {
		return err
	}
	if !writable(resolved) {
		return v.rejectWrite(op, p, resolved, true)
	}
	return renamePathError(v.upper.Chmod(ctx, resolved, mode), resolved, p)
}

// WriteArchive extracts r into the directory p, following a final
// symlink, and gives everything below p to the sandbox's user.
func (v *view) WriteArchive(ctx context.Context, p string, r io.Reader) error {
	const op = "extract"
	resolved, err := v.lookup(op, p, true)
	if err != nil {
		return err
	}
	if !writable(resolved) {
		return v.rejectWrite(op, p, resolved, false)
	}
	err = v.upper.WriteArchive(ctx, resolved, r)
	// Entries extracted before a failure stay, so they get their owner
	// in either case.
	ownErr := v.ownTree(resolved)
	if err != nil {
		return renamePathError(err, resolved, p)
	}
	return v.ownership(op, p, ownErr)
}

// ownership wraps an error of own or ownTree for the operation op on p.
func (v *view) ownership(op, p string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return &provider.PathError{Op: op, Path: p, Err: fmt.Errorf("give the new files to the sandbox's user: %w", err)}
}
