package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// maxRequestIDLen is the longest client-sent X-Request-ID that is kept.
const maxRequestIDLen = 128

// statusClientClosed is recorded in the access log for requests whose
// client went away before the response, as nginx does.
const statusClientClosed = 499

// CORS response headers.
const (
	corsAllowMethods  = "GET, POST, PUT, DELETE, OPTIONS"
	corsAllowHeaders  = "X-API-Key, Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-ID"
	corsExposeHeaders = "X-Request-ID, Location"
	corsMaxAge        = "600" // seconds a browser may cache a preflight response
)

// requestInfo is the per-request state that handlers, the error writer and
// the access log share. It lives in the request context.
type requestInfo struct {
	id        string    // request ID, echoed in X-Request-ID and error bodies
	op        string    // route operation, set by serveRoute
	sandboxID string    // {id} path value, set by serveRoute
	rec       *recorder // the response as written so far
}

type requestInfoKey struct{}

// requestInfoFrom returns the request's info. Outside the middleware chain
// it returns an empty info, so callers need no nil checks.
func requestInfoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{rec: &recorder{}}
}

// baseWriter returns the writer that the recorder wraps, or w when there
// is none, so that http.MaxBytesReader can tell the server to close the
// connection after an oversized body.
func (info *requestInfo) baseWriter(w http.ResponseWriter) http.ResponseWriter {
	if info.rec != nil && info.rec.ResponseWriter != nil {
		return info.rec.ResponseWriter
	}
	return w
}

// recorder records the status and size of a response for the access log
// and for handlers that must know whether the response has started.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and the deadlines of the
// underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// started reports whether the status line has been written.
func (rec *recorder) started() bool { return rec.status != 0 }

// logRequests assigns the request ID, echoes it in X-Request-ID, and writes
// one access log line per request when it ends.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{id: requestID(r), rec: &recorder{ResponseWriter: w}}
		w.Header().Set("X-Request-ID", info.id)
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))

		defer func() {
			level := slog.LevelInfo
			if r.URL.Path == "/api/v1/live" || r.URL.Path == "/api/v1/ready" {
				level = slog.LevelDebug // probes arrive every few seconds
			}
			s.log.Log(r.Context(), level, "http request",
				"method", r.Method,
				"path", r.URL.Path,
				"status", info.rec.status,
				"bytes", info.rec.bytes,
				"duration_ms", time.Since(start).Milliseconds(),
				"request_id", info.id,
				"sandbox_id", info.sandboxID,
				"op", info.op,
				"remote", r.RemoteAddr)
		}()

		next.ServeHTTP(info.rec, r)
	})
}

// requestID returns the client's X-Request-ID when it is 1 to 128
// printable ASCII characters, and a new random ID otherwise.
func requestID(r *http.Request) string {
	id := r.Header.Get("X-Request-ID")
	if id != "" && len(id) <= maxRequestIDLen && isPrintableASCII(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:]) // since Go 1.24, crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// recoverPanics turns a handler panic into a 500 response and an Error log
// with the stack. When the response has already started, it aborts the
// connection instead, so the client cannot take a cut-off body for a
// complete one.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}

			info := requestInfoFrom(r.Context())
			s.log.Error("handler panic",
				"request_id", info.id,
				"sandbox_id", info.sandboxID,
				"op", info.op,
				"panic", fmt.Sprint(v),
				"stack", string(debug.Stack()))
			if info.rec.started() {
				panic(http.ErrAbortHandler)
			}
			s.writeError(w, r, errPanic)
		}()
		next.ServeHTTP(w, r)
	})
}

// handleCORS adds CORS headers for allowed origins and responds to preflight
// requests before authentication, because browsers send preflights without
// credentials. With no allowed origins configured it does nothing.
func (s *server) handleCORS(next http.Handler) http.Handler {
	origins := s.cors.AllowedOrigins
	if len(origins) == 0 {
		return next
	}
	allowAny := slices.Contains(origins, "*")

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && (allowAny || slices.Contains(origins, origin))
		h := w.Header()
		if allowed {
			if allowAny {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
			}
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}

		preflight := r.Method == http.MethodOptions && origin != "" &&
			r.Header.Get("Access-Control-Request-Method") != ""
		if !preflight {
			next.ServeHTTP(w, r)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// requireAPIKey rejects requests without the configured API key, except on
// the public routes. With no key configured it does nothing.
func (s *server) requireAPIKey(next http.Handler) http.Handler {
	if s.apiKey == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.apiKey))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.publicPaths[r.URL.Path] || hasKey(r, want) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="stacyvm"`)
		s.writeError(w, r, errUnauthorized)
	})
}

// hasKey reports whether the request carries the key whose SHA-256 is want,
// in X-API-Key or as an Authorization bearer token. Comparing digests in
// constant time hides both the key and its length from timing.
func hasKey(r *http.Request, want [sha256.Size]byte) bool {
	candidates := []string{r.Header.Get("X-API-Key")}
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		candidates = append(candidates, strings.TrimSpace(token))
	}

	found := 0
	for _, key := range candidates {
		if key == "" {
			continue
		}
		got := sha256.Sum256([]byte(key))
		found |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return found == 1
}
