package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/stacyvm/stacyvm/pkg/client"
)

// outputYAML is the -o value of commands that print templates as YAML.
const outputYAML = "yaml"

// maxTemplateFile bounds the template file that create reads.
const maxTemplateFile = 1 << 20

func (a *app) newTemplatesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "templates",
		Aliases: []string{"template", "tpl"},
		Short:   "Manage spawn templates",
		Long: "Manage spawn templates: named sets of spawn settings (image, resources, env,\n" +
			"setup commands) stored on the server. Spawn from one with\n" +
			"'stacyvm templates spawn NAME' or 'stacyvm spawn --template NAME'.",
		Args: unknownSubcommand,
		RunE: showHelp,
	}
	cmd.AddCommand(
		a.newTemplatesListCommand(),
		a.newTemplatesCreateCommand(),
		a.newTemplatesGetCommand(),
		a.newTemplatesRemoveCommand(),
		a.newTemplatesSpawnCommand(),
	)
	return cmd
}

func (a *app) newTemplatesListCommand() *cobra.Command {
	var (
		quiet  bool
		output string
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List templates",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, outputJSON, outputYAML); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.ListTemplates(cmd.Context())
			if err != nil {
				return err
			}
			if list == nil {
				list = []client.Template{}
			}

			switch {
			case quiet:
				for _, t := range list {
					fmt.Fprintln(a.stdout, t.Name)
				}
				return nil
			case output == outputJSON:
				return printJSON(a.stdout, list)
			case output == outputYAML:
				files := make([]templateFile, len(list))
				for i, t := range list {
					files[i] = toTemplateFile(t)
				}
				return printYAML(a.stdout, files)
			}
			return printTemplateTable(a.stdout, list)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only template names")
	addOutputFlag(cmd, &output, outputJSON, outputYAML)
	return cmd
}

// printTemplateTable prints one row per template.
func printTemplateTable(w io.Writer, list []client.Template) error {
	t := newTable(w)
	fmt.Fprintln(t, "NAME\tIMAGE\tPROVIDER\tMEMORY\tCPUS\tTTL\tSETUP\tDESCRIPTION")
	for _, tpl := range list {
		memory, cpus, ttl := "-", "-", "-"
		if tpl.MemoryMB > 0 {
			memory = fmt.Sprintf("%dMiB", tpl.MemoryMB)
		}
		if tpl.VCPUs > 0 {
			cpus = fmt.Sprint(tpl.VCPUs)
		}
		if tpl.TTL > 0 {
			ttl = humanDuration(tpl.TTL)
		}
		description, _, _ := strings.Cut(tpl.Description, "\n")
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", tpl.Name, orDash(tpl.Image), orDash(tpl.Provider),
			memory, cpus, ttl, len(tpl.Setup), orDash(description))
	}
	return t.Flush()
}

func (a *app) newTemplatesCreateCommand() *cobra.Command {
	var (
		file   string
		update bool
	)
	cmd := &cobra.Command{
		Use:   "create -f FILE",
		Short: "Create a template from a YAML file",
		Long: "Create a template from a YAML file whose keys are the fields of the REST API:\n" +
			"name, description, image, provider, runtime, memory_mb, vcpus, ttl, network,\n" +
			"env, setup, setup_timeout and metadata. Durations are Go duration strings\n" +
			"such as 30m. '-f -' reads the file from standard input.",
		Example: "  stacyvm templates create -f python.yaml\n" +
			"  stacyvm templates get python -o yaml > python.yaml && stacyvm templates create -f python.yaml --update\n\n" +
			"  # python.yaml\n" +
			"  name: python\n" +
			"  image: python:3.12-slim\n" +
			"  memory_mb: 1024\n" +
			"  ttl: 1h\n" +
			"  env:\n" +
			"    PIP_NO_CACHE_DIR: \"1\"\n" +
			"  setup:\n" +
			"    - pip install pytest",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError(errors.New("missing -f FILE: name the template's YAML file, or - for standard input"))
			}
			tpl, err := a.readTemplateFile(file)
			if err != nil {
				return err
			}

			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			verb := "created"
			if update {
				verb = "updated"
				_, err = c.UpdateTemplate(cmd.Context(), tpl)
			} else {
				_, err = c.CreateTemplate(cmd.Context(), tpl)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%s template %s\n", verb, tpl.Name)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML file of the template, or - for standard input")
	cmd.Flags().BoolVar(&update, "update", false, "replace an existing template of the same name instead of creating one")
	return cmd
}

func (a *app) newTemplatesGetCommand() *cobra.Command {
	output := outputYAML
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a template as YAML or JSON",
		Long: "Print a template. The YAML form is the file format of 'templates create',\n" +
			"so the output can be edited and loaded again.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != outputYAML && output != outputJSON {
				return usageError(fmt.Errorf("invalid --output %q: use yaml or json", output))
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			tpl, err := c.GetTemplate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == outputJSON {
				return printJSON(a.stdout, tpl)
			}
			return printYAML(a.stdout, toTemplateFile(tpl))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", outputYAML, "output format: yaml or json")
	return cmd
}

