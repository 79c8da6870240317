package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ExecRequest is a command to run in a sandbox.
type ExecRequest struct {
	// Command is the program in argv mode, or the whole script in shell
	// mode.
	Command string

	// Args are the program's arguments. In shell mode the server quotes
	// each one and appends it to the script.
	Args []string

	// Shell runs Command with sh -c in the sandbox. When false (argv mode)
	// Command is executed directly, with no shell parsing.
	Shell bool

	Env     map[string]string // added to the sandbox environment for this command
	Workdir string            // working directory; empty for /workspace

	// Timeout bounds the run time; zero takes the server's default. When it
	// expires the server kills the command's process tree.
	Timeout time.Duration

	// Stdin is the command's standard input, sent base64-encoded so any
	// bytes pass. Nil gives the command EOF at once.
	Stdin []byte
}

// execBody is the wire form of ExecRequest.
type execBody struct {
	Command       string            `json:"command"`
	Args          []string          `json:"args,omitempty"`
	Mode          string            `json:"mode"`
	Env           map[string]string `json:"env,omitempty"`
	Workdir       string            `json:"workdir,omitempty"`
	Timeout       string            `json:"timeout,omitempty"`
	Stdin         string            `json:"stdin,omitempty"`
	StdinEncoding string            `json:"stdin_encoding,omitempty"`
	Stream        bool              `json:"stream,omitempty"`
}

func (r ExecRequest) body(stream bool) execBody {
	b := execBody{
		Command: r.Command,
		Args:    r.Args,
		Mode:    "argv",
		Env:     r.Env,
		Workdir: r.Workdir,
		Stream:  stream,
	}
	if r.Shell {
		b.Mode = "shell"
	}
	if r.Timeout > 0 {
		b.Timeout = r.Timeout.String()
	}
	if len(r.Stdin) > 0 {
		b.Stdin = base64.StdEncoding.EncodeToString(r.Stdin)
		b.StdinEncoding = "base64"
	}
	return b
}

// ExecResult is the outcome of a command run with Exec.
type ExecResult struct {
	ExitCode   int           `json:"exit_code"`
	Stdout     string        `json:"stdout"`
	Stderr     string        `json:"stderr"`
	Duration   time.Duration `json:"-"`
	Truncated  bool          `json:"truncated"`             // output was cut at the server's max_output_bytes
	TimedOut   bool          `json:"timed_out"`             // the timeout killed the command
	ExitReason string        `json:"exit_reason,omitempty"` // "timeout", "oom", "pids" or "signal" when killed
}

// execResultBody is the wire form of a blocking exec result, which on 408
// also carries the error fields.
type execResultBody struct {
	ExecResult
	DurationMS int64 `json:"duration_ms"`
	errorBody
}

// Exec runs a command and returns its output once it exits. A non-zero exit
// code is a result, not an error. When the command times out, Exec returns
// the partial result together with an error matching ErrTimeout.
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest) (ExecResult, error) {
	body, err := jsonBody(req.body(false))
	if err != nil {
		return ExecResult{}, err
	}
	resp, err := c.do(ctx, http.MethodPost, sandboxPath(id, "/exec"), nil, body, "application/json")
	if err != nil {
		return ExecResult{}, err
	}
	defer resp.Body.Close()

	timedOut := resp.StatusCode == http.StatusRequestTimeout
	if !timedOut && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		return ExecResult{}, readAPIError(resp)
	}

	var result execResultBody
	if err := json.NewDecoder(resp.Body).Decode(&result); err != nil && !timedOut {
		return ExecResult{}, fmt.Errorf("decode exec result: %w", err)
	}
	result.ExecResult.Duration = time.Duration(result.DurationMS) * time.Millisecond
	if !timedOut {
		return result.ExecResult, nil
	}

	// The server sends a timed-out command as a 408 whose body holds both
	// the error fields and the partial result.
	result.ExecResult.TimedOut = true
	apiErr := &APIError{
		StatusCode: resp.StatusCode,
		Code:       result.Code,
		Message:    result.Message,
		RequestID:  result.RequestID,
	}
	if apiErr.Code == "" {
		apiErr.Code = "TIMEOUT"
	}
	if apiErr.Message == "" {
		apiErr.Message = "command timed out"
	}
	if apiErr.RequestID == "" {
		apiErr.RequestID = resp.Header.Get("X-Request-Id")
	}
	return result.ExecResult, apiErr
}

