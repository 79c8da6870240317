package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Validate checks the configuration and returns every problem at once,
// joined with errors.Join. Each problem names the key, the value and what
// to change.
func (c Config) Validate() error {
	var p problems

	p.checkListen(c.Listen)
	if strings.TrimSpace(c.DataDir) == "" {
		p.addf("data_dir is empty: set it to a directory for the database and sandbox files, such as /var/lib/stacyvm")
	}
	if strings.TrimSpace(c.DefaultProvider) == "" {
		p.addf(`default_provider is empty: set a provider name such as "docker" or "mock", or "auto"`)
	}
	p.oneOf("log.format", c.Log.Format, "text", "json")
	p.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")

	p.checkLimits(c.Limits)
	p.checkManager(c.Manager)
	p.positiveDuration("shutdown_timeout", c.ShutdownTimeout)
	p.checkAuth(c)
	p.checkCORS(c.CORS.AllowedOrigins)
	p.checkImages(c.Images)

	return errors.Join(p...)
}

// IsLoopback reports whether the listen address accepts connections only
// from this host: a loopback IP or "localhost". An empty host listens on
// every interface, and other host names are not resolved, so both count as
// not loopback.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type problems []error

func (p *problems) addf(format string, args ...any) {
	*p = append(*p, fmt.Errorf(format, args...))
}

func (p *problems) checkListen(listen string) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		p.addf("listen %q is invalid: use host:port, such as 127.0.0.1:7423 or :7423 for every interface", listen)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		p.addf("listen %q has an invalid port %q: use a number from 0 to 65535", listen, port)
	}
	if strings.ContainsAny(host, " \t/") {
		p.addf("listen %q has an invalid host %q: use an IP address or host name", listen, host)
	}
}

func (p *problems) oneOf(key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	p.addf("%s %q is invalid: use one of %s", key, value, strings.Join(allowed, ", "))
}

func (p *problems) positive(key string, value int64) {
	if value <= 0 {
		p.addf("%s is %d: it must be greater than 0", key, value)
	}
}

func (p *problems) notNegative(key string, value int64) {
	if value < 0 {
		p.addf("%s is %d: it must be 0 (no cap) or greater", key, value)
	}
}

func (p *problems) positiveDuration(key string, d time.Duration) {
	if d <= 0 {
		p.addf("%s is %s: it must be a positive duration, such as 30s", key, d)
	}
}

// atMost reports a default above its maximum, naming both keys. It assumes
// the two values were already checked to be positive.
func (p *problems) atMost(defKey string, def int64, maxKey string, maxValue int64, format func(int64) string) {
	if def > 0 && maxValue > 0 && def > maxValue {
		p.addf("%s (%s) is greater than %s (%s): lower the default or raise the maximum",
			defKey, format(def), maxKey, format(maxValue))
	}
}

func formatInt(n int64) string      { return strconv.FormatInt(n, 10) }
func formatDuration(n int64) string { return time.Duration(n).String() }

func (p *problems) checkLimits(l Limits) {
	p.positive("limits.default_memory_mb", int64(l.DefaultMemoryMB))
	p.positive("limits.max_memory_mb", int64(l.MaxMemoryMB))
	p.atMost("limits.default_memory_mb", int64(l.DefaultMemoryMB), "limits.max_memory_mb", int64(l.MaxMemoryMB), formatInt)

	p.positive("limits.default_vcpus", int64(l.DefaultVCPUs))
	p.positive("limits.max_vcpus", int64(l.MaxVCPUs))
	p.atMost("limits.default_vcpus", int64(l.DefaultVCPUs), "limits.max_vcpus", int64(l.MaxVCPUs), formatInt)

	p.positiveDuration("limits.default_ttl", l.DefaultTTL)
	p.positiveDuration("limits.max_ttl", l.MaxTTL)
	p.atMost("limits.default_ttl", int64(l.DefaultTTL), "limits.max_ttl", int64(l.MaxTTL), formatDuration)

	p.positiveDuration("limits.default_exec_timeout", l.DefaultExecTimeout)
	p.positiveDuration("limits.max_exec_timeout", l.MaxExecTimeout)
	p.atMost("limits.default_exec_timeout", int64(l.DefaultExecTimeout), "limits.max_exec_timeout", int64(l.MaxExecTimeout), formatDuration)

	p.positive("limits.max_output_bytes", l.MaxOutputBytes)
	p.positive("limits.max_request_bytes", l.MaxRequestBytes)
	p.positive("limits.max_upload_bytes", l.MaxUploadBytes)
	p.notNegative("limits.max_sandboxes", int64(l.MaxSandboxes))
	p.notNegative("limits.max_sandboxes_per_owner", int64(l.MaxSandboxesPerOwner))
	p.positiveDuration("limits.idempotency_window", l.IdempotencyWindow)
}

func (p *problems) checkManager(m ManagerConfig) {
	p.positiveDuration("manager.reap_interval", m.ReapInterval)
	p.positive("manager.reap_parallelism", int64(m.ReapParallelism))
	p.positiveDuration("manager.reconcile_interval", m.ReconcileInterval)
	p.positiveDuration("manager.event_retention", m.EventRetention)
}

// checkAuth rejects an API key with surrounding whitespace, which clients
// cannot send in a header, and a listen address reachable from other hosts
// without an API key unless the operator accepted that explicitly.
func (p *problems) checkAuth(c Config) {
	key := string(c.Auth.APIKey)
	if key != strings.TrimSpace(key) || strings.ContainsAny(key, "\r\n") {
		p.addf("auth.api_key contains whitespace or line breaks: remove them")
	}

	if key != "" || c.Auth.InsecureNoAuth {
		return
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return // already reported by checkListen
	}
	if !IsLoopback(c.Listen) {
		p.addf("listen %q accepts connections from other hosts but auth.api_key is empty, "+
			"so anyone who reaches the port could run commands on this host: "+
			"set an API key (--api-key or %s), listen on 127.0.0.1, "+
			"or set auth.insecure_no_auth (--insecure-no-auth) to accept the risk",
			c.Listen, envName("auth.api_key"))
	}
}

func (p *problems) checkCORS(origins []string) {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			p.addf("cors.allowed_origins entry %q is invalid: use \"*\" or an origin such as https://app.example.com", o)
		}
	}
}

// checkImages rejects a store directory with surrounding whitespace and
// registry entries that are not a bare host or host:port, such as URLs.
func (p *problems) checkImages(c ImagesConfig) {
	if c.Dir != strings.TrimSpace(c.Dir) {
		p.addf("images.dir %q has surrounding whitespace: remove it, or leave the key unset for data_dir/images", c.Dir)
	}
	for _, host := range c.InsecureRegistries {
		if !validRegistryHost(host) {
			p.addf("images.insecure_registries entry %q is invalid: use a host or host:port, such as registry.lan:5000, without a scheme or path", host)
		}
	}
}

// validRegistryHost reports whether s is a host name or IP address with an
// optional port, as image references name registries.
func validRegistryHost(s string) bool {
	if s == "" || strings.ContainsAny(s, "/ \t@?#") {
		return false
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return false
		}
		host = h
	}
	if net.ParseIP(host) != nil {
		return true
	}
	return host != "" && !strings.Contains(host, ":")
}
