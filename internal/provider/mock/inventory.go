package mock

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
	Image     string            `json:"image,omitempty"`
	Runtime   string            `json:"runtime,omitempty"`
	MemoryMB  int               `json:"memory_mb,omitempty"`
	VCPUs     int               `json:"vcpus,omitempty"`
	Network   bool              `json:"network"`
	Env       map[string]string `json:"env,omitempty"`
	OwnerID   string            `json:"owner_id,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

func newState(spec provider.SpawnSpec, created time.Time) state {
	return state{
		ID:        spec.ID,
		Image:     spec.Image,
		Runtime:   spec.Runtime,
		MemoryMB:  spec.MemoryMB,
		VCPUs:     spec.VCPUs,
		Network:   spec.Network,
		Env:       spec.Env,
		OwnerID:   spec.OwnerID,
		Metadata:  spec.Metadata,
		CreatedAt: created.UTC(),
	}
}

// writeState writes st to dir/state.json through a temporary file and a
// rename, so a reader never sees a partial file.
func writeState(dir string, st state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

// readState reads dir/state.json. A missing file gives an error matching
// os.ErrNotExist.
func readState(dir string) (state, error) {
	var st state
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// ListRuntimes returns the sandboxes recorded under Root, sorted by ID
// because os.ReadDir sorts by name. Directories without state.json are
// skipped, and a state.json that cannot be read or parsed fails the call.
func (p *Provider) ListRuntimes(ctx context.Context) ([]provider.RuntimeInfo, error) {
	entries, err := os.ReadDir(p.root)
	if err != nil {
		return nil, fmt.Errorf("mock: list sandboxes: %w: %w", provider.ErrUnavailable, err)
	}
	var runtimes []provider.RuntimeInfo
	for _, e := range entries {
		if !e.IsDir() || !validID.MatchString(e.Name()) {
			continue
		}
		st, err := readState(filepath.Join(p.root, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mock: list sandboxes: %w", err)
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
