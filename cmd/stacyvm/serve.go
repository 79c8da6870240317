package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/internal/api"
	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/store/sqlite"
	"github.com/stacyvm/stacyvm/internal/version"
)

// HTTP server timeouts. There is no write timeout, because exec output
// streams and file downloads may run for as long as a command or a
// transfer does. The API bounds each streamed write itself.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// serveFlags maps the flags of serve to configuration keys. Only flags set
// on the command line are passed to config.Load, so they override the file
// and the environment without their defaults hiding either.
var serveFlags = []struct{ flag, key string }{
	{"listen", "listen"},
	{"data-dir", "data_dir"},
	{"default-provider", "default_provider"},
	{"api-key", "auth.api_key"},
	{"insecure-no-auth", "auth.insecure_no_auth"},
	{"log-format", "log.format"},
	{"log-level", "log.level"},
}

func (a *app) newServeCommand() *cobra.Command {
	var configFile string
	defaults := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the StacyVM server",
		Long: "Run the StacyVM server: the REST API, the sandbox manager and the\n" +
			"providers. Settings come from flags, then STACYVM_* environment\n" +
			"variables, then the YAML file, then the defaults.\n\n" +
			"The server listens on loopback by default. Listening on another\n" +
			"address requires an API key, or --insecure-no-auth.\n\n" +
			"On SIGINT or SIGTERM the server stops accepting requests, waits up to\n" +
			"shutdown_timeout for those in flight, and exits. Sandboxes keep\n" +
			"running and are picked up by the next start.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadServeConfig(cmd, configFile)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, a.stdout, a.stderr)
		},
	}

	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file (env "+config.EnvConfigFile+"; default ./"+config.DefaultFile+" when present)")
	f.String("listen", defaults.Listen, "HTTP listen address, host:port")
	f.String("data-dir", "", "directory for the database and sandbox files (default /var/lib/stacyvm as root, else ~/.local/share/stacyvm)")
	f.String("default-provider", defaults.DefaultProvider, `provider for spawns that name none, or "auto"`)
	f.Bool("insecure-no-auth", false, "allow a non-loopback listen address without an API key")
	f.String("log-format", defaults.Log.Format, "log format: text or json")
	f.String("log-level", defaults.Log.Level, "log level: debug, info, warn or error")
	return cmd
}

