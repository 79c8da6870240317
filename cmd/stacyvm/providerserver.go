package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/custom"
	"github.com/stacyvm/stacyvm/internal/version"
)

// envProviderToken names the environment variable with the token of
// provider-server. It is safer than --token, which other users of the host
// can read in the process list.
const envProviderToken = "STACYVM_PROVIDER_TOKEN"

// defaultProviderServerListen is the default address of provider-server:
// loopback, one port above serve's default.
const defaultProviderServerListen = "127.0.0.1:7424"

// providerHealthTimeout bounds the health check of the provider at the
// start of provider-server.
const providerHealthTimeout = 10 * time.Second

// providerServerFlags maps the flags of provider-server that are
// configuration keys, as serveFlags does for serve.
var providerServerFlags = []struct{ flag, key string }{
	{"data-dir", "data_dir"},
	{"log-format", "log.format"},
	{"log-level", "log.level"},
}

// providerServerOptions are the flags of provider-server that are not
// configuration keys.
type providerServerOptions struct {
	listen   string
	provider string
	token    config.Secret
}

func (a *app) newProviderServerCommand() *cobra.Command {
	var (
		configFile string
		opts       providerServerOptions
	)
	defaults := config.Default()
	cmd := &cobra.Command{
		Use:   "provider-server",
		Short: "Expose a local provider to other StacyVM servers",
		Long: "Serve one provider of this host over the custom provider protocol, so\n" +
			"that a StacyVM server elsewhere can use it by setting\n" +
			"providers.custom.base_url to this address and providers.custom.api_key\n" +
			"to the token. The provider is built from the same configuration as\n" +
			"serve (--config, --data-dir, providers.<name>).\n\n" +
			"Every call must carry the token as \"Authorization: Bearer TOKEN\". Set\n" +
			"it with " + envProviderToken + " rather than --token, which other users\n" +
			"can see in the process list. Without a token the command exits with\n" +
			"status 2.\n\n" +
			"The server listens on loopback by default. Traffic is plain HTTP, so on\n" +
			"another address put it behind TLS or an encrypted network.\n\n" +
			"On SIGINT or SIGTERM the server stops accepting calls, waits up to\n" +
			"shutdown_timeout for those in flight, then stops the rest. Sandboxes\n" +
			"keep running.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.token = config.Secret(flagOrEnv(cmd, "token", envProviderToken))
			if err := opts.validate(); err != nil {
				return usageError(err)
			}
			cfg, err := loadProviderServerConfig(cmd, configFile)
			if err != nil {
				return err
			}
			return runProviderServer(cmd.Context(), cfg, opts, a.stdout, a.stderr)
		},
	}

	f := cmd.Flags()
	f.StringVar(&opts.listen, "listen", defaultProviderServerListen, "HTTP listen address, host:port")
	f.StringVar(&opts.provider, "provider", "", "name of the provider to serve, such as docker or mock (required)")
	f.String("token", "", "token that every call must send (env "+envProviderToken+")")
	f.StringVar(&configFile, "config", "", "YAML configuration file (env "+config.EnvConfigFile+"; default ./"+config.DefaultFile+" when present)")
	f.String("data-dir", "", "directory for sandbox files (default /var/lib/stacyvm as root, else ~/.local/share/stacyvm)")
	f.String("log-format", defaults.Log.Format, "log format: text or json")
	f.String("log-level", defaults.Log.Level, "log level: debug, info, warn or error")
	return cmd
}

// validate checks the options that the configuration does not cover.
func (o providerServerOptions) validate() error {
	var errs []error
	if o.token == "" {
		errs = append(errs, fmt.Errorf("a token is required: set %s (or --token) to a long random secret", envProviderToken))
	}
	if o.provider == "" {
		errs = append(errs, fmt.Errorf("--provider is required: one of %s", strings.Join(providerNames(), ", ")))
	} else if !slices.Contains(providerNames(), o.provider) {
		errs = append(errs, fmt.Errorf("--provider %q is not a provider: use one of %s", o.provider, strings.Join(providerNames(), ", ")))
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q is not host:port: %v", o.listen, err))
	}
	return errors.Join(errs...)
}

// providerNames returns the names of the providers that serve can build.
func providerNames() []string {
	names := make([]string, len(providerFactories))
	for i, f := range providerFactories {
		names[i] = f.name
	}
	return names
}

