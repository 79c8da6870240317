package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/pkg/client"
)

// dockerScheme prefixes an import source that names an image of the local
// Docker engine.
const dockerScheme = "docker://"

// imageBackend is the image store that an image command works on: the
// server's, through the API, or the one on this host, opened directly.
type imageBackend interface {
	List(ctx context.Context) ([]client.Image, error)
	Inspect(ctx context.Context, name string) (client.Image, error)
	Remove(ctx context.Context, name string) error
	Pull(ctx context.Context, ref string, progress func(client.PullProgress)) (client.Image, error)
	Prune(ctx context.Context) (int, error)
	Close() error
}

// imageFlags are the flags shared by the image commands.
type imageFlags struct {
	local      bool
	configFile string
	dataDir    string
}

func (a *app) newImageCommand() *cobra.Command {
	var flags imageFlags
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the images that sandboxes start from",
		Long: "Manage the image store that the native and PRoot providers unpack\n" +
			"sandboxes from. The Docker provider uses the Docker engine's images.\n\n" +
			"pull, ls, inspect, rm and prune go through the server at --server, so\n" +
			"they use the server's registry settings and work from any host. With\n" +
			"--local they open the store on this host directly, which works without\n" +
			"a running server. import always reads its source on this host and\n" +
			"writes to the store on this host; a running server sees the image at\n" +
			"once. The local store is found the way serve finds it: --config,\n" +
			"--data-dir, the STACYVM_* environment and images.dir.",
		Args: unknownSubcommand,
		RunE: showHelp,
	}

	f := cmd.PersistentFlags()
	f.BoolVar(&flags.local, "local", false, "work on the image store on this host instead of the server's")
	f.StringVar(&flags.configFile, "config", "", "YAML configuration file that locates the local image store, as for serve")
	f.StringVar(&flags.dataDir, "data-dir", "", "data directory whose images/ subdirectory is the local image store, as for serve")

	cmd.AddCommand(
		a.newImageImportCommand(&flags),
		a.newImagePullCommand(&flags),
		a.newImageListCommand(&flags),
		a.newImageInspectCommand(&flags),
		a.newImageRemoveCommand(&flags),
		a.newImagePruneCommand(&flags),
	)
	return cmd
}

func (a *app) newImageImportCommand(flags *imageFlags) *cobra.Command {
	var (
		fromDocker bool
		output     string
	)
	cmd := &cobra.Command{
		Use:   "import NAME (PATH | docker://REF)",
		Short: "Store an image from an OCI layout, a docker save archive or Docker",
		Long: "Store an image under NAME in the image store on this host, replacing\n" +
			"any image of that name. The source is one of:\n\n" +
			"  a directory       an OCI image layout; with several images in it, the\n" +
			"                    one whose ref name annotation is NAME or its tag\n" +
			"  a file            a 'docker save' archive, optionally gzip-compressed,\n" +
			"                    or an OCI image layout packed as a tar file\n" +
			"  docker://REF      the image REF of the local Docker engine\n\n" +
			"With --from-docker the second argument is a Docker image reference and\n" +
			"may be left out when it equals NAME. It prints the stored name.",
		Example: "  stacyvm image import stacyvm/minimal /var/cache/stacyvm-images/minimal\n" +
			"  stacyvm image import team/app:v1 app.tar\n" +
			"  stacyvm image import team/app:v1 docker://team/app:v1\n" +
			"  stacyvm image import --from-docker python:3.12-slim",
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON); err != nil {
				return err
			}
			name, source := args[0], ""
			if len(args) == 2 {
				source = args[1]
			}
			if source == "" && !fromDocker {
				return usageError(errors.New("missing PATH: name an OCI layout directory, an archive or docker://REF"))
			}

			store, err := openLocalStore(cmd, flags)
			if err != nil {
				return err
			}
			defer store.Close()

			img, err := importImage(cmd.Context(), store, name, source, fromDocker)
			if err != nil {
				return err
			}
			return a.printStoredImage(toClientImage(img), output)
		},
	}
	cmd.Flags().BoolVar(&fromDocker, "from-docker", false, "import the image REF (default NAME) of the local Docker engine")
	addOutputFlag(cmd, &output, outputJSON)
	return cmd
}

// importImage stores the image from source under name, choosing the import
// by the kind of source.
func importImage(ctx context.Context, store *image.Store, name, source string, fromDocker bool) (image.Image, error) {
	if ref, ok := strings.CutPrefix(source, dockerScheme); ok || fromDocker {
		if !ok {
			ref = source
		}
		if ref == "" {
			ref = name
		}
		return store.ImportDocker(ctx, name, ref)
	}

	info, err := os.Stat(source)
	if err != nil {
		return image.Image{}, usageError(fmt.Errorf("import source: %w; name an OCI layout directory, an archive or docker://REF", err))
	}
	if info.IsDir() {
		return store.ImportLayout(ctx, name, source)
	}
	return store.ImportArchive(ctx, name, source)
}

