// Package api serves the StacyVM v1 REST API under /api/v1: routing,
// authentication, request validation, the mapping of errors to status codes,
// and NDJSON streaming of command output. It calls the sandbox manager and
// nothing below it. docs/rest-api.md describes the API for clients.
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/image"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
)

// Options are the dependencies and settings of the API handler.
type Options struct {
	Manager *orchestrator.Manager
	Logger  *slog.Logger // slog.Default() when nil
	Version string       // reported by /api/v1/health
	CORS    config.CORSConfig

	// Limits supplies MaxRequestBytes, MaxUploadBytes and
	// DefaultExecTimeout. Zero fields take the values of config.Default.
	Limits config.Limits

	// APIKey, when set, is required on every route except live and ready.
	APIKey config.Secret

	// Images is the image store behind /api/v1/images. When nil, the image
	// routes respond 501.
	Images *image.Store

	// Metrics collects what GET /metrics serves. Pass the same value to
	// orchestrator.Options.Metrics. When nil, New creates one, which then
	// lacks the manager's spawn, exec, file, reconcile and reaper figures.
	Metrics *Metrics

	// Events configures GET /api/v1/events.
	Events EventOptions
}

// Route describes one registered route, for documentation and tests.
type Route struct {
	Method  string // HTTP method
	Pattern string // path pattern in net/http.ServeMux syntax
	Public  bool   // served without an API key
}

// handlerFunc is a route handler. A returned error is written as the error
// response by serveRoute, unless the handler already started its response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one entry of the route table.
type route struct {
	method    string
	pattern   string
	op        string // operation name for logs
	handler   handlerFunc
	public    bool  // no API key needed
	bodyLimit int64 // maximum request body in bytes, 0 for the JSON limit
}

// server holds the state shared by all handlers.
type server struct {
	manager *orchestrator.Manager
	log     *slog.Logger
	limits  config.Limits
	version string
	cors    config.CORSConfig
	apiKey  config.Secret
	images  *image.Store
	started time.Time
	events  EventOptions

	metrics        *Metrics
	metricsHandler http.Handler

	mux         *http.ServeMux
	publicPaths map[string]bool
}

