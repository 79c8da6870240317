package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	dockerimage "github.com/docker/docker/api/types/image"

	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// Spawn creates and starts the container of spec and returns once its
// agent has responded. The steps are, in order: check the spec and the
// runtime, make sure the image is in the engine (pulling it when missing),
// create the host directory, create and start the container, and wait for
// the agent. When a step fails, the steps done so far are undone, so
// nothing is left behind unless an undo step fails too, which is logged.
//
// Errors: ErrInvalidArgument for a bad ID, an ID in use, a runtime that is
// not offered or a network on a runtime without one; an error matching
// image.ErrNotFound for an image the engine has not and cannot pull;
// ErrUnavailable when the engine is down or the agent does not respond.
func (p *Provider) Spawn(ctx context.Context, spec provider.SpawnSpec) (err error) {
	started := time.Now()
	if !validID.MatchString(spec.ID) {
		return fmt.Errorf("docker: sandbox ID %q must match [a-z0-9-]{1,64}: %w", spec.ID, provider.ErrInvalidArgument)
	}
	runtime, err := p.selectRuntime(ctx, spec)
	if err != nil {
		return err
	}
	ref := spec.Image
	if ref == "" {
		ref = p.cfg.DefaultImage
	}
	if err := p.ensureImage(ctx, ref); err != nil {
		return err
	}

	var undo cleanupStack
	defer func() {
		if err != nil {
			undo.run(p, spec.ID, err)
		}
	}()

	dir := p.sandboxDir(spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("docker: sandbox %s already exists: %w", spec.ID, provider.ErrInvalidArgument)
		}
		return fmt.Errorf("docker: create host directory of sandbox %s: %w", spec.ID, err)
	}
	undo.push("remove host directory", func(context.Context) error { return os.RemoveAll(dir) })

	config, hostConfig := p.containerConfig(spec, ref, runtime, started)
	created, err := p.engine.ContainerCreate(ctx, config, hostConfig, nil, nil, containerName(spec.ID))
	if cerrdefs.IsConflict(err) {
		return fmt.Errorf("docker: container %s already exists: %w", containerName(spec.ID), provider.ErrInvalidArgument)
	}
	// The container is removed by name, because a create whose response
	// was lost to a cancelled ctx may still have made it.
	undo.push("remove container", func(ctx context.Context) error { return p.removeContainer(ctx, spec.ID) })
	if err != nil {
		return p.engineError("create container of sandbox "+spec.ID, err)
	}

	if err := p.engine.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return p.engineError("start container of sandbox "+spec.ID, err)
	}
	if _, err := p.attach(ctx, spec.ID, attachNew); err != nil {
		return err
	}

	p.log.Info("sandbox spawned", "sandbox_id", spec.ID, "image", ref, "runtime", runtime,
		"duration_ms", time.Since(started).Milliseconds())
	return nil
}

// selectRuntime returns the runtime of spec, checking that it is offered,
// registered in the engine and, when spec requests a network, able to give
// one.
func (p *Provider) selectRuntime(ctx context.Context, spec provider.SpawnSpec) (string, error) {
	name := spec.Runtime
	if name == "" {
		name = p.cfg.Runtime
	}
	if !slices.Contains(p.cfg.Runtimes, name) {
		return "", fmt.Errorf("docker: runtime %q is not offered; available runtimes: %s: %w",
			name, strings.Join(p.offeredRuntimes(p.cachedRuntimes()), ", "), provider.ErrInvalidArgument)
	}

	registered, err := p.runtimes(ctx, false)
	if err == nil && !slices.Contains(registered, name) {
		// The engine may have registered it since the last look.
		registered, err = p.runtimes(ctx, true)
	}
	if err != nil {
		return "", err
	}
	if !slices.Contains(registered, name) {
		return "", fmt.Errorf("docker: runtime %q is not registered in the Docker engine; available runtimes: %s; "+
			"register it under runtimes in /etc/docker/daemon.json: %w",
			name, strings.Join(p.offeredRuntimes(registered), ", "), provider.ErrInvalidArgument)
	}

	if spec.Network && slices.Contains(p.cfg.OfflineRuntimes, name) {
		return "", fmt.Errorf("docker: runtime %q cannot give a sandbox a network; spawn without network, "+
			"or with a runtime such as %q: %w", name, DefaultRuntime, provider.ErrInvalidArgument)
	}
	return name, nil
}

