package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/internal/version"
	"github.com/stacyvm/stacyvm/pkg/client"
)

// Exit codes. exec also exits with the command's own exit code.
const (
	exitOK          = 0
	exitFailure     = 1   // the server rejected the request or could not be reached
	exitUsage       = 2   // invalid flags, arguments or configuration
	exitExecTimeout = 124 // exec: the command ran past its timeout
	exitExecFailure = 125 // exec: StacyVM failed to run the command
)

// Environment variables read by the client commands.
const (
	envServer = "STACYVM_SERVER"
	envAPIKey = "STACYVM_API_KEY"
)

const defaultServer = "http://127.0.0.1:7423"

// exitError ends the process with code after printing err, or silently
// when err is nil. With usage set, the message is followed by a pointer to
// the command's help.
type exitError struct {
	code  int
	err   error
	usage bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a mistake in the command line.
func usageError(err error) error {
	return &exitError{code: exitUsage, err: err, usage: true}
}

// app is the state shared by every command of one invocation.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	root *cobra.Command
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	a.root = a.newRootCommand()
	a.root.SetArgs(args)
	a.root.SetIn(stdin)
	a.root.SetOut(stdout)
	a.root.SetErr(stderr)

	cmd, err := a.root.ExecuteContextC(ctx)
	return a.report(cmd, err)
}

func (a *app) newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "stacyvm",
		Short: "Self-hosted sandboxes for running untrusted code",
		Long: "StacyVM runs disposable, isolated sandboxes on your own hosts.\n\n" +
			"Start the server with 'stacyvm serve'. The other commands are clients of\n" +
			"its REST API at --server (env " + envServer + ", default " + defaultServer + ").",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          unknownSubcommand,
		RunE:          showHelp,
	}
	root.SetVersionTemplate("stacyvm {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(err)
	})

	flags := root.PersistentFlags()
	flags.String("server", defaultServer, "URL of the StacyVM server; a bare host:port means http://host:port (env "+envServer+")")
	flags.String("api-key", "", "API key that clients send and that serve requires (env "+envAPIKey+")")

	root.AddCommand(
		a.newServeCommand(),
		a.newProviderServerCommand(),
		a.withTemplateFlag(a.newSpawnCommand()),
		a.newListCommand(),
		a.newExecCommand(),
		a.newKillCommand(),
		a.newInspectCommand(),
		a.newLogsCommand(),
		a.newExtendCommand(),
		a.newFilesCommand(),
		a.newTemplatesCommand(),
		a.newImageCommand(),
		a.newProvidersCommand(),
		a.newConfigCommand(),
		a.newDoctorCommand(),
		a.newVersionCommand(),
	)
	return root
}

// client returns an API client for the server and key chosen by flags or
// the environment. A flag set on the command line wins over the
// environment.
func (a *app) client(cmd *cobra.Command) (*client.Client, error) {
	server := withDefaultScheme(flagOrEnv(cmd, "server", envServer))
	c, err := client.New(server, client.WithAPIKey(flagOrEnv(cmd, "api-key", envAPIKey)))
	if err != nil {
		return nil, usageError(fmt.Errorf("--server: %w", err))
	}
	return c, nil
}

// withDefaultScheme prefixes server with http:// when it has no scheme, so
// that a bare host:port such as 127.0.0.1:7423 works. Without the prefix,
// net/url reads "localhost:7423" as scheme "localhost" and rejects
// "127.0.0.1:7423" outright.
func withDefaultScheme(server string) string {
	server = strings.TrimSpace(server)
	if server == "" || strings.Contains(server, "://") {
		return server
	}
	return "http://" + server
}

// flagOrEnv returns the flag's value when it was set, else the environment
// variable when it is set, else the flag's default.
func flagOrEnv(cmd *cobra.Command, flag, env string) string {
	f := cmd.Flags().Lookup(flag)
	if f.Changed {
		return f.Value.String()
	}
	if v, ok := os.LookupEnv(env); ok && v != "" {
		return v
	}
	return f.Value.String()
}

// report prints err, if any, and returns the exit code for it.
func (a *app) report(cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}

	code, usage := exitFailure, false
	var exit *exitError
	if errors.As(err, &exit) {
		code, usage = exit.code, exit.usage
		if exit.err == nil {
			return code
		}
	}

	fmt.Fprintf(a.stderr, "Error: %s\n", describe(err))
	if usage && cmd != nil {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// describe formats err for people: an API error shows its message and
// request ID instead of its code, and a rejected API key and an unreachable
// server get a hint.
func describe(err error) string {
	msg := err.Error()

	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		msg = strings.Replace(msg, apiErr.Error(), apiErr.Message, 1)
		if apiErr.RequestID != "" {
			msg += " (request_id " + apiErr.RequestID + ")"
		}
		// The server's 401 message names HTTP headers, so add how this CLI
		// sends the key. A 403 is left alone because the server also uses
		// it for permission errors on sandbox paths.
		if apiErr.StatusCode == http.StatusUnauthorized {
			msg += ". Pass the API key with --api-key or set " + envAPIKey
		}
		return msg
	}

	var urlErr *url.Error
	var opErr *net.OpError
	if errors.As(err, &urlErr) && errors.As(err, &opErr) && errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("cannot connect to the StacyVM server at %s: %v; start it with 'stacyvm serve' "+
			"or point --server (env %s) at it", urlErr.URL, opErr.Err, envServer)
	}
	return msg
}

// unknownSubcommand rejects arguments to a command that only groups
// subcommands, as a usage error.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
	}
	return nil
}

// showHelp prints the help of a command that only groups subcommands.
func showHelp(cmd *cobra.Command, _ []string) error {
	return cmd.Help()
}

// exactArgs is cobra.ExactArgs with the error marked as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return usageArgs(cobra.ExactArgs(n))
}

// usageArgs marks the errors of an argument check as usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError(err)
		}
		return nil
	}
}