// Stream names in Chunk.Stream.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Chunk is a piece of a command's output, delivered as it is produced.
type Chunk struct {
	Stream string // Stdout or Stderr
	Data   []byte
}

// ExitEvent ends a command's output stream.
type ExitEvent struct {
	ExitCode   int
	TimedOut   bool
	Truncated  bool
	Duration   time.Duration
	ExitReason string // "timeout", "oom", "pids" or "signal" when killed
}

// streamLine is one NDJSON line of an exec stream.
type streamLine struct {
	Stream     string `json:"stream"` // "stdout", "stderr", "exit" or "error"
	Data       string `json:"data"`
	Encoding   string `json:"encoding"` // "base64" when Data is encoded
	ExitCode   int    `json:"exit_code"`
	TimedOut   bool   `json:"timed_out"`
	Truncated  bool   `json:"truncated"`
	DurationMS int64  `json:"duration_ms"`
	ExitReason string `json:"exit_reason"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	RequestID  string `json:"request_id"`
}

// ErrStreamEnded is returned by ExecStream when the output stream ends
// without an exit or error event, such as when the server stopped or the
// connection dropped. The command's outcome is unknown.
var ErrStreamEnded = errors.New("exec stream ended without an exit event")

// ExecStream runs a command and calls fn with each output chunk as the
// server sends it. fn is never called concurrently, and the chunk's Data
// must not be kept after fn returns. When fn returns an error, ExecStream
// closes the stream, which cancels the command, and returns that error.
//
// A non-zero exit code is a result, not an error. When the command times
// out, ExecStream returns the exit event together with an error matching
// ErrTimeout. An error reported inside the stream is an *APIError.
func (c *Client) ExecStream(ctx context.Context, id string, req ExecRequest, fn func(Chunk) error) (ExitEvent, error) {
	body, err := jsonBody(req.body(true))
	if err != nil {
		return ExitEvent{}, err
	}
	resp, err := c.send(ctx, http.MethodPost, sandboxPath(id, "/exec"), nil, body, "application/json")
	if err != nil {
		return ExitEvent{}, err
	}
	defer resp.Body.Close()
	requestID := resp.Header.Get("X-Request-Id")

	dec := json.NewDecoder(resp.Body)
	for {
		var line streamLine
		if err := dec.Decode(&line); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ExitEvent{}, ctxErr
			}
			if errors.Is(err, io.EOF) {
				return ExitEvent{}, ErrStreamEnded
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return ExitEvent{}, fmt.Errorf("%w: the last line was cut off", ErrStreamEnded)
			}
			return ExitEvent{}, fmt.Errorf("read exec stream: %w", err)
		}

		switch line.Stream {
		case Stdout, Stderr:
			data, err := line.bytes()
			if err != nil {
				return ExitEvent{}, err
			}
			if err := fn(Chunk{Stream: line.Stream, Data: data}); err != nil {
				return ExitEvent{}, err
			}
		case "exit":
			return line.exit()
		case "error":
			apiErr := &APIError{
				StatusCode: resp.StatusCode,
				Code:       line.Code,
				Message:    line.Message,
				RequestID:  line.RequestID,
			}
			if apiErr.RequestID == "" {
				apiErr.RequestID = requestID
			}
			return ExitEvent{}, apiErr
		}
		// Lines of other kinds are extensions this client does not know;
		// skipping them keeps older clients working.
	}
}

func (l streamLine) bytes() ([]byte, error) {
	if l.Encoding != "base64" {
		return []byte(l.Data), nil
	}
	data, err := base64.StdEncoding.DecodeString(l.Data)
	if err != nil {
		return nil, fmt.Errorf("decode %s chunk: %w", l.Stream, err)
	}
	return data, nil
}

func (l streamLine) exit() (ExitEvent, error) {
	ev := ExitEvent{
		ExitCode:   l.ExitCode,
		TimedOut:   l.TimedOut,
		Truncated:  l.Truncated,
		Duration:   time.Duration(l.DurationMS) * time.Millisecond,
		ExitReason: l.ExitReason,
	}
	if ev.TimedOut {
		return ev, &timeoutError{duration: ev.Duration}
	}
	return ev, nil
}

// timeoutError reports a command that ExecStream saw time out. It matches
// ErrTimeout.
type timeoutError struct {
	duration time.Duration
}

func (e *timeoutError) Error() string {
	return "command timed out after " + e.duration.String()
}

func (e *timeoutError) Is(target error) bool { return target == ErrTimeout }
