package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// execRequest is the body of POST /sandboxes/{id}/exec.
type execRequest struct {
	Command       string            `json:"command"`
	Args          []string          `json:"args"`
	Mode          string            `json:"mode"` // "shell" (default) or "argv"
	Env           map[string]string `json:"env"`
	Workdir       string            `json:"workdir"`
	Timeout       string            `json:"timeout"` // Go duration string
	Stdin         string            `json:"stdin"`
	StdinEncoding string            `json:"stdin_encoding"` // "" or "utf-8" for text, "base64" for bytes
	Stream        bool              `json:"stream"`         // respond with an NDJSON stream
}

// execResultJSON is the body of a finished blocking exec. Output is UTF-8
// text with each invalid byte replaced by U+FFFD.
type execResultJSON struct {
	ExitCode   int    `json:"exit_code"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	Duration   string `json:"duration"` // Go duration string, such as "12.345ms"
	DurationMS int64  `json:"duration_ms"`
	Truncated  bool   `json:"truncated"`
	TimedOut   bool   `json:"timed_out"`
	ExitReason string `json:"exit_reason,omitempty"`
}

// execTimeoutJSON is the 408 body of a blocking exec that timed out: the
// error body plus the result up to the kill.
type execTimeoutJSON struct {
	errorBody
	execResultJSON
}

// Lines of an exec stream. Every stream ends with exactly one exit or
// error line.
type (
	streamChunkJSON struct {
		Stream provider.Stream `json:"stream"` // "stdout" or "stderr"
		Data   string          `json:"data"`
	}
	streamExitJSON struct {
		Stream     string `json:"stream"` // always "exit"
		ExitCode   int    `json:"exit_code"`
		TimedOut   bool   `json:"timed_out"`
		Truncated  bool   `json:"truncated"`
		DurationMS int64  `json:"duration_ms"`
		ExitReason string `json:"exit_reason,omitempty"`
	}
	streamErrorJSON struct {
		Stream    string `json:"stream"` // always "error"
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}
)

// exec runs a command in a sandbox, responding with the whole result or,
// when the request sets stream, with an NDJSON stream of its output.
func (s *server) exec(w http.ResponseWriter, r *http.Request) error {
	var body execRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	req, err := body.toManager()
	if err != nil {
		return err
	}

	if body.Stream {
		return s.execStream(w, r, req)
	}
	return s.execBlocking(w, r, req)
}

// toManager validates the request and converts it for the manager, which
// checks the remaining fields.
func (body execRequest) toManager() (orchestrator.ExecRequest, error) {
	if body.Command == "" {
		return orchestrator.ExecRequest{}, invalidf("command is required")
	}

	var shell bool
	switch body.Mode {
	case "", "shell":
		shell = true
	case "argv":
	default:
		return orchestrator.ExecRequest{}, invalidf("mode must be \"shell\" or \"argv\", got %q", body.Mode)
	}

	timeout, err := parseDuration("timeout", body.Timeout)
	if err != nil {
		return orchestrator.ExecRequest{}, err
	}

	stdin, err := decodeStdin(body.Stdin, body.StdinEncoding)
	if err != nil {
		return orchestrator.ExecRequest{}, err
	}

	return orchestrator.ExecRequest{
		Command: body.Command,
		Args:    body.Args,
		Shell:   shell,
		Env:     body.Env,
		Workdir: body.Workdir,
		Stdin:   stdin,
		Timeout: timeout,
	}, nil
}

func decodeStdin(stdin, encoding string) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "", "utf-8", "utf8":
		return []byte(stdin), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(stdin)
		if err != nil {
			return nil, invalidf("stdin is not valid base64 (%v); encode it with standard base64 and padding", err)
		}
		return b, nil
	}
	return nil, invalidf("stdin_encoding must be \"utf-8\" or \"base64\", got %q", encoding)
}

// execBlocking runs the command and responds with its whole output: 200 for
// any exit status, 408 with the partial result when the timeout killed it.
func (s *server) execBlocking(w http.ResponseWriter, r *http.Request, req orchestrator.ExecRequest) error {
	var stdout, stderr bytes.Buffer
	res, err := s.manager.Exec(r.Context(), r.PathValue("id"), req, func(stream provider.Stream, p []byte) {
		if stream == provider.Stderr {
			stderr.Write(p)
		} else {
			stdout.Write(p)
		}
	})
	if err != nil {
		return err
	}

	result := execResultJSON{
		ExitCode:   res.ExitCode,
		Stdout:     sanitizeUTF8(stdout.Bytes()),
		Stderr:     sanitizeUTF8(stderr.Bytes()),
		Duration:   res.Duration.Round(time.Microsecond).String(),
		DurationMS: res.Duration.Milliseconds(),
		Truncated:  res.Truncated,
		TimedOut:   res.TimedOut,
		ExitReason: res.ExitReason,
	}

	// A long command may have outlived a server-wide write timeout. The
	// deadline is cleared afterwards, because it would otherwise stay on a
	// keep-alive connection and break the next request on it.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	defer rc.SetWriteDeadline(time.Time{})
	if !res.TimedOut {
		writeJSON(w, http.StatusOK, result)
		return nil
	}
	if result.ExitReason == "" {
		result.ExitReason = provider.ExitTimeout
	}
	writeJSON(w, http.StatusRequestTimeout, execTimeoutJSON{
		errorBody: errorBody{
			Code:      codeTimeout,
			Message:   s.timeoutMessage(req.Timeout),
			RequestID: requestInfoFrom(r.Context()).id,
		},
		execResultJSON: result,
	})
	return nil
}

// execStream runs the command and streams its output as NDJSON lines. The
// headers go out as soon as the command starts. A failure before that, such
// as bad input or an unknown or stopped sandbox, gets a normal error
// response. After it, the stream ends with an error line instead of the
// exit line.
func (s *server) execStream(w http.ResponseWriter, r *http.Request, req orchestrator.ExecRequest) error {
	// A client that stops reading cancels the command, like one that
	// disconnects.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	out := newNDJSONWriter(w, func(err error) {
		cancel(fmt.Errorf("write exec output to the client: %w", err))
	})
	defer out.close()

	req.OnStart = out.start
	var stdout, stderr textDecoder
	res, err := s.manager.Exec(ctx, r.PathValue("id"), req, func(stream provider.Stream, p []byte) {
		dec := &stdout
		if stream == provider.Stderr {
			dec = &stderr
		}
		if text := dec.decode(p); text != "" {
			out.writeLine(streamChunkJSON{Stream: stream, Data: text})
		}
	})

	if err != nil && !out.started {
		return err
	}
	for _, tail := range []struct {
		stream provider.Stream
		dec    *textDecoder
	}{{provider.Stdout, &stdout}, {provider.Stderr, &stderr}} {
		if text := tail.dec.flush(); text != "" {
			out.writeLine(streamChunkJSON{Stream: tail.stream, Data: text})
		}
	}

	if out.err != nil || clientGone(r) {
		info := requestInfoFrom(r.Context())
		s.log.Info("exec stream ended early: the client went away",
			"request_id", info.id, "sandbox_id", info.sandboxID, "cause", context.Cause(ctx), "error", err)
		return nil
	}
	s.writeStreamEnd(r, out, req, res, err)
	return nil
}

// writeStreamEnd writes the final line of an exec stream: the error line
// when the exec failed, else the exit line. A timed-out command gets a
// stderr chunk with the timeout message before its exit line.
func (s *server) writeStreamEnd(r *http.Request, out *ndjsonWriter, req orchestrator.ExecRequest, res provider.ExecResult, err error) {
	if err != nil {
		_, body := s.logError(r, err)
		out.writeLine(streamErrorJSON{Stream: "error", Code: body.Code, Message: body.Message, RequestID: body.RequestID})
		return
	}

	if res.TimedOut {
		out.writeLine(streamChunkJSON{Stream: provider.Stderr, Data: s.timeoutMessage(req.Timeout) + "\n"})
		if res.ExitReason == "" {
			res.ExitReason = provider.ExitTimeout
		}
	}
	out.writeLine(streamExitJSON{
		Stream:     "exit",
		ExitCode:   res.ExitCode,
		TimedOut:   res.TimedOut,
		Truncated:  res.Truncated,
		DurationMS: res.Duration.Milliseconds(),
		ExitReason: res.ExitReason,
	})
}

// timeoutMessage returns "exec timeout after D", where D is the request's
// timeout or the configured default.
func (s *server) timeoutMessage(timeout time.Duration) string {
	if timeout == 0 {
		timeout = s.limits.DefaultExecTimeout
	}
	if timeout <= 0 {
		return "exec timeout"
	}
	return "exec timeout after " + timeout.String()
}
