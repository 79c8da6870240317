package custom

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// chunkLine is a stdout or stderr line of an exec stream.
type chunkLine struct {
	Stream   string `json:"stream"`
	Data     string `json:"data"`
	Encoding string `json:"encoding,omitempty"`
}

// errorLine is the error line of an exec stream.
type errorLine struct {
	Stream string `json:"stream"` // always "error"
	errorBody
}

// heartbeatLine is the line sent after a quiet heartbeat interval.
var heartbeatLine = []byte(`{"stream":"heartbeat"}` + "\n")

// handleExec runs one command and streams its output as NDJSON lines. Only
// a request that cannot be decoded or has a negative timeout gets an error
// status. After that every outcome is a line, and the stream ends with one
// exit or error line.
func (s *Server) handleExec(w http.ResponseWriter, r *http.Request) error {
	var body execRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.TimeoutMS < 0 {
		return fmt.Errorf("timeout_ms is negative: %d: %w", body.TimeoutMS, provider.ErrInvalidArgument)
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	w.Header().Set("Content-Type", contentNDJSON)
	w.WriteHeader(http.StatusOK)
	lines := newLineWriter(w, func(err error) {
		cancel(fmt.Errorf("write exec output to the client: %w", err))
	})
	stopHeartbeat := lines.heartbeat(clampHeartbeat(body.HeartbeatMS))

	req := provider.ExecRequest{
		Argv:           body.Argv,
		Env:            body.Env,
		Workdir:        body.Workdir,
		Stdin:          body.Stdin,
		Timeout:        time.Duration(body.TimeoutMS) * time.Millisecond,
		MaxOutputBytes: body.MaxOutputBytes,
	}
	res, err := s.p.Exec(ctx, r.PathValue("id"), req, lines.output)
	stopHeartbeat()
	defer lines.finish()

	if err != nil {
		errBody, status := toErrorBody(s.callError(r, err))
		s.logFailure(ctx, r, status, err)
		lines.write(errorLine{Stream: streamError, errorBody: errBody})
		return nil
	}
	lines.write(exitLine{
		Stream:     streamExit,
		ExitCode:   res.ExitCode,
		TimedOut:   res.TimedOut,
		Truncated:  res.Truncated,
		DurationMS: durationMS(res.Duration),
		ExitReason: res.ExitReason,
	})
	return nil
}

// clampHeartbeat returns the heartbeat interval a client asked for, within
// the protocol's limits, or the default when it asked for none.
func clampHeartbeat(ms int64) time.Duration {
	if ms <= 0 {
		return defaultHeartbeat
	}
	return min(max(time.Duration(ms)*time.Millisecond, minHeartbeat), maxHeartbeat)
}

// lineWriter writes NDJSON lines to a response, each flushed at once and
// bounded by writeTimeout. It is safe for concurrent use. After the first
// failed write it drops every later line.
type lineWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	onFail func(error)

	mu        sync.Mutex
	lastWrite time.Time
	failed    bool
}

func newLineWriter(w http.ResponseWriter, onFail func(error)) *lineWriter {
	lw := &lineWriter{w: w, rc: http.NewResponseController(w), onFail: onFail}
	lw.writeRaw(nil) // sends the headers now
	return lw
}

// output is the provider.OutputFunc of an exec. Output is split into lines
// of at most maxChunk bytes. A piece that is valid UTF-8 is sent as text,
// any other piece base64-encoded, so every byte arrives as it was written.
func (lw *lineWriter) output(stream provider.Stream, p []byte) {
	for len(p) > 0 {
		n := min(len(p), maxChunk)
		piece := p[:n]
		p = p[n:]
		line := chunkLine{Stream: string(stream), Data: string(piece)}
		if !utf8.Valid(piece) {
			line.Data, line.Encoding = base64.StdEncoding.EncodeToString(piece), encodingBase64
		}
		lw.write(line)
	}
}

// write encodes v as one line and sends it.
func (lw *lineWriter) write(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// The line types contain only strings, numbers and booleans.
		panic("custom provider server: encode exec line: " + err.Error())
	}
	lw.writeRaw(append(data, '\n'))
}

// writeRaw sends data, which may be empty to flush the headers.
func (lw *lineWriter) writeRaw(data []byte) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.failed {
		return
	}
	lw.lastWrite = time.Now()

	_ = lw.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := lw.w.Write(data); err != nil {
		lw.fail(err)
		return
	}
	if err := lw.rc.Flush(); err != nil {
		lw.fail(err)
	}
}

// finish clears the write deadline, which would otherwise stay on a
// keep-alive connection and break the next call on it.
func (lw *lineWriter) finish() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if !lw.failed {
		_ = lw.rc.SetWriteDeadline(time.Time{})
	}
}

// fail records a failed write; lw.mu is held.
func (lw *lineWriter) fail(err error) {
	lw.failed = true
	if lw.onFail != nil {
		lw.onFail(err)
	}
}

// heartbeat sends a heartbeat line whenever no line was written for
// interval, until the returned function is called.
func (lw *lineWriter) heartbeat(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(interval / 2)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				if lw.quietFor() >= interval {
					lw.writeRaw(heartbeatLine)
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// quietFor returns the time since the last write.
func (lw *lineWriter) quietFor() time.Duration {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return time.Since(lw.lastWrite)
}
