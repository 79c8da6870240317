package custom

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// Server timeouts. There is no overall write timeout, because exec streams
// and downloads may run as long as a command or a transfer does. Each
// write is bounded by writeTimeout instead.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute

	// writeTimeout bounds one write of a streamed response. A client that
	// stops reading for this long loses the connection, and its command is
	// killed.
	writeTimeout = 30 * time.Second

	// killWait bounds the wait for calls to send their last line after
	// Shutdown stopped them.
	killWait = 3 * time.Second
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// Token is the secret that every call must send as
	// "Authorization: Bearer TOKEN". Required.
	Token config.Secret

	// Version is the release reported by GET /v1/version.
	Version string

	// Logger receives the server's logs. Nil discards them. The token is
	// never logged.
	Logger *slog.Logger
}

// Server serves the protocol for one provider. It is an http.Handler, for
// tests and for embedding, and can also run its own HTTP server with
// Serve and Shutdown.
type Server struct {
	p         provider.Provider
	tokenHash [sha256.Size]byte
	version   string
	log       *slog.Logger
	mux       *http.ServeMux
	http      *http.Server
	denied    rateLimitedLog

	base context.Context         // parent of every call's context
	stop context.CancelCauseFunc // cancels base with errShuttingDown
}

// handlerFunc handles one operation. It returns an error only while it has
// not written the response; the server then writes the error body.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// NewServer returns a server that exposes p. It returns an error when
// opts.Token is empty.
func NewServer(p provider.Provider, opts ServerOptions) (*Server, error) {
	if opts.Token == "" {
		return nil, fmt.Errorf("provider server: the token is empty; every call must be authenticated: %w", provider.ErrInvalidArgument)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		p:         p,
		tokenHash: sha256.Sum256([]byte(opts.Token)),
		version:   opts.Version,
		log:       opts.Logger,
		denied:    rateLimitedLog{every: time.Minute},
	}
	s.base, s.stop = context.WithCancelCause(context.Background())
	s.mux = s.routes()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, h handlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}

	handle("GET "+pathVersion, s.handleVersion)
	handle("GET "+pathHealth, s.handleHealth)
	handle("GET "+pathRuntimes, s.handleRuntimes)
	handle("POST "+pathSpawn, s.handleSpawn)
	handle("DELETE "+pathSandbox, s.handleDestroy)
	handle("POST "+pathSandbox+opRecover, s.handleRecover)
	handle("POST "+pathSandbox+opExec, s.handleExec)
	handle("GET "+pathSandbox+opStats, s.handleStats)
	handle("GET "+pathSandbox+opLogs, s.handleLogs)

	handle("GET "+pathSandbox+opFileContent, s.handleReadFile)
	handle("PUT "+pathSandbox+opFileContent, s.handleWriteFile)
	handle("GET "+pathSandbox+opFileArchive, s.handleReadArchive)
	handle("PUT "+pathSandbox+opFileArchive, s.handleWriteArchive)
	handle("GET "+pathSandbox+opFileStat, s.handleStat)
	handle("GET "+pathSandbox+opFileList, s.handleList)
	handle("GET "+pathSandbox+opFileGlob, s.handleGlob)
	handle("POST "+pathSandbox+opFileMkdir, s.handleMkdir)
	handle("POST "+pathSandbox+opFileRemove, s.handleRemove)
	handle("POST "+pathSandbox+opFileMove, s.handleMove)
	handle("POST "+pathSandbox+opFileChmod, s.handleChmod)

	// Unknown routes, including known paths with another method.
	handle("/", func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("unknown operation %s %s; the provider server may be older than the client: %w",
			r.Method, r.URL.Path, provider.ErrNotImplemented)
	})
	return mux
}