func (a *app) newImagePullCommand(flags *imageFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry into the image store",
		Long: "Pull REF from its registry and store it under REF, replacing any image\n" +
			"of that name. Progress goes to stderr and the stored name to stdout.\n" +
			"Through the server, the pull uses the server's network, credentials\n" +
			"and images.insecure_registries. With --local it uses this host's.\n" +
			"Credentials come from the Docker configuration (~/.docker/config.json\n" +
			"and its credential helpers). Registries on loopback use plain HTTP.",
		Example: "  stacyvm image pull python:3.12-slim\n" +
			"  stacyvm image pull registry.lan:5000/team/app:v1",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON); err != nil {
				return err
			}
			backend, err := a.imageBackend(cmd, flags)
			if err != nil {
				return err
			}
			defer backend.Close()

			bar := newPullProgress(a.stderr, args[0])
			img, err := backend.Pull(cmd.Context(), args[0], bar.update)
			bar.finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Digest: %s\n", img.Digest)
			return a.printStoredImage(img, output)
		},
	}
	addOutputFlag(cmd, &output, outputJSON)
	return cmd
}

func (a *app) newImageListCommand(flags *imageFlags) *cobra.Command {
	var (
		quiet  bool
		output string
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List stored images",
		Long:    "List stored images, sorted by name. -o wide shows whole digests.",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON, outputWide); err != nil {
				return err
			}
			backend, err := a.imageBackend(cmd, flags)
			if err != nil {
				return err
			}
			defer backend.Close()

			list, err := backend.List(cmd.Context())
			if err != nil {
				return err
			}
			switch {
			case quiet:
				for _, img := range list {
					fmt.Fprintln(a.stdout, img.Name)
				}
				return nil
			case output == outputJSON:
				if list == nil {
					list = []client.Image{}
				}
				return printJSON(a.stdout, list)
			}
			return printImageTable(a.stdout, list, output == outputWide, time.Now())
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only image names")
	addOutputFlag(cmd, &output, outputJSON, outputWide)
	return cmd
}

func (a *app) newImageInspectCommand(flags *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Print a stored image as JSON",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			backend, err := a.imageBackend(cmd, flags)
			if err != nil {
				return err
			}
			defer backend.Close()

			img, err := backend.Inspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(a.stdout, img)
		},
	}
}

func (a *app) newImageRemoveCommand(flags *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME [NAME...]",
		Aliases: []string{"remove", "rmi"},
		Short:   "Remove stored images",
		Long: "Remove the name of each image and print it. Sandboxes running from an\n" +
			"image are not affected. The image's data stays on disk until\n" +
			"'stacyvm image prune'. The command goes on after a failure and exits\n" +
			"non-zero when any image could not be removed.",
		Args: usageArgs(minArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			backend, err := a.imageBackend(cmd, flags)
			if err != nil {
				return err
			}
			defer backend.Close()

			failed := 0
			for _, name := range args {
				if err := backend.Remove(cmd.Context(), name); err != nil {
					fmt.Fprintf(a.stderr, "Error: %s\n", describe(err))
					failed++
					continue
				}
				fmt.Fprintln(a.stdout, name)
			}
			if failed > 0 {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
}

func (a *app) newImagePruneCommand(flags *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Delete image data that no stored image refers to",
		Long: "Delete the layers, configs and unpacked root filesystems that no stored\n" +
			"image refers to, and the leftovers of interrupted imports. A root\n" +
			"filesystem that a provider still holds for a sandbox is kept.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			backend, err := a.imageBackend(cmd, flags)
			if err != nil {
				return err
			}
			defer backend.Close()

			removed, err := backend.Prune(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed %d blobs and root filesystems\n", removed)
			return nil
		},
	}
}

// printStoredImage prints the image that import or pull stored: its name,
// or the whole image as JSON.
func (a *app) printStoredImage(img client.Image, output string) error {
	if output == outputJSON {
		return printJSON(a.stdout, img)
	}
	fmt.Fprintln(a.stdout, img.Name)
	return nil
}

// printImageTable prints one row per image. The short form shows the first
// 12 hex digits of each digest, which identify an image in practice.
func printImageTable(w io.Writer, list []client.Image, wide bool, now time.Time) error {
	t := newTable(w)
	fmt.Fprintln(t, "NAME\tDIGEST\tSIZE\tCREATED\tPLATFORM")
	for _, img := range list {
		digest := img.Digest
		if !wide {
			digest = shortDigest(digest)
		}
		created := "-"
		if !img.Created.IsZero() {
			created = humanDuration(now.Sub(img.Created)) + " ago"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", img.Name, digest, formatSize(img.Size), created, img.Platform())
	}
	return t.Flush()
}

func shortDigest(digest string) string {
	algorithm, hex, ok := strings.Cut(digest, ":")
	if !ok || len(hex) <= 12 {
		return digest
	}
	return algorithm + ":" + hex[:12]
}

// formatSize formats n bytes in decimal units, as `docker images` does:
// "812B", "4.2kB", "31.5MB", "1.2GB".
func formatSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	value, prefix := float64(n)/unit, 0
	for value >= unit && prefix < 3 {
		value /= unit
		prefix++
	}
	return fmt.Sprintf("%.1f%cB", value, "kMGT"[prefix])
}

// toClientImage converts a stored image to the API's form, which splits the
// platform into its parts.
func toClientImage(img image.Image) client.Image {
	parts := strings.SplitN(img.Platform, "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return client.Image{
		Name:         img.Name,
		Digest:       img.Digest,
		Size:         img.Size,
		Created:      img.Created,
		OS:           parts[0],
		Architecture: parts[1],
		Variant:      parts[2],
	}
}

// imageBackend returns the server's image store, or with --local the one on
// this host.
func (a *app) imageBackend(cmd *cobra.Command, flags *imageFlags) (imageBackend, error) {
	if flags.local {
		store, err := openLocalStore(cmd, flags)
		if err != nil {
			return nil, err
		}
		return localImages{store}, nil
	}
	c, err := a.client(cmd)
	if err != nil {
		return nil, err
	}
	return serverImages{c}, nil
}

// openLocalStore opens the image store on this host at the directory that
// serve would use with the same configuration file, environment and
// --data-dir.
func openLocalStore(cmd *cobra.Command, flags *imageFlags) (*image.Store, error) {
	overrides := map[string]string{}
	if cmd.Flag("data-dir").Changed {
		overrides["data_dir"] = flags.dataDir
	}
	cfg, err := config.Load(config.LoadOptions{File: flags.configFile, Flags: overrides})
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		text := strings.ReplaceAll(err.Error(), "\n", "\n  - ")
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("invalid configuration:\n  - %s", text)}
	}

	// serve creates the data directory readable only by its user, and so
	// does this when the store is the first thing in it.
	if cfg.Images.Dir == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
			return nil, fmt.Errorf("create data directory: %w; set another with --data-dir", err)
		}
	}
	return image.Open(cfg.ImageDir(), nil, image.WithInsecureRegistries(cfg.Images.InsecureRegistries...))
}

