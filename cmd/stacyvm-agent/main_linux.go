//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/version"
)

// options are the command-line flags.
type options struct {
	listen        string
	root          string
	shutdownGrace time.Duration
	logLevel      slog.Level
	version       bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if opts.version {
		fmt.Fprintf(stdout, "stacyvm-agent %s (protocol %d, revision %d)\n",
			version.String(), agent.ProtocolVersion, agent.ProtocolRevision)
		return 0
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	if err := serve(opts, log); err != nil {
		log.Error("agent failed", "error", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var opts options
	flags := flag.NewFlagSet("stacyvm-agent", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&opts.listen, "listen", "unix:"+agent.DefaultSocketPath, "address to serve on, as unix:PATH")
	flags.StringVar(&opts.root, "root", "/", `root directory of the file API and of exec working directories; any other than "/" is the host test mode`)
	flags.DurationVar(&opts.shutdownGrace, "shutdown-grace", 5*time.Second, "how long commands may run after SIGTERM or SIGINT was forwarded to them before they are killed")
	flags.TextVar(&opts.logLevel, "log-level", slog.LevelInfo, "minimum level of log records: debug, info, warn or error")
	flags.BoolVar(&opts.version, "version", false, "print the version and protocol, then exit")
	if err := flags.Parse(args); err != nil {
		return options{}, err
	}
	if flags.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q", flags.Args())
		fmt.Fprintln(stderr, "stacyvm-agent:", err)
		return options{}, err
	}
	return opts, nil
}

// serve runs the agent until a SIGTERM or SIGINT has been handled or the
// listener fails.
func serve(opts options, log *slog.Logger) error {
	reserveThreads(spareThreads)
	if err := becomeSubreaper(); err != nil {
		log.Warn("cannot become a child subreaper; descendants that call setsid are reparented away from the agent", "error", err)
	}

	// Signals are subscribed before anything starts, so that none is lost.
	stopSignals := make(chan os.Signal, 2)
	signal.Notify(stopSignals, syscall.SIGTERM, syscall.SIGINT)
	reaper := startReaper(log)
	defer reaper.stop()

	root, err := filepath.Abs(opts.root)
	if err != nil {
		return fmt.Errorf("root %s: %w", opts.root, err)
	}
	cfg := agent.Config{Root: root, Env: os.Environ(), AgentVersion: version.String(), Logger: log}
	if root == "/" {
		cfg.OOMKills = agent.CgroupOOMCounter()
	}
	srv, err := agent.NewServer(cfg)
	if err != nil {
		return err
	}
	listener, err := listen(opts.listen)
	if err != nil {
		_ = srv.Close()
		return err
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(listener) }()
	log.Info("agent started", "listen", opts.listen, "root", root, "version", version.String(),
		"protocol", agent.ProtocolVersion, "pid", os.Getpid(), "oom_detection", cfg.OOMKills != nil)

	select {
	case err := <-served:
		_ = srv.Close()
		return fmt.Errorf("serve %s: %w", opts.listen, err)
	case sig := <-stopSignals:
		shutdown(srv, sig, stopSignals, opts.shutdownGrace, log)
	}
	<-served
	killChildren(log)
	reaper.reapNow()
	return nil
}

// shutdown forwards sig to the running commands and stops the server once
// they have ended, killing them when grace passes or another stop signal
// arrives first.
func shutdown(srv *agent.Server, sig os.Signal, more <-chan os.Signal, grace time.Duration, log *slog.Logger) {
	started := time.Now()
	log.Info("shutting down", "signal", sig.String(), "grace_ms", grace.Milliseconds())
	forwarded := forwardSignal(sig.(syscall.Signal))
	log.Debug("forwarded signal", "signal", sig.String(), "processes", forwarded)

	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	go func() {
		select {
		case again := <-more:
			log.Info("second stop signal; killing commands now", "signal", again.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown closed connections with calls in progress", "error", err)
	}
	log.Info("agent stopped", "duration_ms", time.Since(started).Milliseconds())
}

// listen opens the listener for an address of the form unix:PATH. It
// creates the socket's directory and replaces a socket left by an earlier
// run, and makes the socket accessible to its owner only.
func listen(address string) (net.Listener, error) {
	path, ok := strings.CutPrefix(address, "unix:")
	if !ok || path == "" {
		return nil, fmt.Errorf("listen address %q is not supported; use unix:PATH", address)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if info, err := os.Lstat(path); err == nil && info.Mode().Type() == os.ModeSocket {
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// The umask makes the socket mode 0600 from its creation. No command
	// runs yet, so none inherits the temporary umask.
	oldMask := unix.Umask(0o177)
	listener, err := net.Listen("unix", path)
	unix.Umask(oldMask)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return listener, nil
}
