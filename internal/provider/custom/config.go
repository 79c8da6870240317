package custom

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/provider"
)

// Config configures the client provider. It is the providers.custom
// section of the server configuration; ParseSettings decodes it.
type Config struct {
	// BaseURL is the provider server's URL, http or https, such as
	// "http://10.0.0.5:7424". Required. It must not contain a user name or
	// password; the key goes in APIKey.
	BaseURL string

	// APIKey is sent on every call as "Authorization: Bearer KEY". The
	// provider server requires it; a third-party backend may not.
	APIKey config.Secret

	// DialTimeout bounds opening a connection, including the TLS handshake.
	// Default 5s.
	DialTimeout time.Duration

	// ResponseHeaderTimeout bounds the wait for the response headers of a
	// call, counted from the end of the request body. Spawn and Destroy are
	// exempt because they may take as long as a runtime needs, and are
	// bounded only by their context. Default 30s.
	ResponseHeaderTimeout time.Duration

	// HeartbeatInterval is the quiet time after which the server sends a
	// heartbeat line in an exec stream. An exec fails with
	// provider.ErrUnavailable when nothing arrives for heartbeatMisses
	// intervals. Default 2s.
	HeartbeatInterval time.Duration

	// IdleTimeout bounds the wait for the next bytes of a response body
	// other than an exec stream: a download, an archive or a JSON result.
	// Default 60s.
	IdleTimeout time.Duration

	// ExecGrace is added to an exec's timeout to bound the whole call, for
	// the backend to kill the command and send the exit line. Default 10s.
	ExecGrace time.Duration

	// Logger receives the provider's warnings. Nil discards them.
	Logger *slog.Logger
}

// heartbeatMisses is how many heartbeat intervals an exec stream may stay
// silent before the client gives up on the backend.
const heartbeatMisses = 3

// Defaults of Config.
const (
	defaultDialTimeout           = 5 * time.Second
	defaultResponseHeaderTimeout = 30 * time.Second
	defaultIdleTimeout           = time.Minute
	defaultExecGrace             = 10 * time.Second
)

// withDefaults returns c with zero durations replaced by their defaults.
func (c Config) withDefaults() Config {
	for _, d := range []struct {
		field *time.Duration
		value time.Duration
	}{
		{&c.DialTimeout, defaultDialTimeout},
		{&c.ResponseHeaderTimeout, defaultResponseHeaderTimeout},
		{&c.HeartbeatInterval, defaultHeartbeat},
		{&c.IdleTimeout, defaultIdleTimeout},
		{&c.ExecGrace, defaultExecGrace},
	} {
		if *d.field == 0 {
			*d.field = d.value
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field at once. Zero durations are valid
// and take their defaults.
func (c Config) Validate() error {
	var errs []error
	if _, err := parseBaseURL(c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"dial_timeout", c.DialTimeout},
		{"response_header_timeout", c.ResponseHeaderTimeout},
		{"heartbeat_interval", c.HeartbeatInterval},
		{"idle_timeout", c.IdleTimeout},
		{"exec_grace", c.ExecGrace},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("providers.custom.%s is negative (%s); set a positive duration such as 5s", d.key, d.value))
		}
	}
	if c.HeartbeatInterval != 0 && (c.HeartbeatInterval < minHeartbeat || c.HeartbeatInterval > maxHeartbeat) {
		errs = append(errs, fmt.Errorf("providers.custom.heartbeat_interval %s is outside %s to %s",
			c.HeartbeatInterval, minHeartbeat, maxHeartbeat))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", err, provider.ErrInvalidArgument)
	}
	return nil
}

// parseBaseURL checks that raw is an http or https URL without user
// information, query or fragment, and returns it without a trailing slash.
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("providers.custom.base_url is not set; set it to the URL of a stacyvm provider-server, such as http://127.0.0.1:7424")
	}
	u, err := url.Parse(raw)
	var parseErr *url.Error
	switch {
	case errors.As(err, &parseErr):
		// The URL is not printed, because it may contain a password.
		return nil, fmt.Errorf("providers.custom.base_url is not a valid URL: %v", parseErr.Err)
	case err != nil:
		return nil, fmt.Errorf("providers.custom.base_url is not a valid URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("providers.custom.base_url %q must start with http:// or https://", raw)
	case u.Host == "":
		return nil, fmt.Errorf("providers.custom.base_url %q has no host", raw)
	case u.User != nil:
		return nil, errors.New("providers.custom.base_url contains a user name or password; remove it and set providers.custom.api_key")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("providers.custom.base_url %q must not have a query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// settingKeys lists the keys of the providers.custom section.
var settingKeys = []string{
	"base_url", "api_key", "dial_timeout", "response_header_timeout",
	"heartbeat_interval", "idle_timeout", "exec_grace",
}

// ParseSettings decodes the providers.custom section of the server
// configuration, whose values are strings, numbers or booleans. Durations
// are strings in Go syntax, such as "5s". Every problem is reported at
// once.
func ParseSettings(settings map[string]any) (Config, error) {
	var (
		cfg  Config
		errs []error
	)
	str := func(key string) string {
		v, ok := settings[key]
		if !ok {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			// The value is not printed, because it may be the API key.
			errs = append(errs, fmt.Errorf("providers.custom.%s must be a string, got a %T; quote the value", key, v))
		}
		return s
	}
	duration := func(key string) time.Duration {
		s := str(key)
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("providers.custom.%s %q is not a duration; use Go syntax such as 5s", key, s))
		}
		return d
	}

	for _, key := range slices.Sorted(maps.Keys(settings)) {
		if !slices.Contains(settingKeys, key) {
			errs = append(errs, fmt.Errorf("unknown key providers.custom.%s (valid keys: %s)", key, strings.Join(settingKeys, ", ")))
		}
	}
	cfg.BaseURL = str("base_url")
	cfg.APIKey = config.Secret(str("api_key"))
	cfg.DialTimeout = duration("dial_timeout")
	cfg.ResponseHeaderTimeout = duration("response_header_timeout")
	cfg.HeartbeatInterval = duration("heartbeat_interval")
	cfg.IdleTimeout = duration("idle_timeout")
	cfg.ExecGrace = duration("exec_grace")

	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("%w: %w", err, provider.ErrInvalidArgument)
	}
	return cfg, nil
}