// New returns the HTTP handler of the REST API.
func New(opts Options) http.Handler {
	s := &server{
		manager:     opts.Manager,
		log:         opts.Logger,
		limits:      opts.Limits,
		version:     opts.Version,
		cors:        opts.CORS,
		apiKey:      opts.APIKey,
		images:      opts.Images,
		started:     time.Now(),
		events:      opts.Events.withDefaults(),
		mux:         http.NewServeMux(),
		publicPaths: make(map[string]bool),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	defaults := config.Default().Limits
	if s.limits.MaxRequestBytes == 0 {
		s.limits.MaxRequestBytes = defaults.MaxRequestBytes
	}
	if s.limits.MaxUploadBytes == 0 {
		s.limits.MaxUploadBytes = defaults.MaxUploadBytes
	}
	if s.limits.DefaultExecTimeout == 0 {
		s.limits.DefaultExecTimeout = defaults.DefaultExecTimeout
	}
	s.setupMetrics(opts.Metrics)

	for _, rt := range s.routes() {
		s.mux.Handle(rt.method+" "+rt.pattern, s.serveRoute(rt))
		if rt.public {
			s.publicPaths[rt.pattern] = true
		}
	}

	// The first middleware listed runs last, just before routing.
	var h http.Handler = http.HandlerFunc(s.dispatch)
	h = s.requireAPIKey(h)
	h = s.handleCORS(h)
	h = s.recoverPanics(h)
	h = s.measureRequests(h)
	h = s.logRequests(h)
	return h
}

// routes returns the route table. Handlers are method values on s, so the
// table of a zero server is usable for listing.
func (s *server) routes() []route {
	const p = "/api/v1"
	upload := s.limits.MaxUploadBytes
	return []route{
		{method: "GET", pattern: p + "/live", op: "live", handler: s.live, public: true},
		{method: "GET", pattern: p + "/ready", op: "ready", handler: s.ready, public: true},
		{method: "GET", pattern: p + "/health", op: "health", handler: s.health},
		{method: "GET", pattern: p + "/events", op: "events", handler: s.streamEvents},
		{method: "GET", pattern: p + "/openapi.json", op: "openapi", handler: s.openAPI},
		{method: "GET", pattern: "/metrics", op: "metrics", handler: s.serveMetrics},

		{method: "POST", pattern: p + "/sandboxes", op: "spawn", handler: s.spawnSandbox},
		{method: "GET", pattern: p + "/sandboxes", op: "list", handler: s.listSandboxes},
		{method: "GET", pattern: p + "/sandboxes/{id}", op: "get", handler: s.getSandbox},
		{method: "DELETE", pattern: p + "/sandboxes/{id}", op: "destroy", handler: s.destroySandbox},
		{method: "POST", pattern: p + "/sandboxes/{id}/extend", op: "extend", handler: s.extendSandbox},
		{method: "GET", pattern: p + "/sandboxes/{id}/logs", op: "logs", handler: s.sandboxLogs},
		{method: "GET", pattern: p + "/sandboxes/{id}/stats", op: "stats", handler: s.sandboxStats},
		{method: "POST", pattern: p + "/sandboxes/{id}/exec", op: "exec", handler: s.exec},

		{method: "POST", pattern: p + "/sandboxes/{id}/files", op: "write_file", handler: s.writeFileJSON},
		{method: "GET", pattern: p + "/sandboxes/{id}/files", op: "read_file", handler: s.readFile},
		{method: "PUT", pattern: p + "/sandboxes/{id}/files", op: "upload_file", handler: s.uploadFile, bodyLimit: upload},
		{method: "DELETE", pattern: p + "/sandboxes/{id}/files", op: "remove_file", handler: s.removeFile},
		{method: "GET", pattern: p + "/sandboxes/{id}/files/list", op: "list_dir", handler: s.listDir},
		{method: "GET", pattern: p + "/sandboxes/{id}/files/stat", op: "stat", handler: s.statFile},
		{method: "GET", pattern: p + "/sandboxes/{id}/files/glob", op: "glob", handler: s.globFiles},
		{method: "POST", pattern: p + "/sandboxes/{id}/files/move", op: "move", handler: s.moveFile},
		{method: "POST", pattern: p + "/sandboxes/{id}/files/chmod", op: "chmod", handler: s.chmodFile},
		{method: "POST", pattern: p + "/sandboxes/{id}/files/mkdir", op: "mkdir", handler: s.makeDir},
		{method: "GET", pattern: p + "/sandboxes/{id}/files/archive", op: "read_archive", handler: s.readArchive},
		{method: "PUT", pattern: p + "/sandboxes/{id}/files/archive", op: "write_archive", handler: s.writeArchive, bodyLimit: upload},

		{method: "POST", pattern: p + "/templates", op: "create_template", handler: s.createTemplate},
		{method: "GET", pattern: p + "/templates", op: "list_templates", handler: s.listTemplates},
		{method: "GET", pattern: p + "/templates/{name}", op: "get_template", handler: s.getTemplate},
		{method: "PUT", pattern: p + "/templates/{name}", op: "update_template", handler: s.updateTemplate},
		{method: "DELETE", pattern: p + "/templates/{name}", op: "delete_template", handler: s.deleteTemplate},
		{method: "POST", pattern: p + "/templates/{name}/spawn", op: "spawn_template", handler: s.spawnFromTemplate},

		// Image names contain slashes, so {name...} takes the rest of the path.
		{method: "GET", pattern: p + "/images", op: "list_images", handler: s.listImages},
		{method: "POST", pattern: p + "/images/pull", op: "pull_image", handler: s.pullImage},
		{method: "POST", pattern: p + "/images/prune", op: "prune_images", handler: s.pruneImages},
		{method: "GET", pattern: p + "/images/{name...}", op: "inspect_image", handler: s.inspectImage},
		{method: "DELETE", pattern: p + "/images/{name...}", op: "remove_image", handler: s.removeImage},
	}
}

// Routes lists every route that New registers.
func Routes() []Route {
	var s server
	table := s.routes()
	list := make([]Route, len(table))
	for i, rt := range table {
		list[i] = Route{Method: rt.method, Pattern: rt.pattern, Public: rt.public}
	}
	return list
}

// serveRoute adapts a handlerFunc: it records the operation and sandbox ID
// for logs, limits the request body, and writes a returned error.
func (s *server) serveRoute(rt route) http.Handler {
	limit := rt.bodyLimit
	if limit == 0 {
		limit = s.limits.MaxRequestBytes
	}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := requestInfoFrom(r.Context())
		info.op = rt.op
		info.sandboxID = r.PathValue("id")

		if limit > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(info.baseWriter(w), r.Body, limit)
		}

		if err := rt.handler(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// dispatch routes a request through the mux, responding to unknown paths
// and wrong methods with JSON error bodies instead of the mux's plain text.
func (s *server) dispatch(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}

	// The mux's own handler for an unmatched request writes 404, 405 with
	// an Allow header, or a redirect to the cleaned path. Run it against a
	// probe to learn which, then respond in JSON.
	h, _ := s.mux.Handler(r)
	probe := newProbeWriter()
	h.ServeHTTP(probe, r)

	switch probe.status {
	case http.StatusMethodNotAllowed:
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.writeError(w, r, &requestError{
			kind: errMethodNotAllowed,
			msg:  "method " + r.Method + " is not allowed on " + r.URL.Path + "; allowed methods: " + allow,
		})
	case http.StatusNotFound:
		s.writeError(w, r, &requestError{
			kind: errRouteNotFound,
			msg:  "no route for " + r.Method + " " + r.URL.Path,
		})
	default:
		for key, values := range probe.header {
			w.Header()[key] = values
		}
		w.WriteHeader(probe.status)
	}
}

// probeWriter captures the status and headers of a response and discards
// its body.
type probeWriter struct {
	header http.Header
	status int
}

func newProbeWriter() *probeWriter { return &probeWriter{header: make(http.Header)} }

func (p *probeWriter) Header() http.Header { return p.header }

func (p *probeWriter) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}

func (p *probeWriter) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}
