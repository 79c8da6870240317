package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fileLock is a flock(2) lock on a file in the store's locks directory.
// flock locks belong to an open file, so two locks taken through separate
// opens conflict within one process as well as between processes.
type fileLock struct {
	f *os.File
}

// tryLock takes a lock of kind how (unix.LOCK_SH or unix.LOCK_EX) on path
// without waiting. It reports false when another holder conflicts.
func tryLock(path string, how int) (*fileLock, bool, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, false, err
		}
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, false, nil
		}
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}

		// A holder of an exclusive lock may have unlinked the file (see
		// unlinkAndUnlock) after we opened it. A lock on the unlinked file
		// excludes no one, so start again with the new file.
		same, err := sameFile(f, path)
		if err != nil {
			f.Close()
			return nil, false, err
		}
		if same {
			return &fileLock{f: f}, true, nil
		}
		f.Close()
	}
}

// lock takes a lock like tryLock but waits, polling, until it is free or ctx
// is done.
func lock(ctx context.Context, path string, how int) (*fileLock, error) {
	delay := 2 * time.Millisecond
	for {
		l, ok, err := tryLock(path, how)
		if err != nil || ok {
			return l, err
		}

		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("wait for lock %s: %w", path, context.Cause(ctx))
		case <-timer.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func sameFile(f *os.File, path string) (bool, error) {
	open, err := f.Stat()
	if err != nil {
		return false, err
	}
	named, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(open, named), nil
}

// unlock releases the lock. It is safe to call on a nil lock.
func (l *fileLock) unlock() {
	if l != nil {
		l.f.Close()
	}
}

// unlinkAndUnlock removes the lock file and releases the lock. The caller
// must hold the lock exclusively.
func (l *fileLock) unlinkAndUnlock() {
	os.Remove(l.f.Name())
	l.f.Close()
}
