package proot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// stateFile is the name of the file that records a sandbox's spec. A
// sandbox directory without it is incomplete and is ignored.
const stateFile = "state.json"

// state is the content of state.json. It includes Env, which commands need
// after a restart, so the file is readable by the server's user only.
type state struct {
	ID        string            `json:"id"`
	Image     string            `json:"image"`
	Runtime   string            `json:"runtime,omitempty"`
	MemoryMB  int               `json:"memory_mb,omitempty"`
	VCPUs     int               `json:"vcpus,omitempty"`
	Network   bool              `json:"network"`
	Env       map[string]string `json:"env,omitempty"`
	OwnerID   string            `json:"owner_id,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	CreatedAt time.Time         `json:"created_at"`

	// UID is the host user and group ID that the sandbox's commands run
	// as.
	UID uint32 `json:"uid"`
}

func newState(spec provider.SpawnSpec, image string, uid uint32, created time.Time) state {
	return state{
		ID:        spec.ID,
		Image:     image,
		Runtime:   spec.Runtime,
		MemoryMB:  spec.MemoryMB,
		VCPUs:     spec.VCPUs,
		Network:   spec.Network,
		Env:       spec.Env,
		OwnerID:   spec.OwnerID,
		Metadata:  spec.Metadata,
		CreatedAt: created.UTC(),
		UID:       uid,
	}
}

// writeJSON writes v to dir/name through a temporary file and a rename, so
// a reader never sees a partial file.
func writeJSON(dir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// readJSON reads dir/name into v. A missing file gives an error matching
// os.ErrNotExist.
func readJSON(dir, name string, v any) error {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

// readState reads dir/state.json. A missing file gives an error matching
// os.ErrNotExist.
func readState(dir string) (state, error) {
	var st state
	err := readJSON(dir, stateFile, &st)
	return st, err
}

// ListRuntimes returns the sandboxes recorded under StateDir, sorted by ID
// because os.ReadDir sorts by name. Directories without state.json are
// skipped, and a state.json that cannot be read or parsed fails the call.
// Running is always true: a sandbox whose agent is not running starts it
// again on its next exec or Recover.
func (p *Provider) ListRuntimes(ctx context.Context) ([]provider.RuntimeInfo, error) {
	entries, err := os.ReadDir(p.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("proot: list sandboxes: %w: %w", provider.ErrUnavailable, err)
	}
	var runtimes []provider.RuntimeInfo
	for _, e := range entries {
		if !e.IsDir() || !validID.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(p.cfg.StateDir, e.Name())
		st, err := readState(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("proot: list sandboxes: %w", err)
		}
		runtimes = append(runtimes, provider.RuntimeInfo{
			ID:        st.ID,
			Image:     st.Image,
			MemoryMB:  st.MemoryMB,
			VCPUs:     st.VCPUs,
			OwnerID:   st.OwnerID,
			Metadata:  st.Metadata,
			CreatedAt: st.CreatedAt,
			Running:   true,
		})
	}
	return runtimes, nil
}
