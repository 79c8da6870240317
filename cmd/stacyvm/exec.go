package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/pkg/client"
)

// maxStdinBytes bounds the standard input that exec -i sends. The API
// carries stdin inside the JSON request body, whose size the server caps
// (limits.max_request_bytes, 32 MiB by default), and base64 adds a third.
const maxStdinBytes = 16 << 20

func (a *app) newExecCommand() *cobra.Command {
	var (
		shell    bool
		env      []string
		workdir  string
		timeout  time.Duration
		stdin    bool
		noStream bool
	)
	cmd := &cobra.Command{
		Use:   "exec [flags] ID [--] COMMAND [ARG...]",
		Short: "Run a command in a sandbox",
		Long: "Run a command in a sandbox, streaming its output to this terminal's\n" +
			"stdout and stderr, and exit with the command's exit code.\n\n" +
			"The command runs without a shell: COMMAND is the program and each ARG\n" +
			"one argument. With --sh the arguments are joined with spaces into one\n" +
			"script for sh -c, so pipes, globs and variables work.\n\n" +
			"Flags go before ID. Exit codes: the command's own, 124 when it timed\n" +
			"out, 125 when StacyVM could not run it.",
		Example: "  stacyvm exec sb-abc -- ls -la /workspace\n" +
			"  stacyvm exec --sh sb-abc 'echo $HOME | wc -c'\n" +
			"  tar c src | stacyvm exec -i sb-abc -- tar x -C /workspace",
		Args: usageArgs(execArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			args = dropDash(args)
			req := client.ExecRequest{
				Command: args[1],
				Args:    args[2:],
				Shell:   shell,
				Workdir: workdir,
				Timeout: timeout,
			}
			if shell {
				req.Command, req.Args = strings.Join(args[1:], " "), nil
			}
			var err error
			if req.Env, err = parsePairs("--env", env); err != nil {
				return err
			}
			if timeout < 0 {
				return usageError(fmt.Errorf("invalid --timeout %s: use a positive duration such as 30s", timeout))
			}
			if stdin {
				if req.Stdin, err = readStdin(a.stdin); err != nil {
					return &exitError{code: exitExecFailure, err: err}
				}
			}

			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			if noStream {
				return a.execBlocking(cmd, c, args[0], req)
			}
			return a.execStream(cmd, c, args[0], req)
		},
	}
	// Everything after ID belongs to the command, so flags such as -la
	// reach it instead of being parsed here.
	cmd.Flags().SetInterspersed(false)

	f := cmd.Flags()
	f.BoolVar(&shell, "sh", false, "run the arguments as one shell script with sh -c")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVarP(&workdir, "workdir", "w", "", "working directory inside the sandbox (default /workspace)")
	f.DurationVar(&timeout, "timeout", 0, "kill the command after this duration, such as 30s (default: the server's)")
	f.BoolVarP(&stdin, "interactive", "i", false, "send this process's standard input to the command")
	f.BoolVar(&noStream, "no-stream", false, "print the output only after the command exits")
	return cmd
}

// dropDash removes the "--" that may separate the sandbox ID from the
// command. Flag parsing stops at the ID, so the separator reaches the
// arguments.
func dropDash(args []string) []string {
	if len(args) > 1 && args[1] == "--" {
		return append(args[:1:1], args[2:]...)
	}
	return args
}

// execArgs requires an ID and a command.
func execArgs(cmd *cobra.Command, args []string) error {
	if len(dropDash(args)) < 2 {
		return fmt.Errorf("missing arguments: usage is %s", cmd.UseLine())
	}
	return nil
}

// readStdin reads all of r, up to maxStdinBytes.
func readStdin(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxStdinBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	if len(data) > maxStdinBytes {
		return nil, fmt.Errorf("standard input is larger than %d MiB; copy large inputs with 'stacyvm files cp' instead", maxStdinBytes>>20)
	}
	return data, nil
}

// execStream runs the command with its output streamed as it is produced.
func (a *app) execStream(cmd *cobra.Command, c *client.Client, id string, req client.ExecRequest) error {
	exit, err := c.ExecStream(cmd.Context(), id, req, func(chunk client.Chunk) error {
		w := a.stdout
		if chunk.Stream == client.Stderr {
			w = a.stderr
		}
		_, err := w.Write(chunk.Data)
		return err
	})
	if errors.Is(err, client.ErrTimeout) {
		// The server already wrote the timeout message into the stream's
		// stderr.
		return &exitError{code: exitExecTimeout}
	}
	return execOutcome(exit.ExitCode, err)
}

// execBlocking runs the command and prints its output after it exits.
func (a *app) execBlocking(cmd *cobra.Command, c *client.Client, id string, req client.ExecRequest) error {
	res, err := c.Exec(cmd.Context(), id, req)
	if err == nil || errors.Is(err, client.ErrTimeout) {
		io.WriteString(a.stdout, res.Stdout)
		io.WriteString(a.stderr, res.Stderr)
	}
	if res.Truncated {
		fmt.Fprintln(a.stderr, "stacyvm: output was truncated at the server's max_output_bytes")
	}
	return execOutcome(res.ExitCode, err)
}

// execOutcome maps the result of a command to the CLI's exit: the
// command's own code, 124 on timeout and 125 when StacyVM failed.
func execOutcome(exitCode int, err error) error {
	switch {
	case errors.Is(err, client.ErrTimeout):
		return &exitError{code: exitExecTimeout, err: err}
	case err != nil:
		return &exitError{code: exitExecFailure, err: err}
	case exitCode == 0:
		return nil
	case exitCode < 0 || exitCode > 255:
		// A process exit status is one byte, so a code outside it cannot be
		// passed on. It is reported as a failure.
		return &exitError{code: exitFailure}
	}
	return &exitError{code: exitCode}
}