func (a *app) newTemplatesRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"delete"},
		Short:   "Delete templates",
		Long:    "Delete templates. Sandboxes spawned from them keep running.",
		Args:    usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				if err := c.DeleteTemplate(cmd.Context(), name); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(a.stdout, name)
			}
			return errors.Join(errs...)
		},
	}
}

func (a *app) newTemplatesSpawnCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "spawn NAME",
		Short: "Create a sandbox from a template and print its ID",
		Long: "Create a sandbox from a template and print its ID once it is running and\n" +
			"its setup commands have succeeded. Flags override the template's fields;\n" +
			"--env and --meta are merged into the template's, and --setup replaces its\n" +
			"setup commands.",
		Example: "  stacyvm templates spawn python --memory 2048 -e DEBUG=1\n" +
			"  stacyvm templates spawn python --idempotency-key \"$JOB_ID\" -o json",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.spawnFromTemplate(cmd, args[0])
		},
	}

	f := cmd.Flags()
	f.String("image", "", "image reference (default: the template's)")
	f.String("provider", "", "provider name (default: the template's)")
	f.String("runtime", "", "runtime variant of the provider (default: the template's)")
	f.Int("memory", 0, "memory limit in MiB (default: the template's)")
	f.Int("cpus", 0, "CPU limit in whole CPUs (default: the template's)")
	f.Duration("ttl", 0, "lifetime before the server destroys the sandbox (default: the template's)")
	f.String("owner", "", "owner ID, for filtering and per-owner limits")
	f.Bool("network", false, "give the sandbox network access; --network=false turns off the template's")
	f.StringArray("meta", nil, "metadata label KEY=VALUE, merged into the template's (repeatable)")
	f.StringArrayP("env", "e", nil, "environment variable KEY=VALUE, merged into the template's (repeatable)")
	f.StringArray("setup", nil, "setup command that replaces the template's list (repeatable, run in order)")
	f.Duration("setup-timeout", 0, "bound of each setup command (default: the template's, else the exec default)")
	f.String("idempotency-key", "", "key that makes a retry return the first request's sandbox instead of a new one")
	var output string
	addOutputFlag(cmd, &output, outputJSON)
	return cmd
}

// withTemplateFlag adds --template to the spawn command. With it, spawn
// creates the sandbox from that template, and the spawn flags override the
// template's fields like those of 'templates spawn'.
func (a *app) withTemplateFlag(spawn *cobra.Command) *cobra.Command {
	var name string
	spawn.Flags().StringVar(&name, "template", "", "spawn from this template; the other flags override its fields")
	spawn.Example += "\n  stacyvm spawn --template python --memory 2048"

	run := spawn.RunE
	spawn.RunE = func(cmd *cobra.Command, args []string) error {
		if name == "" {
			return run(cmd, args)
		}
		return a.spawnFromTemplate(cmd, name)
	}
	return spawn
}

// spawnFromTemplate spawns from the template name with the overrides set on
// cmd's flags and prints the sandbox's ID, or the sandbox as JSON with -o
// json. cmd is 'templates spawn' or 'spawn --template'; flags that only the
// first has are skipped for the second.
func (a *app) spawnFromTemplate(cmd *cobra.Command, name string) error {
	f := cmd.Flags()
	output, _ := f.GetString("output")
	if err := checkOutput(output, outputJSON); err != nil {
		return err
	}
	req, err := templateOverrides(cmd)
	if err != nil {
		return err
	}

	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	sb, err := c.SpawnTemplate(cmd.Context(), name, req)
	if err != nil {
		return err
	}
	if output == outputJSON {
		return printJSON(a.stdout, sb)
	}
	_, err = fmt.Fprintln(a.stdout, sb.ID)
	return err
}

// templateOverrides reads the override flags of a template spawn from cmd.
func templateOverrides(cmd *cobra.Command) (client.TemplateSpawnRequest, error) {
	f := cmd.Flags()
	var req client.TemplateSpawnRequest
	req.Image, _ = f.GetString("image")
	req.Provider, _ = f.GetString("provider")
	req.Runtime, _ = f.GetString("runtime")
	req.MemoryMB, _ = f.GetInt("memory")
	req.VCPUs, _ = f.GetInt("cpus")
	req.TTL, _ = f.GetDuration("ttl")
	req.OwnerID, _ = f.GetString("owner")
	req.Setup, _ = f.GetStringArray("setup")
	req.SetupTimeout, _ = f.GetDuration("setup-timeout")
	req.IdempotencyKey, _ = f.GetString("idempotency-key")
	if f.Changed("network") {
		network, _ := f.GetBool("network")
		req.Network = &network
	}

	if req.TTL < 0 {
		return req, usageError(fmt.Errorf("invalid --ttl %s: use a positive duration such as 30m", req.TTL))
	}
	if req.SetupTimeout < 0 {
		return req, usageError(fmt.Errorf("invalid --setup-timeout %s: use a positive duration such as 5m", req.SetupTimeout))
	}
	if err := checkResourceFlags(req.MemoryMB, req.VCPUs); err != nil {
		return req, err
	}
	meta, _ := f.GetStringArray("meta")
	env, _ := f.GetStringArray("env")
	var err error
	if req.Metadata, err = parsePairs("--meta", meta); err != nil {
		return req, err
	}
	if req.Env, err = parsePairs("--env", env); err != nil {
		return req, err
	}
	return req, nil
}