// serverImages is the image store of the server, through the API.
type serverImages struct{ c *client.Client }

func (s serverImages) List(ctx context.Context) ([]client.Image, error) {
	return s.c.ListImages(ctx)
}

func (s serverImages) Inspect(ctx context.Context, name string) (client.Image, error) {
	return s.c.InspectImage(ctx, name)
}

func (s serverImages) Remove(ctx context.Context, name string) error {
	return s.c.RemoveImage(ctx, name)
}

func (s serverImages) Pull(ctx context.Context, ref string, progress func(client.PullProgress)) (client.Image, error) {
	return s.c.PullImage(ctx, ref, progress)
}

func (s serverImages) Prune(ctx context.Context) (int, error) { return s.c.PruneImages(ctx) }

func (s serverImages) Close() error { return nil }

// localImages is an image store on this host, opened directly.
type localImages struct{ store *image.Store }

func (l localImages) List(ctx context.Context) ([]client.Image, error) {
	images, err := l.store.List(ctx)
	if err != nil {
		return nil, err
	}
	list := make([]client.Image, len(images))
	for i, img := range images {
		list[i] = toClientImage(img)
	}
	return list, nil
}

func (l localImages) Inspect(ctx context.Context, name string) (client.Image, error) {
	img, err := l.store.Inspect(ctx, name)
	return toClientImage(img), err
}

func (l localImages) Remove(ctx context.Context, name string) error {
	return l.store.Remove(ctx, name)
}

func (l localImages) Pull(ctx context.Context, ref string, progress func(client.PullProgress)) (client.Image, error) {
	var report func(image.Progress)
	if progress != nil {
		report = func(p image.Progress) {
			progress(client.PullProgress{Name: p.Name, Complete: p.Complete, Total: p.Total})
		}
	}
	img, err := l.store.Pull(ctx, ref, report)
	return toClientImage(img), err
}

func (l localImages) Prune(ctx context.Context) (int, error) { return l.store.GC(ctx) }

func (l localImages) Close() error { return l.store.Close() }

// pullProgress shows the progress of a pull on w. On a terminal it keeps
// one line up to date. Elsewhere, such as in CI logs, it prints a line at
// the first update and each time another tenth of the image is stored.
type pullProgress struct {
	w        io.Writer
	ref      string
	terminal bool
	printed  bool
	lastStep int64 // tenths printed so far, for non-terminal output
}

func newPullProgress(w io.Writer, ref string) *pullProgress {
	p := &pullProgress{w: w, ref: ref, lastStep: -1}
	if f, ok := w.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *pullProgress) update(u client.PullProgress) {
	percent := int64(100)
	if u.Total > 0 {
		percent = min(100, u.Complete*100/u.Total)
	}
	line := fmt.Sprintf("Pulling %s: %3d%% (%s of %s)", p.ref, percent, formatSize(u.Complete), formatSize(u.Total))

	if p.terminal {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.printed = true
		return
	}
	if step := percent / 10; step > p.lastStep {
		p.lastStep = step
		fmt.Fprintln(p.w, line)
		p.printed = true
	}
}

// finish ends the terminal line, so that what follows starts on a line of
// its own.
func (p *pullProgress) finish() {
	if p.terminal && p.printed {
		fmt.Fprintln(p.w)
	}
}
