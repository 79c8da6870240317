package custom

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// errNoExit is the cause when an exec stream ends before its exit line.
var errNoExit = errors.New("the exec stream ended before its exit line")

// Exec runs a command on the backend with the semantics of
// provider.Provider.Exec. Output goes to out as the backend streams it.
// Ending ctx closes the connection, on which the backend kills the
// command's process tree, and Exec returns a wrapped ctx.Err().
//
// Exec bounds the wait on a silent backend. It fails with an error
// matching provider.ErrUnavailable when nothing, not even a heartbeat,
// arrives for heartbeatMisses heartbeat intervals. It fails the same way
// when the exit line has not arrived by the command's timeout plus
// Config.ExecGrace.
func (p *Provider) Exec(ctx context.Context, id string, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
	rq, err := sandboxRequest("exec", http.MethodPost, id, opExec)
	if err != nil {
		return provider.ExecResult{}, err
	}
	body, err := json.Marshal(execRequest{
		Argv:           req.Argv,
		Env:            req.Env,
		Workdir:        req.Workdir,
		Stdin:          req.Stdin,
		TimeoutMS:      ceilMilliseconds(req.Timeout),
		MaxOutputBytes: req.MaxOutputBytes,
		HeartbeatMS:    ceilMilliseconds(p.cfg.HeartbeatInterval),
	})
	if err != nil {
		return provider.ExecResult{}, fmt.Errorf("custom provider: exec: encode request: %w", err)
	}
	rq.body, rq.contentType = bytes.NewReader(body), contentJSON
	rq.idle = heartbeatMisses * p.cfg.HeartbeatInterval
	if req.Timeout > 0 {
		rq.deadline = req.Timeout + p.cfg.ExecGrace
		rq.deadlineCause = fmt.Errorf("no exit line within the exec timeout %s plus %s of grace", req.Timeout, p.cfg.ExecGrace)
	}

	stream, err := p.send(ctx, rq)
	if err != nil {
		return provider.ExecResult{}, err
	}
	defer stream.Close()
	return p.readExecStream(bufio.NewReaderSize(stream, 64<<10), out)
}

// readExecStream passes output lines to out until the exit or error line.
func (p *Provider) readExecStream(r *bufio.Reader, out provider.OutputFunc) (provider.ExecResult, error) {
	for {
		data, err := readLine(r)
		if err != nil {
			var classified *classifiedError
			switch {
			case errors.As(err, &classified):
				return provider.ExecResult{}, err
			case errors.Is(err, io.EOF):
				return provider.ExecResult{}, p.unavailable("exec", errNoExit)
			}
			return provider.ExecResult{}, p.unavailable("exec", err)
		}

		var line execLine
		if err := json.Unmarshal(data, &line); err != nil {
			return provider.ExecResult{}, p.unavailable("exec", fmt.Errorf("%w: invalid exec line: %v", ErrProtocol, err))
		}
		switch line.Stream {
		case streamStdout, streamStderr:
			chunk, err := line.bytes()
			if err != nil {
				return provider.ExecResult{}, p.unavailable("exec", err)
			}
			if out != nil && len(chunk) > 0 {
				out(provider.Stream(line.Stream), chunk)
			}
		case streamExit:
			return p.exitResult(line)
		case streamError:
			if line.Code == "" {
				return provider.ExecResult{}, p.unavailable("exec", fmt.Errorf("%w: error line without a code", ErrProtocol))
			}
			return provider.ExecResult{}, line.toError()
		}
		// Heartbeats, and line kinds added by a later revision, only show
		// that the backend is alive.
	}
}

// readLine returns the next line of r without its newline. A line longer
// than maxLine is an error.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull) && len(line) <= maxLine:
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("%w: exec line longer than %d bytes", ErrProtocol, maxLine)
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

// bytes returns the output bytes of a stdout or stderr line.
func (l execLine) bytes() ([]byte, error) {
	switch l.Encoding {
	case "":
		return []byte(l.Data), nil
	case encodingBase64:
		data, err := base64.StdEncoding.DecodeString(l.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s line with invalid base64: %v", ErrProtocol, l.Stream, err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: %s line with unknown encoding %q", ErrProtocol, l.Stream, l.Encoding)
}

// exitResult converts an exit line, which must carry an exit code.
func (p *Provider) exitResult(l execLine) (provider.ExecResult, error) {
	if l.ExitCode == nil {
		return provider.ExecResult{}, p.unavailable("exec", fmt.Errorf("%w: exit line without exit_code", ErrProtocol))
	}
	res := provider.ExecResult{
		ExitCode:   *l.ExitCode,
		TimedOut:   l.TimedOut,
		Truncated:  l.Truncated,
		ExitReason: l.ExitReason,
	}
	if l.DurationMS != nil {
		res.Duration = time.Duration(*l.DurationMS * float64(time.Millisecond))
	}
	return res, nil
}
