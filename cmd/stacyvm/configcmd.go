package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
)

func (a *app) newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the server configuration",
		Args:  unknownSubcommand,
		RunE:  showHelp,
	}
	cmd.AddCommand(a.newConfigValidateCommand())
	return cmd
}

func (a *app) newConfigValidateCommand() *cobra.Command {
	var configFile string
	defaults := config.Default()
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration that serve would run with",
		Long: "Load the configuration as serve does, from flags, then STACYVM_*\n" +
			"environment variables, then the YAML file, then the defaults, and check\n" +
			"it. The serve flags are accepted, so a command line can be checked as it\n" +
			"is.\n\n" +
			"Prints \"configuration is valid\" and exits with 0, or lists every problem\n" +
			"and exits with 2. Settings for unknown providers are reported as\n" +
			"warnings, because serve only warns about them too.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.validateConfig(cmd, configFile)
		},
	}

	// The same flags as serve, so that serveFlags finds them.
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file (env "+config.EnvConfigFile+"; default ./"+config.DefaultFile+" when present)")
	f.String("listen", defaults.Listen, "HTTP listen address, host:port")
	f.String("data-dir", "", "directory for the database and sandbox files")
	f.String("default-provider", defaults.DefaultProvider, `provider for spawns that name none, or "auto"`)
	f.Bool("insecure-no-auth", false, "allow a non-loopback listen address without an API key")
	f.String("log-format", defaults.Log.Format, "log format: text or json")
	f.String("log-level", defaults.Log.Level, "log level: debug, info, warn or error")
	return cmd
}

// validateConfig loads and checks the configuration and reports the result.
func (a *app) validateConfig(cmd *cobra.Command, file string) error {
	flags := make(map[string]string)
	for _, sf := range serveFlags {
		if f := cmd.Flag(sf.flag); f != nil && f.Changed {
			flags[sf.key] = f.Value.String()
		}
	}

	cfg, err := config.Load(config.LoadOptions{File: file, Flags: flags})
	// Load returns what it could read beside its problems, so the value
	// checks run on that too and every problem is reported at once.
	problems := flatten(err)
	problems = append(problems, flatten(cfg.Validate())...)
	problems = append(problems, checkProviderNames(cfg)...)
	for _, name := range unknownProviderSections(cfg) {
		fmt.Fprintf(a.stderr, "warning: providers.%s configures a provider that this build does not have; "+
			"known providers: %s\n", name, strings.Join(knownProviders(), ", "))
	}

	if len(problems) > 0 {
		lines := make([]string, len(problems))
		for i, p := range problems {
			lines[i] = "  - " + p.Error()
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("configuration is invalid (%s):\n%s",
			plural(len(problems), "problem"), strings.Join(lines, "\n"))}
	}
	fmt.Fprintf(a.stdout, "configuration is valid (%s)\n", configSource(file))
	return nil
}

// flatten returns the errors joined in err, one per problem, or nil for a
// nil err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var list []error
		for _, e := range joined.Unwrap() {
			list = append(list, flatten(e)...)
		}
		return list
	}
	return []error{err}
}

// knownProviders returns the names of the providers this build can
// register.
func knownProviders() []string {
	names := make([]string, len(providerFactories))
	for i, f := range providerFactories {
		names[i] = f.name
	}
	return names
}

// checkProviderNames reports a named default provider that this build
// cannot register, which makes serve exit at start.
func checkProviderNames(cfg config.Config) []error {
	name := cfg.DefaultProvider
	if name == orchestrator.AutoProvider || strings.TrimSpace(name) == "" || slices.Contains(knownProviders(), name) {
		return nil
	}
	return []error{fmt.Errorf("default_provider %q is not a provider of this build: use auto or one of %s",
		name, strings.Join(knownProviders(), ", "))}
}

// unknownProviderSections returns the sorted names under providers that
// no factory uses.
func unknownProviderSections(cfg config.Config) []string {
	var unknown []string
	for name := range cfg.Providers {
		if !slices.Contains(knownProviders(), name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	return unknown
}

// configSource names where Load read the file from, as its documentation
// describes: the --config flag, then STACYVM_CONFIG, then ./stacyvm.yaml
// when it exists.
func configSource(file string) string {
	if file != "" {
		return "file " + file
	}
	if env := os.Getenv(config.EnvConfigFile); env != "" {
		return "file " + env + " from " + config.EnvConfigFile
	}
	if _, err := os.Stat(config.DefaultFile); err == nil || !errors.Is(err, os.ErrNotExist) {
		return "file ./" + config.DefaultFile
	}
	return "no file; defaults, environment and flags"
}

// plural returns n and the noun, with an "s" unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
