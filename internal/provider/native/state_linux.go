package native

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Files and directories of a sandbox's host directory, StateDir/<id>.
const (
	stateFile   = "state.json"  // the state, written last: a directory without it is incomplete
	consoleFile = "console.log" // the setup step's and the agent's stderr, and lifecycle lines
	runDir      = "run"         // mounted at /run/stacyvm; holds the agent's socket
	rootDir     = "rootfs"      // empty mount point of the root inside the sandbox's namespace
	layerDir    = "layer"       // image sandboxes: the overlay's upper and work directories
	privateDir  = "private"     // host view sandboxes: workspace, tmp, home and root
	socketName  = "agent.sock"
)

// state is the content of state.json: the spawn request, which reconcile
// lists for adoption and commands need after a restart, and the identity
// of the sandbox's init process. It includes Env, so the file is readable
// by the server's user only.
type state struct {
	ID        string            `json:"id"`
	Image     string            `json:"image"`      // as requested, HostImage for the host view
	ImageRoot string            `json:"image_root"` // unpacked image tree; empty for the host view
	MemoryMB  int               `json:"memory_mb,omitempty"`
	VCPUs     int               `json:"vcpus,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	OwnerID   string            `json:"owner_id,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	CreatedAt time.Time         `json:"created_at"`

	// Pid, StartTime and BootID identify the init process: its pid on the
	// host, its start time in clock ticks since boot, and the boot.
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	BootID    string `json:"boot_id"`

	Cgroups cgroupPaths `json:"cgroups"`
}

func (st state) runtimeInfo(running bool) provider.RuntimeInfo {
	return provider.RuntimeInfo{
		ID:        st.ID,
		Image:     st.Image,
		MemoryMB:  st.MemoryMB,
		VCPUs:     st.VCPUs,
		OwnerID:   st.OwnerID,
		Metadata:  st.Metadata,
		CreatedAt: st.CreatedAt,
		Running:   running,
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