// templateFile is the YAML form of a template, with the keys of the REST
// API. created_at and updated_at are printed by get and ignored by create.
type templateFile struct {
	Name         string            `yaml:"name"`
	Description  string            `yaml:"description,omitempty"`
	Image        string            `yaml:"image,omitempty"`
	Provider     string            `yaml:"provider,omitempty"`
	Runtime      string            `yaml:"runtime,omitempty"`
	MemoryMB     int               `yaml:"memory_mb,omitempty"`
	VCPUs        int               `yaml:"vcpus,omitempty"`
	TTL          string            `yaml:"ttl,omitempty"`
	Network      bool              `yaml:"network,omitempty"`
	Env          map[string]string `yaml:"env,omitempty"`
	Setup        []string          `yaml:"setup,omitempty"`
	SetupTimeout string            `yaml:"setup_timeout,omitempty"`
	Metadata     map[string]string `yaml:"metadata,omitempty"`
	CreatedAt    string            `yaml:"created_at,omitempty"`
	UpdatedAt    string            `yaml:"updated_at,omitempty"`
}

func toTemplateFile(t client.Template) templateFile {
	file := templateFile{
		Name:        t.Name,
		Description: t.Description,
		Image:       t.Image,
		Provider:    t.Provider,
		Runtime:     t.Runtime,
		MemoryMB:    t.MemoryMB,
		VCPUs:       t.VCPUs,
		Network:     t.Network,
		Env:         t.Env,
		Setup:       t.Setup,
		Metadata:    t.Metadata,
	}
	if t.TTL != 0 {
		file.TTL = t.TTL.String()
	}
	if t.SetupTimeout != 0 {
		file.SetupTimeout = t.SetupTimeout.String()
	}
	if !t.CreatedAt.IsZero() {
		file.CreatedAt = t.CreatedAt.UTC().Format(time.RFC3339)
	}
	if !t.UpdatedAt.IsZero() {
		file.UpdatedAt = t.UpdatedAt.UTC().Format(time.RFC3339)
	}
	return file
}

// readTemplateFile reads and parses a template file, or standard input for
// "-". Unknown keys are errors, so a misspelled key fails loudly.
func (a *app) readTemplateFile(path string) (client.Template, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(a.stdin, maxTemplateFile+1))
	} else {
		data, err = readFileLimited(path, maxTemplateFile+1)
	}
	if err != nil {
		return client.Template{}, fmt.Errorf("read template file: %w", err)
	}
	if len(data) > maxTemplateFile {
		return client.Template{}, fmt.Errorf("template file %s is larger than %d bytes", path, maxTemplateFile)
	}

	var file templateFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		if errors.Is(err, io.EOF) {
			return client.Template{}, fmt.Errorf("template file %s is empty", path)
		}
		return client.Template{}, fmt.Errorf("template file %s: %w", path, err)
	}
	return file.toTemplate(path)
}

// toTemplate converts the parsed file; path names the file in errors.
func (file templateFile) toTemplate(path string) (client.Template, error) {
	if file.Name == "" {
		return client.Template{}, fmt.Errorf("template file %s has no name: add a name key", path)
	}
	t := client.Template{
		Name:        file.Name,
		Description: file.Description,
		Image:       file.Image,
		Provider:    file.Provider,
		Runtime:     file.Runtime,
		MemoryMB:    file.MemoryMB,
		VCPUs:       file.VCPUs,
		Network:     file.Network,
		Env:         file.Env,
		Setup:       file.Setup,
		Metadata:    file.Metadata,
	}
	durations := []struct {
		key   string
		value string
		dst   *time.Duration
	}{{"ttl", file.TTL, &t.TTL}, {"setup_timeout", file.SetupTimeout, &t.SetupTimeout}}
	for _, d := range durations {
		if d.value == "" {
			continue
		}
		parsed, err := time.ParseDuration(d.value)
		if err != nil {
			return client.Template{}, fmt.Errorf("template file %s: %s %q is not a Go duration such as 30m or 1h30m", path, d.key, d.value)
		}
		*d.dst = parsed
	}
	return t, nil
}

// readFileLimited reads at most limit bytes of the file at path.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// printYAML writes v as YAML with two-space indentation.
func printYAML(w io.Writer, v any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return enc.Close()
}
