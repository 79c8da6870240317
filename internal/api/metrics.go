package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/store"
)

// metricsNamespace prefixes every StacyVM metric name.
const metricsNamespace = "stacyvm"

// Outcome labels besides the error codes of errorStatus.
const (
	outcomeOK       = "ok"
	outcomeCanceled = "CANCELED" // the caller went away before the call ended
)

// routeUnmatched is the route label of requests that match no route.
const routeUnmatched = "unmatched"

// sandboxScrapeTimeout bounds the store query behind the sandboxes gauge.
const sandboxScrapeTimeout = 5 * time.Second

// liveStates are the states that the sandboxes gauge reports. Destroyed
// records are history and grow without bound, so they are left out.
var liveStates = []store.State{store.StateCreating, store.StateRunning, store.StateError, store.StateDestroying}

// Metrics is the Prometheus registry of one server and the collectors that
// the API and the manager feed. It implements orchestrator.Metrics, so the
// same value is passed to orchestrator.Options and to Options. It is safe
// for concurrent use.
type Metrics struct {
	registry *prometheus.Registry

	spawn     *prometheus.HistogramVec // provider, outcome
	exec      *prometheus.HistogramVec // provider, outcome
	fileOps   *prometheus.HistogramVec // provider, op, outcome
	reconcile *prometheus.CounterVec   // action
	reaped    prometheus.Counter

	httpRequests *prometheus.CounterVec   // method, route, code
	httpDuration *prometheus.HistogramVec // method, route, code

	// manager is read at scrape time for the sandboxes gauge.
	manager atomic.Pointer[orchestrator.Manager]
}

var _ orchestrator.Metrics = (*Metrics)(nil)

// NewMetrics returns the metrics of one server in a registry of their own,
// with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	mx := &Metrics{
		registry: prometheus.NewRegistry(),
		spawn: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "spawn_duration_seconds",
			Help:      "Duration of admitted sandbox spawns, from the stored record to running or failure, by provider and outcome (ok or the API error code).",
			Buckets:   prometheus.ExponentialBuckets(0.05, 2, 13), // 50ms to about 205s
		}, []string{"provider", "outcome"}),
		exec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "exec_duration_seconds",
			Help:      "Duration of commands run in sandboxes, by provider and outcome (ok whatever the exit code, TIMEOUT, or the API error code).",
			Buckets:   prometheus.ExponentialBuckets(0.005, 4, 10), // 5ms to about 22m
		}, []string{"provider", "outcome"}),
		fileOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "file_operation_duration_seconds",
			Help:      "Duration of provider file calls by provider, operation and outcome (ok or the API error code). Reads end when the stream is open.",
			Buckets:   prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms to about 65s
		}, []string{"provider", "op", "outcome"}),
		reconcile: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "reconcile_actions_total",
			Help:      "Records and runtimes that reconcile changed, by action.",
		}, []string{"action"}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "reaped_sandboxes_total",
			Help:      "Expired sandboxes that the reaper destroyed.",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "http_requests_total",
			Help:      "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "http_request_duration_seconds",
			Help:      "Duration of HTTP requests by method, route pattern and status code. Streams count until they end.",
			Buckets:   prometheus.DefBuckets,
		}, []string{"method", "route", "code"}),
	}

	mx.registry.MustRegister(
		mx.spawn, mx.exec, mx.fileOps, mx.reconcile, mx.reaped,
		mx.httpRequests, mx.httpDuration,
		&sandboxCollector{mx: mx},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	// Zero series for each reconcile action, so that rate() works from the
	// first scrape on.
	for _, action := range []string{
		orchestrator.ReconcileRestored, orchestrator.ReconcileGone, orchestrator.ReconcileCleaned,
		orchestrator.ReconcileErrored, orchestrator.ReconcileAdopted, orchestrator.ReconcileRemoved,
		orchestrator.ReconcileFailed,
	} {
		mx.reconcile.WithLabelValues(action)
	}
	return mx
}

// Registry returns the registry that GET /metrics serves, for callers that
// add collectors of their own.
func (mx *Metrics) Registry() *prometheus.Registry { return mx.registry }

// ObserveSpawn implements orchestrator.Metrics.
func (mx *Metrics) ObserveSpawn(provider string, d time.Duration, err error) {
	mx.spawn.WithLabelValues(provider, outcome(err)).Observe(d.Seconds())
}

