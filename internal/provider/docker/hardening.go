package docker

import (
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// capabilities are the Linux capabilities a sandbox keeps; all others are
// dropped. They are what root in an ordinary Linux user environment needs
// to install packages, own files and run services: change file owners and
// modes, read and write files whatever their modes, switch users, signal
// processes and bind ports below 1024. Docker's default set also has
// AUDIT_WRITE, MKNOD, NET_RAW, SETFCAP, SETPCAP and SYS_CHROOT; they are
// dropped, so no device nodes, raw packets, file capabilities or chroot.
var capabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FOWNER",
	"CAP_FSETID",
	"CAP_KILL",
	"CAP_NET_BIND_SERVICE",
	"CAP_SETGID",
	"CAP_SETUID",
}

// tmpfsOptions are the mount options of the writable tmpfs mounts of a
// read-only root file system. Their pages count against the memory limit.
const tmpfsOptions = "rw,nosuid,nodev,mode=1777"

// containerConfig returns the container and host configuration of spec:
// the agent as PID 1, the hardening and limits, the mounts and the labels.
func (p *Provider) containerConfig(spec provider.SpawnSpec, ref, runtime string, created time.Time) (*container.Config, *container.HostConfig) {
	config := &container.Config{
		Image:      ref,
		Entrypoint: []string{agentMountPath},
		Cmd:        []string{"--listen", "unix:" + agent.DefaultSocketPath},
		Env:        sortedEnv(spec.Env),
		WorkingDir: workspaceDir,
		// The agent runs as root whatever the image's USER, so that it can
		// create its socket and serve every path. Commands run as the
		// agent's user.
		User:   "0:0",
		Labels: p.labels(spec, ref, runtime, created),
	}

	network := "none"
	if spec.Network {
		network = p.cfg.NetworkName
	}
	noInit := false
	hostConfig := &container.HostConfig{
		Runtime:     runtime,
		NetworkMode: container.NetworkMode(network),
		CapDrop:     []string{"ALL"},
		CapAdd:      capabilities,
		SecurityOpt: []string{"no-new-privileges:true"},
		// The agent is PID 1 and reaps zombies itself; this overrides an
		// engine configured with "init": true.
		Init:           &noInit,
		ReadonlyRootfs: p.cfg.ReadOnlyRootfs,
		Resources:      p.resources(spec),
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: p.agentBin, Target: agentMountPath, ReadOnly: true},
			{Type: mount.TypeBind, Source: p.sandboxDir(spec.ID), Target: agent.SandboxDir},
		},
	}
	if p.cfg.ReadOnlyRootfs {
		hostConfig.Tmpfs = map[string]string{"/tmp": tmpfsOptions, workspaceDir: tmpfsOptions}
	}
	return config, hostConfig
}

// resources returns the limits of spec. Swap equals memory, so a sandbox
// gets no swap, and the pids limit applies to every sandbox.
func (p *Provider) resources(spec provider.SpawnSpec) container.Resources {
	pids := p.cfg.PidsLimit
	r := container.Resources{PidsLimit: &pids}
	if spec.MemoryMB > 0 {
		r.Memory = int64(spec.MemoryMB) << 20
		r.MemorySwap = r.Memory
	}
	if spec.VCPUs > 0 {
		r.NanoCPUs = int64(spec.VCPUs) * 1e9
	}
	return r
}

// Labels of a sandbox's container. ListRuntimes reads them back for
// adoption.
const (
	labelManaged  = "stacyvm.managed"
	labelStateDir = "stacyvm.state_dir"
	labelID       = "stacyvm.id"
	labelOwner    = "stacyvm.owner"
	labelImage    = "stacyvm.image"
	labelRuntime  = "stacyvm.runtime"
	labelMemoryMB = "stacyvm.memory_mb"
	labelVCPUs    = "stacyvm.vcpus"
	labelNetwork  = "stacyvm.network"
	labelCreated  = "stacyvm.created"
	labelMeta     = "stacyvm.meta." // prefix of one label per metadata key
)

// labels returns the labels of spec's container, whose image is ref.
func (p *Provider) labels(spec provider.SpawnSpec, ref, runtime string, created time.Time) map[string]string {
	labels := map[string]string{
		labelManaged:  "true",
		labelStateDir: p.cfg.StateDir,
		labelID:       spec.ID,
		labelOwner:    spec.OwnerID,
		labelImage:    ref,
		labelRuntime:  runtime,
		labelMemoryMB: strconv.Itoa(spec.MemoryMB),
		labelVCPUs:    strconv.Itoa(spec.VCPUs),
		labelNetwork:  strconv.FormatBool(spec.Network),
		labelCreated:  created.UTC().Format(time.RFC3339Nano),
	}
	for k, v := range spec.Metadata {
		labels[labelMeta+k] = v
	}
	return labels
}

// owns reports whether labels mark the container of sandbox id created by
// a provider with this StateDir.
func (p *Provider) owns(labels map[string]string, id string) bool {
	return labels[labelManaged] == "true" && labels[labelStateDir] == p.cfg.StateDir && labels[labelID] == id
}
