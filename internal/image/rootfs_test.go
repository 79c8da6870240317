package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRootFSConcurrentFirstUse(t *testing.T) {
	s := newStore(t, t.TempDir())
	if _, err := s.ImportLayout(t.Context(), "test/rich", writeLayout(t, t.TempDir(), "x", richImage(t))); err != nil {
		t.Fatal(err)
	}

	const callers = 10
	paths := make([]string, callers)
	releases := make([]func(), callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			paths[i], releases[i], errs[i] = s.RootFS(t.Context(), "test/rich")
		})
	}
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		defer releases[i]()
		if paths[i] != paths[0] {
			t.Errorf("caller %d got %s, want %s like caller 0", i, paths[i], paths[0])
		}
	}
	if got := s.unpacks.Load(); got != 1 {
		t.Errorf("unpacks = %d, want 1 for %d concurrent first calls", got, callers)
	}
	if got := s.users[filepath.Base(paths[0])].refs; got != callers {
		t.Errorf("reference count = %d, want %d", got, callers)
	}
}

// TestRootFSTwoStoresOneDirectory opens one directory twice, as two
// processes would: the flock-based locks conflict across separate opens.
func TestRootFSTwoStoresOneDirectory(t *testing.T) {
	dir := t.TempDir()
	first, second := newStore(t, dir), newStore(t, dir)
	if _, err := first.ImportLayout(t.Context(), "test/rich", writeLayout(t, t.TempDir(), "x", richImage(t))); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for _, s := range []*Store{first, second, first, second} {
		wg.Go(func() {
			path, release, err := s.RootFS(t.Context(), "test/rich")
			if err != nil {
				t.Errorf("RootFS: %v", err)
				return
			}
			defer release()
			if _, err := os.Stat(filepath.Join(path, "etc/passwd")); err != nil {
				t.Errorf("tree is incomplete: %v", err)
			}
		})
	}
	wg.Wait()

	if got := first.unpacks.Load() + second.unpacks.Load(); got != 1 {
		t.Errorf("unpacks over both stores = %d, want 1", got)
	}
}

func TestRootFSNotFound(t *testing.T) {
	s := newStore(t, t.TempDir())
	start := time.Now()
	_, _, err := s.RootFS(t.Context(), "stacyvm/python")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("RootFS error = %v, want ErrNotFound", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("RootFS took %v for a missing image, want it to fail at once", elapsed)
	}
	for _, want := range []string{
		"stacyvm/python:latest",
		"stacyvm image import stacyvm/python:latest PATH",
		"stacyvm image pull stacyvm/python:latest",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Name != "stacyvm/python:latest" {
		t.Errorf("error %v is not a *NotFoundError for stacyvm/python:latest", err)
	}
}

func TestRootFSCanceledCallerLeavesUnpackRunning(t *testing.T) {
	s := newStore(t, t.TempDir())
	if _, err := s.ImportLayout(t.Context(), "test/rich", writeLayout(t, t.TempDir(), "x", richImage(t))); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := s.RootFS(ctx, "test/rich"); !errors.Is(err, context.Canceled) {
		t.Fatalf("RootFS with a canceled context: error = %v, want context.Canceled", err)
	}
	rootFS(t, s, "test/rich")
	if got := s.unpacks.Load(); got != 1 {
		t.Errorf("unpacks = %d, want 1", got)
	}
}

func TestRootFSAfterClose(t *testing.T) {
	s := newStore(t, t.TempDir())
	if _, err := s.ImportLayout(t.Context(), "test/app", writeLayout(t, t.TempDir(), "x", simpleImage(t, "x"))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := s.RootFS(t.Context(), "test/app"); !errors.Is(err, ErrClosed) {
		t.Errorf("RootFS after Close: error = %v, want ErrClosed", err)
	}
}