// loadServeConfig loads and validates the configuration. Every problem is
// reported at once, with exit status 2.
func loadServeConfig(cmd *cobra.Command, file string) (config.Config, error) {
	flags := make(map[string]string)
	for _, sf := range serveFlags {
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

// newLogger returns the server's logger, writing to w in the configured
// format at the configured level.
func newLogger(cfg config.LogConfig, w io.Writer) *slog.Logger {
	// An unknown level name leaves the level at info. Validate rejects such
	// names before serve gets here.
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the server until ctx is done, then shuts it down. It prints
// one line to stdout once the server accepts requests, and logs to logOut.
func serve(ctx context.Context, cfg config.Config, stdout, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	log.Info("starting", "version", version.String(), "data_dir", cfg.DataDir,
		"default_provider", cfg.DefaultProvider)
	if cfg.Auth.APIKey == "" && !config.IsLoopback(cfg.Listen) {
		log.Warn("API authentication is off on a non-loopback address; anyone who reaches it can run commands on this host",
			"listen", cfg.Listen)
	}

	srv, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "StacyVM %s ready on http://%s\n", version.String(), srv.addr)
	select {
	case <-ctx.Done():
		log.Info("shutdown requested", "cause", context.Cause(ctx))
	case err = <-srv.serveErr:
		log.Error("HTTP server failed", "error", err)
	}
	srv.shutdown(cfg.ShutdownTimeout)
	return err
}

// server holds the running components, for shutdown.
type server struct {
	log      *slog.Logger
	store    *sqlite.Store
	images   *image.Store
	metrics  *api.Metrics
	manager  *orchestrator.Manager
	stopLoop context.CancelFunc
	http     *http.Server
	addr     net.Addr
	serveErr chan error
}

// start opens the store, builds the providers and the manager, and starts
// the HTTP server. On failure it undoes the steps that succeeded.
func start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *server, err error) {
	s := &server{log: log, serveErr: make(chan error, 1), metrics: api.NewMetrics()}
	defer func() {
		if err != nil {
			s.shutdown(cfg.ShutdownTimeout)
		}
	}()

	if err := prepareDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	dbPath := filepath.Join(cfg.DataDir, "stacyvm.db")
	if s.store, err = sqlite.Open(ctx, dbPath); err != nil {
		return nil, fmt.Errorf("open database %s: %w", dbPath, err)
	}
	log.Info("store opened", "path", dbPath)

	if err := s.openImages(cfg); err != nil {
		return nil, err
	}
	registry, err := newRegistry(ctx, cfg, providerDeps{Images: s.images, Logger: log}, log)
	if err != nil {
		return nil, err
	}
	if err := s.startManager(ctx, cfg, registry); err != nil {
		return nil, err
	}
	if err := s.startHTTP(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// prepareDataDir creates the data directory and the database file. Other
// users may traverse the directory but not list it (0711), because the
// proot provider runs each sandbox as its own user, which must reach the
// image trees and its workspace below it. The database and the directories
// of the other providers stay private to this user.
func prepareDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create data directory: %w; set another with --data-dir or data_dir", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "providers"), 0o711); err != nil {
		return fmt.Errorf("create data directory: %w; set another with --data-dir or data_dir", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if info.Mode().Perm()&0o066 != 0 {
		log.Warn("data directory is readable or writable by other users; restrict it with chmod 711",
			"path", dir, "mode", fmt.Sprintf("%04o", info.Mode().Perm()))
	}

	// SQLite gives its -wal and -shm files the mode of the database file,
	// so creating that file private keeps all three private.
	db, err := os.OpenFile(filepath.Join(dir, "stacyvm.db"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return db.Close()
}

// newRegistry registers the providers and checks that a named default
// provider is among them.
func newRegistry(ctx context.Context, cfg config.Config, deps providerDeps, log *slog.Logger) (*orchestrator.Registry, error) {
	registry := orchestrator.NewRegistry(cfg.DefaultProvider)
	registerProviders(registry, cfg, deps, log)

	if cfg.DefaultProvider != orchestrator.AutoProvider {
		if _, ok := registry.Lookup(cfg.DefaultProvider); !ok {
			return nil, fmt.Errorf("default_provider %q is not available; registered providers: %s; "+
				"set --default-provider to one of them or fix the warnings above",
				cfg.DefaultProvider, strings.Join(registry.Names(), ", "))
		}
	}

	// A default that cannot spawn now is not fatal, because its runtime
	// may come up later, but spawns that name no provider fail until then.
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := registry.Get(checkCtx, ""); err != nil {
		log.Warn("default provider is not usable; spawns that name no provider will fail", "error", err)
	}
	return registry, nil
}

// openImages opens the image store at cfg.ImageDir(), creating it when
// missing.
func (s *server) openImages(cfg config.Config) error {
	dir := cfg.ImageDir()
	images, err := image.Open(dir, s.log, image.WithInsecureRegistries(cfg.Images.InsecureRegistries...))
	if err != nil {
		return fmt.Errorf("%w; set another directory with images.dir", err)
	}
	s.images = images
	s.log.Info("image store opened", "path", images.Dir())
	return nil
}

// startManager creates the manager and runs its startup reconcile. Its
// background loops run until shutdown, not until ctx is done, so that they
// stop after the HTTP server.
func (s *server) startManager(ctx context.Context, cfg config.Config, registry *orchestrator.Registry) error {
	manager, err := orchestrator.New(orchestrator.Options{
		Store:    s.store,
		Registry: registry,
		Limits:   cfg.Limits,
		Manager:  cfg.Manager,
		Logger:   s.log,
		Metrics:  s.metrics,
	})
	if err != nil {
		return err
	}
	s.manager = manager

	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopLoop = stop
	if err := manager.Start(loopCtx); err != nil {
		return err
	}
	s.log.Info("manager started", "providers", strings.Join(registry.Names(), ","))
	return nil
}

// startHTTP listens on cfg.Listen and serves the API in the background.
func (s *server) startHTTP(cfg config.Config) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; choose another address with --listen", cfg.Listen, err)
	}
	s.addr = ln.Addr()

	// Closed when shutdown begins, so that open event streams end instead
	// of holding the shutdown until its timeout.
	stopping := make(chan struct{})
	s.http = &http.Server{
		Handler: api.New(api.Options{
			Manager: s.manager,
			Logger:  s.log,
			Limits:  cfg.Limits,
			Version: version.Version,
			CORS:    cfg.CORS,
			APIKey:  cfg.Auth.APIKey,
			Images:  s.images,
			Metrics: s.metrics,
			Events:  api.EventOptions{Stopping: stopping},
		}),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.http.RegisterOnShutdown(func() { close(stopping) })
	go func() {
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- err
		}
	}()
	s.log.Info("listening", "addr", s.addr.String(), "version", version.Version,
		"auth", cfg.Auth.APIKey != "")
	return nil
}

// shutdown stops the components in reverse order of start. Requests in
// flight get up to timeout to finish before their connections are closed.
// Sandboxes keep running.
func (s *server) shutdown(timeout time.Duration) {
	if s.http != nil {
		s.log.Info("stopping HTTP server", "timeout", timeout.String())
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := s.http.Shutdown(ctx)
		cancel()
		if err != nil {
			s.log.Warn("requests still running at the shutdown timeout; closing their connections", "error", err)
			_ = s.http.Close()
		}
		s.log.Info("HTTP server stopped")
	}

	if s.manager != nil {
		if err := s.manager.Close(); err != nil {
			s.log.Error("stop manager", "error", err)
		}
		s.log.Info("manager stopped")
	}
	if s.stopLoop != nil {
		s.stopLoop()
	}

	if s.images != nil {
		if err := s.images.Close(); err != nil {
			s.log.Error("close image store", "error", err)
		}
		s.log.Info("image store closed")
	}

	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Error("close store", "error", err)
		}
		s.log.Info("store closed")
	}
	s.log.Info("stopped; sandboxes keep running for the next start")
}