// ensureImage makes sure the engine has the image ref, pulling it when
// missing.
func (p *Provider) ensureImage(ctx context.Context, ref string) error {
	_, err := p.engine.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return p.engineError("inspect image "+ref, err)
	}

	p.log.Info("image not in the engine; pulling it", "image", ref)
	pullErr := p.pull(ctx, ref)
	if pullErr == nil {
		return nil
	}
	if errors.Is(pullErr, provider.ErrUnavailable) || ctx.Err() != nil {
		return pullErr
	}
	p.log.Warn("image pull failed", "image", ref, "error", pullErr)
	return fmt.Errorf("docker: image %s is not in the Docker engine and pulling it failed (%v); "+
		"load it with `docker load -i FILE`, or build and load the StacyVM base images with `make images`: %w",
		ref, pullErr, image.ErrNotFound)
}

// pull pulls ref and logs its progress at debug level.
func (p *Provider) pull(ctx context.Context, ref string) error {
	started := time.Now()
	progress, err := p.engine.ImagePull(ctx, ref, dockerimage.PullOptions{})
	if err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return fmt.Errorf("docker: image name %q: %w: %w", ref, provider.ErrInvalidArgument, err)
		}
		return p.engineError("pull image "+ref, err)
	}
	defer progress.Close()

	dec := json.NewDecoder(progress)
	for {
		var msg struct {
			Status   string `json:"status"`
			ID       string `json:"id"`
			Progress string `json:"progress"`
			Error    string `json:"error"`
		}
		err := dec.Decode(&msg)
		if err == io.EOF {
			break
		}
		if err != nil {
			return p.engineError("pull image "+ref, err)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
		p.log.Debug("image pull", "image", ref, "layer", msg.ID, "status", msg.Status, "progress", msg.Progress)
	}
	p.log.Info("image pulled", "image", ref, "duration_ms", time.Since(started).Milliseconds())
	return nil
}

// removeContainer force-removes the container of sandbox id with its
// anonymous volumes. A container that does not exist is not an error.
func (p *Provider) removeContainer(ctx context.Context, id string) error {
	err := p.engine.ContainerRemove(ctx, containerName(id), container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	// A concurrent removal of the same container is in progress; the
	// container is gone once it finishes.
	if cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress") {
		return p.waitRemoved(ctx, id)
	}
	return p.engineError("remove container "+containerName(id), err)
}

// waitRemoved waits until the container of sandbox id no longer exists.
func (p *Provider) waitRemoved(ctx context.Context, id string) error {
	for {
		_, err := p.engine.ContainerInspect(ctx, containerName(id))
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return p.engineError("inspect container "+containerName(id), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("docker: wait for the removal of %s: %w", containerName(id), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cleanupStack holds the undo steps of a partly created sandbox.
type cleanupStack struct {
	steps []cleanupStep
}

type cleanupStep struct {
	name string
	undo func(context.Context) error
}

func (s *cleanupStack) push(name string, undo func(context.Context) error) {
	s.steps = append(s.steps, cleanupStep{name: name, undo: undo})
}

// run undoes the steps in reverse order under its own timeout, because the
// spawn's context may be what ended it, and logs the failures.
func (s *cleanupStack) run(p *Provider, id string, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, step := range slices.Backward(s.steps) {
		if err := step.undo(ctx); err != nil {
			p.log.Error("cleanup of a failed spawn failed", "sandbox_id", id, "step", step.name,
				"error", err, "spawn_error", cause)
		}
	}
	if sb := p.cached(id); sb != nil {
		p.forget(sb)
	}
}

// sortedEnv returns env as sorted KEY=VALUE pairs.
func sortedEnv(env map[string]string) []string {
	pairs := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		pairs = append(pairs, k+"="+env[k])
	}
	return pairs
}
