package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Exec runs a command in the agent's sandbox with the semantics of
// provider.Provider.Exec: output goes to out as the agent streams it, a
// non-zero exit and a timeout are results, and ending ctx resets the stream,
// on which the agent kills the command's whole process tree. The kill
// happens on the agent after Exec has returned, within milliseconds.
// out may be nil to discard output.
func (c *Client) Exec(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	body := execRequest{
		Argv:           req.Argv,
		Env:            req.Env,
		Workdir:        req.Workdir,
		Stdin:          req.Stdin,
		TimeoutMS:      ceilMilliseconds(req.Timeout),
		MaxOutputBytes: req.MaxOutputBytes,
	}
	resp, err := c.send(ctx, "exec", http.MethodPost, pathExec, nil, contentJSON, bytes.NewReader(mustJSON(body)))
	if err != nil {
		return provider.ExecResult{}, err
	}
	defer resp.Body.Close()

	frames := &frameReader{r: bufio.NewReaderSize(resp.Body, 64<<10)}
	for {
		kind, payload, err := frames.next()
		if err == io.EOF {
			err = errNoExit
		}
		if err != nil {
			return provider.ExecResult{}, c.streamError(ctx, "exec", err)
		}

		switch kind {
		case frameStdout, frameStderr:
			if out != nil {
				out(frameStream(kind), payload)
			}
		case frameExit:
			return decodeExit(payload)
		case frameError:
			var e errorBody
			if err := json.Unmarshal(payload, &e); err != nil {
				return provider.ExecResult{}, unavailable("exec", fmt.Errorf("decode error frame: %w", err))
			}
			return provider.ExecResult{}, fmt.Errorf("agent exec: %w", e.toError())
		default:
			// Frame kinds change only with the major protocol version,
			// so an unknown one means a corrupt stream.
			return provider.ExecResult{}, unavailable("exec", fmt.Errorf("unknown %v", kind))
		}
	}
}

func frameStream(kind frameKind) provider.Stream {
	if kind == frameStderr {
		return provider.Stderr
	}
	return provider.Stdout
}

func decodeExit(payload []byte) (provider.ExecResult, error) {
	var e exitBody
	if err := json.Unmarshal(payload, &e); err != nil {
		return provider.ExecResult{}, unavailable("exec", fmt.Errorf("decode exit frame: %w", err))
	}
	return provider.ExecResult{
		ExitCode:   e.ExitCode,
		Duration:   time.Duration(e.DurationMS * float64(time.Millisecond)),
		TimedOut:   e.TimedOut,
		Truncated:  e.Truncated,
		ExitReason: e.ExitReason,
	}, nil
}

// ceilMilliseconds converts d to whole milliseconds, rounding up so that a
// positive timeout never becomes zero, which means none.
func ceilMilliseconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
