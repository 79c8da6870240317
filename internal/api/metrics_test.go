package api

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// scrape fetches /metrics and parses it with the Prometheus text parser.
func (s *stack) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	resp := s.do("GET", "/metrics", nil)
	resp.wantStatus(s.t, http.StatusOK)
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		s.t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(resp.body))
	if err != nil {
		s.t.Fatalf("parse /metrics: %v\n%s", err, resp.body)
	}
	return families
}

// findMetric returns the metric of family name whose labels include every
// pair of labels, or nil.
func findMetric(families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	family, ok := families[name]
	if !ok {
		return nil
	}
	for _, m := range family.GetMetric() {
		have := make(map[string]string)
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// wantHistogramCount checks that the histogram series has count samples.
func wantHistogramCount(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string, count uint64) {
	t.Helper()
	m := findMetric(families, name, labels)
	if m == nil {
		t.Errorf("%s%v: series missing", name, labels)
		return
	}
	if got := m.GetHistogram().GetSampleCount(); got != count {
		t.Errorf("%s%v: got %d samples, want %d", name, labels, got, count)
	}
}

// wantValue checks the value of a counter or gauge series.
func wantValue(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string, value float64) {
	t.Helper()
	m := findMetric(families, name, labels)
	if m == nil {
		t.Errorf("%s%v: series missing", name, labels)
		return
	}
	got := m.GetCounter().GetValue() + m.GetGauge().GetValue()
	if got != value {
		t.Errorf("%s%v: got %v, want %v", name, labels, got, value)
	}
}

func TestMetricsAfterTraffic(t *testing.T) {
	s := newObservedStack(t, observedOptions{})
	running, destroyed := s.spawn(), s.spawn()
	s.do("DELETE", sandboxPath(destroyed, ""), nil).wantStatus(t, http.StatusOK)

	s.do("POST", sandboxPath(running, "/exec"), map[string]any{"command": "exit 4"}).wantStatus(t, http.StatusOK)
	s.do("POST", sandboxPath(running, "/exec"), map[string]any{"command": "sleep 5", "timeout": "100ms"}).
		wantStatus(t, http.StatusRequestTimeout)
	s.do("POST", sandboxPath(running, "/files"), map[string]any{"path": "a.txt", "content": "a"}).wantStatus(t, http.StatusOK)
	s.do("GET", sandboxPath(running, "/files?path=a.txt"), nil).wantStatus(t, http.StatusOK)
	s.do("GET", sandboxPath(running, "/files/stat?path=missing.txt"), nil).wantStatus(t, http.StatusNotFound)
	s.do("GET", "/api/v1/no-such-route", nil).wantStatus(t, http.StatusNotFound)

	// A runtime that the store does not know is adopted by reconcile.
	if err := s.provider.Spawn(t.Context(), provider.SpawnSpec{ID: "sb-adoptme00001"}); err != nil {
		t.Fatalf("spawn a runtime outside the manager: %v", err)
	}
	if _, err := s.manager.Reconcile(t.Context()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}

	// An expired sandbox is reaped.
	expiring := s.do("POST", "/api/v1/sandboxes", map[string]any{"ttl": "1s"})
	expiring.wantStatus(t, http.StatusCreated)
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.manager.Reap(t.Context()); err != nil {
		t.Fatalf("Reap: %v", err)
	}

	families := s.scrape()
	mock := func(labels ...string) map[string]string {
		m := map[string]string{"provider": "mock"}
		for i := 0; i+1 < len(labels); i += 2 {
			m[labels[i]] = labels[i+1]
		}
		return m
	}

	wantHistogramCount(t, families, "stacyvm_spawn_duration_seconds", mock("outcome", "ok"), 3)
	wantHistogramCount(t, families, "stacyvm_exec_duration_seconds", mock("outcome", "ok"), 1)
	wantHistogramCount(t, families, "stacyvm_exec_duration_seconds", mock("outcome", codeTimeout), 1)
	wantHistogramCount(t, families, "stacyvm_file_operation_duration_seconds", mock("op", "write_file", "outcome", "ok"), 1)
	wantHistogramCount(t, families, "stacyvm_file_operation_duration_seconds", mock("op", "read_file", "outcome", "ok"), 1)
	wantHistogramCount(t, families, "stacyvm_file_operation_duration_seconds", mock("op", "stat", "outcome", codeNotFound), 1)

	// The first sandbox and the adopted runtime run. The destroyed and
	// the expired sandboxes are not counted.
	wantValue(t, families, "stacyvm_sandboxes", mock("state", "running"), 2)
	wantValue(t, families, "stacyvm_sandboxes", mock("state", "error"), 0)
	wantValue(t, families, "stacyvm_reconcile_actions_total", map[string]string{"action": "adopted"}, 1)
	wantValue(t, families, "stacyvm_reconcile_actions_total", map[string]string{"action": "gone"}, 0)
	wantValue(t, families, "stacyvm_reaped_sandboxes_total", nil, 1)

	wantValue(t, families, "stacyvm_http_requests_total",
		map[string]string{"method": "POST", "route": "/api/v1/sandboxes", "code": "201"}, 3)
	wantValue(t, families, "stacyvm_http_requests_total",
		map[string]string{"method": "GET", "route": "/api/v1/sandboxes/{id}/files/stat", "code": "404"}, 1)
	wantValue(t, families, "stacyvm_http_requests_total",
		map[string]string{"method": "GET", "route": routeUnmatched, "code": "404"}, 1)
	wantHistogramCount(t, families, "stacyvm_http_request_duration_seconds",
		map[string]string{"method": "DELETE", "route": "/api/v1/sandboxes/{id}", "code": "200"}, 1)

	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := families[name]; !ok {
			t.Errorf("%s is missing; the Go and process collectors should be registered", name)
		}
	}
}

func TestMetricsRequireAPIKey(t *testing.T) {
	s := newObservedStack(t, observedOptions{apiKey: "s3cret"})

	req := s.newRequest(t.Context(), "GET", "/metrics", nil)
	req.Header.Del("X-API-Key")
	s.send(req).wantError(t, http.StatusUnauthorized, codeUnauthorized)

	req = s.newRequest(t.Context(), "GET", "/metrics", nil)
	req.Header.Del("X-API-Key")
	req.Header.Set("Authorization", "Bearer s3cret")
	s.send(req).wantStatus(t, http.StatusOK)
}

func TestMetricsWithoutManagerMetrics(t *testing.T) {
	// The shared test stack passes no Metrics, so New creates its own:
	// HTTP and sandbox figures are there, manager durations are not.
	s := newStack(t, stackOptions{})
	s.spawn()
	families := s.scrape()

	wantValue(t, families, "stacyvm_sandboxes", map[string]string{"provider": "mock", "state": "running"}, 1)
	if m := findMetric(families, "stacyvm_spawn_duration_seconds", nil); m != nil {
		t.Errorf("spawn durations reported without manager metrics: %v", m)
	}
}
