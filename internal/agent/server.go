package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/fileops"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// DefaultPath is the PATH given to commands when the agent's own
// environment has none, as happens for PID 1 in some images.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxStreams is the number of calls one connection may have in progress.
// A client queues further calls until one ends.
const maxStreams = 1024

// killWait bounds the wait for calls to end after Shutdown killed their
// commands.
const killWait = 3 * time.Second

// errShuttingDown is the cancel cause of the calls that Shutdown stops.
var errShuttingDown = errors.New("agent is shutting down")

// Config configures a Server.
type Config struct {
	// Root is the host directory in which file paths and exec working
	// directories are resolved. Inside a sandbox it is "/". Any other
	// directory is the host test mode, in which the agent runs on the host
	// without a sandbox.
	Root string

	// Env is the base environment of every command, as KEY=VALUE. When it
	// has no PATH, DefaultPath is added.
	Env []string

	// AgentVersion is the release reported by GET /v1/version.
	AgentVersion string

	// OOMKills returns the OOM kill counter of the sandbox's memory cgroup
	// and whether it could be read. When it is set, a command killed by
	// SIGKILL while the counter grew is reported with exit reason "oom".
	// Nil disables the check.
	OOMKills func() (uint64, bool)

	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
}

// Server serves the agent protocol. Create it with NewServer.
type Server struct {
	cfg   Config
	files *fileops.FS
	log   *slog.Logger
	http  *http.Server
	mux   map[string]route

	base context.Context         // parent of every call's context
	stop context.CancelCauseFunc // cancels base with errShuttingDown
}

// route is one operation: its method and handler. A handler returns an
// error only while it has not written the response; the server then writes
// the error body.
type route struct {
	method  string
	handler func(http.ResponseWriter, *http.Request) error
}

// NewServer returns a server for cfg. It opens cfg.Root for the file API.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		return nil, fmt.Errorf("agent server: root directory is empty: %w", provider.ErrInvalidArgument)
	}
	files, err := fileops.Open(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("agent server: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if envValue(cfg.Env, "PATH") == "" {
		cfg.Env = append(cfg.Env[:len(cfg.Env):len(cfg.Env)], "PATH="+DefaultPath)
	}

	s := &Server{cfg: cfg, files: files, log: cfg.Logger}
	s.base, s.stop = context.WithCancelCause(context.Background())
	s.mux = s.routes()

	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP1(true) // for people debugging with curl
	s.http = &http.Server{
		Handler:     s,
		Protocols:   protocols,
		HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		BaseContext: func(net.Listener) context.Context { return s.base },
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func (s *Server) routes() map[string]route {
	return map[string]route{
		pathVersion:     {http.MethodGet, s.handleVersion},
		pathPing:        {http.MethodGet, s.handlePing},
		pathExec:        {http.MethodPost, s.handleExec},
		pathFileContent: {"", s.handleContent},
		pathFileArchive: {"", s.handleArchive},
		pathFileStat:    {http.MethodPost, s.handleStat},
		pathFileList:    {http.MethodPost, s.handleList},
		pathFileMkdir:   {http.MethodPost, s.handleMkdir},
		pathFileRemove:  {http.MethodPost, s.handleRemove},
		pathFileMove:    {http.MethodPost, s.handleMove},
		pathFileChmod:   {http.MethodPost, s.handleChmod},
		pathFileGlob:    {http.MethodPost, s.handleGlob},
	}
}

// Serve accepts connections on l until Shutdown or Close. It returns nil
// after Shutdown and Close. Serve may be called for several listeners.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and calls, and waits for the calls
// in progress to end. When ctx ends first, it kills the commands still
// running, gives their calls a few seconds to send the final frame, and
// closes every connection. It always releases the root.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.files.Close()
	err := s.http.Shutdown(ctx)
	if err == nil {
		return nil
	}

	s.log.Warn("killing commands still running at shutdown", "error", err)
	s.stop(errShuttingDown)

	// Shutdown may be called again: it waits for the calls whose commands
	// were just killed to send their last frame.
	killCtx, cancel := context.WithTimeout(context.Background(), killWait)
	defer cancel()
	if err := s.http.Shutdown(killCtx); err != nil {
		s.log.Warn("calls still in progress after their commands were killed", "wait_ms", killWait.Milliseconds())
	}
	return s.http.Close()
}

// Close kills every running command and closes every connection at once.
func (s *Server) Close() error {
	s.stop(errShuttingDown)
	err := s.http.Close()
	_ = s.files.Close()
	return err
}

// ServeHTTP routes a call and writes the error of a handler that failed
// before it wrote a response.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerProtocol, strconv.Itoa(ProtocolVersion))

	rt, ok := s.mux[r.URL.Path]
	var err error
	switch {
	case !ok:
		err = &remoteError{code: codeNotFound, message: "unknown operation " + r.URL.Path + "; the agent may be older than this client"}
	case rt.method != "" && r.Method != rt.method:
		err = fmt.Errorf("%w: %s needs method %s, got %s", provider.ErrInvalidArgument, r.URL.Path, rt.method, r.Method)
	default:
		err = rt.handler(w, r)
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// writeError writes err as a JSON error response.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body, status := toErrorBody(s.callError(r, err))
	s.logInternal(r, status, err)
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// logInternal logs an error that has no code a caller can act on. Errors
// with such a code are the caller's to handle and are not logged.
func (s *Server) logInternal(r *http.Request, status int, err error) {
	if status == http.StatusInternalServerError {
		s.log.Error("call failed", "op", r.URL.Path, "error", err)
	}
}

// callError replaces the cancellation of a call stopped by Shutdown with an
// error that names the shutdown and matches provider.ErrUnavailable.
func (s *Server) callError(r *http.Request, err error) error {
	if errors.Is(err, context.Canceled) && errors.Is(context.Cause(r.Context()), errShuttingDown) {
		return fmt.Errorf("%w: %w", provider.ErrUnavailable, errShuttingDown)
	}
	return err
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, VersionInfo{Protocol: ProtocolVersion, Revision: ProtocolRevision, AgentVersion: s.cfg.AgentVersion})
	return nil
}

func (s *Server) handlePing(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeJSON decodes the JSON request body into v. Unknown fields are
// ignored, so that a newer client's optional fields do not break an older
// agent.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxJSONBody))
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("%w: request body exceeds %d bytes", provider.ErrResourceLimit, maxJSONBody)
		}
		return fmt.Errorf("%w: decode request body: %v", provider.ErrInvalidArgument, err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", contentJSON)
	_, _ = w.Write(mustJSON(v))
}

// envValue returns the last value of key in env.
func envValue(env []string, key string) string {
	value := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value = v
		}
	}
	return value
}