// ObserveExec implements orchestrator.Metrics.
func (mx *Metrics) ObserveExec(provider string, d time.Duration, err error) {
	mx.exec.WithLabelValues(provider, outcome(err)).Observe(d.Seconds())
}

// ObserveFileOp implements orchestrator.Metrics.
func (mx *Metrics) ObserveFileOp(provider, op string, d time.Duration, err error) {
	mx.fileOps.WithLabelValues(provider, op, outcome(err)).Observe(d.Seconds())
}

// CountReconcile implements orchestrator.Metrics.
func (mx *Metrics) CountReconcile(action string, n int) {
	mx.reconcile.WithLabelValues(action).Add(float64(n))
}

// CountReaped implements orchestrator.Metrics.
func (mx *Metrics) CountReaped(n int) {
	mx.reaped.Add(float64(n))
}

// outcome returns the outcome label of err: "ok" for nil, CANCELED when
// the caller went away, and otherwise the error code that the API would
// send, so that the labels and the error responses use one vocabulary.
func outcome(err error) string {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, context.Canceled):
		return outcomeCanceled
	}
	_, code, _ := errorStatus(err)
	return code
}

// setupMetrics makes s serve mx, or new metrics when mx is nil, and points
// the sandboxes gauge at s's manager.
func (s *server) setupMetrics(mx *Metrics) {
	if mx == nil {
		mx = NewMetrics()
	}
	if s.manager != nil {
		mx.manager.Store(s.manager)
	}
	s.metrics = mx
	s.metricsHandler = promhttp.HandlerFor(mx.registry, promhttp.HandlerOpts{
		ErrorLog:      promErrorLog{s},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      mx.registry, // counts promhttp's own errors
	})
}

// sandboxCollector reports the live sandboxes by provider and state,
// counted from the store at each scrape.
type sandboxCollector struct {
	mx *Metrics
}

var sandboxesDesc = prometheus.NewDesc(
	prometheus.BuildFQName(metricsNamespace, "", "sandboxes"),
	"Sandboxes that are not destroyed, by provider and state, counted from the store at scrape time.",
	[]string{"provider", "state"}, nil)

func (c *sandboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sandboxesDesc }

func (c *sandboxCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.mx.manager.Load()
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sandboxScrapeTimeout)
	defer cancel()
	live, err := m.List(ctx, store.Filter{Live: true})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(sandboxesDesc, err)
		return
	}

	type key struct{ provider, state string }
	counts := make(map[key]int)
	for _, name := range m.Providers().Names() {
		for _, state := range liveStates {
			counts[key{name, string(state)}] = 0
		}
	}
	for _, sb := range live {
		counts[key{sb.Provider, string(sb.State)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(sandboxesDesc, prometheus.GaugeValue, float64(n), k.provider, k.state)
	}
}

// serveMetrics handles GET /metrics in the Prometheus text format.
func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metricsHandler.ServeHTTP(w, r)
	return nil
}

// promErrorLog sends promhttp's error messages to the server's logger. The
// handler logs them and still serves the metrics that were collected.
type promErrorLog struct{ s *server }

func (l promErrorLog) Println(v ...any) {
	l.s.log.Warn("metrics collection failed", "op", "metrics", "error", strings.TrimSpace(fmt.Sprintln(v...)))
}

// measureRequests counts every request and its duration by method, route
// pattern and status. It runs inside logRequests, whose recorder holds
// the status.
func (s *server) measureRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			status := requestInfoFrom(r.Context()).rec.status
			if status == 0 {
				status = http.StatusOK // net/http sends 200 when the handler writes nothing
			}
			labels := []string{r.Method, s.routeLabel(r), strconv.Itoa(status)}
			s.metrics.httpRequests.WithLabelValues(labels...).Inc()
			s.metrics.httpDuration.WithLabelValues(labels...).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(w, r)
	})
}

// routeLabel returns the path pattern of the route that r matches, such
// as /api/v1/sandboxes/{id}, or "unmatched". Labelling by pattern keeps
// the number of series bounded whatever paths clients send.
func (s *server) routeLabel(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		return routeUnmatched
	}
	_, path, _ := strings.Cut(pattern, " ")
	return path
}