// loadProviderServerConfig loads and validates the configuration. Every
// problem is reported at once, with exit status 2.
func loadProviderServerConfig(cmd *cobra.Command, file string) (config.Config, error) {
	flags := make(map[string]string)
	for _, sf := range providerServerFlags {
		if f := cmd.Flag(sf.flag); f != nil && f.Changed {
			flags[sf.key] = f.Value.String()
		}
	}
	cfg, err := config.Load(config.LoadOptions{File: file, Flags: flags})
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		text := strings.ReplaceAll(err.Error(), "\n", "\n  - ")
		return config.Config{}, &exitError{code: exitUsage, err: fmt.Errorf("invalid configuration:\n  - %s", text)}
	}
	return cfg, nil
}

// runProviderServer serves the provider named in opts until ctx is done,
// then shuts down. It prints one line to stdout once it accepts calls, and
// logs to logOut.
func runProviderServer(ctx context.Context, cfg config.Config, opts providerServerOptions, stdout, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	log.Info("starting provider server", "version", version.String(), "provider", opts.provider,
		"listen", opts.listen, "data_dir", cfg.DataDir)
	if !config.IsLoopback(opts.listen) {
		log.Warn("the provider server listens on a non-loopback address over plain HTTP; "+
			"put it behind TLS or an encrypted network, because the token and all traffic are readable on the way",
			"listen", opts.listen)
	}

	if err := prepareDataDir(cfg.DataDir, log); err != nil {
		return err
	}
	images, err := image.Open(cfg.ImageDir(), log, image.WithInsecureRegistries(cfg.Images.InsecureRegistries...))
	if err != nil {
		return fmt.Errorf("%w; set another directory with images.dir", err)
	}
	defer images.Close()

	p, err := buildProvider(cfg, opts.provider, providerDeps{Images: images, Logger: log})
	if err != nil {
		return err
	}
	defer closeProvider(p, log)
	checkProviderHealth(ctx, p, log)

	srv, err := custom.NewServer(p, custom.ServerOptions{Token: opts.token, Version: version.Version, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; choose another address with --listen", opts.listen, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "provider", p.Name(), "protocol", custom.ProtocolVersion)
	fmt.Fprintf(stdout, "StacyVM provider-server %s serving provider %s, ready on http://%s\n",
		version.String(), p.Name(), ln.Addr())

	select {
	case <-ctx.Done():
		log.Info("shutdown requested", "cause", context.Cause(ctx))
	case err = <-serveErr:
		log.Error("HTTP server failed", "error", err)
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("provider server stopped with calls still running", "error", err)
	}
	log.Info("provider server stopped; sandboxes keep running")
	return nil
}

// buildProvider constructs the provider called name with its factory from
// providerFactories, as serve would.
func buildProvider(cfg config.Config, name string, deps providerDeps) (provider.Provider, error) {
	for _, f := range providerFactories {
		if f.name != name {
			continue
		}
		var (
			p   provider.Provider
			err error
		)
		if f.buildWithDeps != nil {
			p, err = f.buildWithDeps(cfg, cfg.Providers[name], deps)
		} else {
			p, err = f.build(cfg, cfg.Providers[name])
		}
		if err != nil {
			return nil, fmt.Errorf("provider %s is not available: %w", name, err)
		}
		return p, nil
	}
	return nil, usageError(fmt.Errorf("--provider %q is not a provider: use one of %s", name, strings.Join(providerNames(), ", ")))
}

// checkProviderHealth logs whether the provider can spawn sandboxes now.
// An unhealthy provider is not fatal, because its runtime may come up
// later; clients see the cause in their health checks until then.
func checkProviderHealth(ctx context.Context, p provider.Provider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, providerHealthTimeout)
	defer cancel()
	if err := p.Health(ctx); err != nil {
		log.Warn("provider is not healthy; calls will fail until it is", "provider", p.Name(), "error", err)
		return
	}
	log.Info("provider healthy", "provider", p.Name())
}

// closeProvider releases the provider's resources when it holds any.
func closeProvider(p provider.Provider, log *slog.Logger) {
	if c, ok := p.(io.Closer); ok {
		if err := c.Close(); err != nil {
			log.Warn("close provider", "provider", p.Name(), "error", err)
		}
	}
}