// ServeHTTP authenticates a call, routes it and logs it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set(headerProtocol, strconv.Itoa(ProtocolVersion))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}

	if !s.authorized(r) {
		if n, ok := s.denied.allow(); ok {
			s.log.Warn("rejected a call without a valid token", "remote_addr", r.RemoteAddr,
				"method", r.Method, "path", r.URL.Path, "rejected_since_last_log", n)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="stacyvm-provider"`)
		s.writeError(rec, r, errUnauthorized)
		return
	}

	s.mux.ServeHTTP(rec, r)
	s.log.Debug("call", "method", r.Method, "path", r.URL.Path, "sandbox_id", r.PathValue("id"),
		"status", rec.status, "duration_ms", time.Since(start).Milliseconds())
}

// authorized reports whether r carries the token. The hashes have a fixed
// length, so the comparison takes the same time whatever the token sent.
func (s *Server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// Serve accepts connections on l until Shutdown or Close. It returns nil
// after either.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for the calls in
// progress. When ctx ends first, it stops the calls still running, which
// kills their commands and sends clients an "unavailable" error line,
// gives them a few seconds to finish, and closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err == nil {
		return nil
	}

	s.log.Warn("stopping calls still running at shutdown", "error", err)
	s.stop(errShuttingDown)
	killCtx, cancel := context.WithTimeout(context.Background(), killWait)
	defer cancel()
	if err := s.http.Shutdown(killCtx); err != nil {
		s.log.Warn("calls still running after they were stopped; closing their connections", "wait_ms", killWait.Milliseconds())
	}
	return s.http.Close()
}

// Close stops every call and closes every connection at once.
func (s *Server) Close() error {
	s.stop(errShuttingDown)
	return s.http.Close()
}

// writeError writes err as a JSON error response.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body, status := toErrorBody(s.callError(r, err))
	s.logFailure(r.Context(), r, status, err)
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// logFailure logs a failed call that the operator of this server may have
// to act on: an internal error, or a provider that is unavailable. Other
// errors are the caller's to handle, and a call whose ctx ended because
// the client went away is logged only at debug level.
func (s *Server) logFailure(ctx context.Context, r *http.Request, status int, err error) {
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errShuttingDown) {
		s.log.Debug("call ended: the client went away", "method", r.Method, "path", r.URL.Path,
			"sandbox_id", r.PathValue("id"), "cause", context.Cause(ctx))
		return
	}
	switch status {
	case http.StatusInternalServerError:
		s.log.Error("call failed", "method", r.Method, "path", r.URL.Path, "sandbox_id", r.PathValue("id"), "error", err)
	case http.StatusServiceUnavailable:
		s.log.Warn("call failed: provider unavailable", "method", r.Method, "path", r.URL.Path,
			"sandbox_id", r.PathValue("id"), "error", err)
	}
}

// callError replaces the cancellation of a call stopped by Shutdown with an
// error that names the shutdown and matches provider.ErrUnavailable.
func (s *Server) callError(r *http.Request, err error) error {
	if errors.Is(err, context.Canceled) && errors.Is(context.Cause(r.Context()), errShuttingDown) {
		return fmt.Errorf("%w: %w", errShuttingDown, provider.ErrUnavailable)
	}
	return err
}

// decodeJSON reads the whole request body, at most maxJSONBody bytes, and
// decodes it into v. Reading to the end lets the HTTP server notice when
// the client goes away during a long call. Unknown fields are ignored, so
// that a newer client's optional fields do not break an older server.
func decodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxJSONBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("request body exceeds %d bytes: %w", maxJSONBody, provider.ErrResourceLimit)
		}
		return fmt.Errorf("read request body: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode request body: %v: %w", err, provider.ErrInvalidArgument)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", contentJSON)
	_, _ = w.Write(data)
	return nil
}

// statusRecorder records the status of a response, for the call log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the underlying writer, for
// flushes and write deadlines.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// rateLimitedLog allows one log line per interval and counts the lines it
// suppressed.
type rateLimitedLog struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether a line may be logged now, with the number of
// lines suppressed since the last one.
func (l *rateLimitedLog) allow() (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}
