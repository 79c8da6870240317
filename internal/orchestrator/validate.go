package orchestrator

import (
	"crypto/rand"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Input limits that do not depend on configuration.
const (
	maxImageLen       = 512  // bytes in an image reference
	maxRuntimeLen     = 64   // bytes in a runtime name
	maxOwnerIDLen     = 256  // characters in an owner ID
	maxMetadataKeys   = 64   // keys in a metadata map
	maxMetadataKeyLen = 63   // characters in a metadata key
	maxMetadataValLen = 1024 // characters in a metadata value
)

// workspace is the working directory of commands and the base of relative
// paths.
const workspace = "/workspace"

// FieldError is an invalid request field. It unwraps to
// provider.ErrInvalidArgument, and its message names the field and the fix,
// such as "memory_mb must be positive, got -5".
type FieldError struct {
	Field   string // request field, such as "memory_mb" or "env"
	Problem string // what is wrong and how to fix it
}

func (e *FieldError) Error() string { return e.Field + " " + e.Problem }

func (e *FieldError) Unwrap() error { return provider.ErrInvalidArgument }

// invalid returns a *FieldError for field.
func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// newID returns a new sandbox ID: "sb-" and 12 lowercase base32 characters
// (60 random bits).
func newID() string {
	return "sb-" + strings.ToLower(rand.Text()[:12])
}

// validateImage checks an image reference. Empty selects the provider's
// default image.
func validateImage(image string) error {
	if image == "" {
		return nil
	}
	if len(image) > maxImageLen {
		return invalid("image", "must be at most %d bytes, got %d", maxImageLen, len(image))
	}
	if strings.HasPrefix(image, "-") {
		return invalid("image", "must not start with '-', got %q", image)
	}
	for _, c := range image {
		if !isImageChar(c) {
			return invalid("image", "contains %q; an image reference may contain only "+
				"letters, digits and . _ - / : @", c)
		}
	}
	return nil
}

func isImageChar(c rune) bool {
	return isASCIILetterOrDigit(c) || strings.ContainsRune("._-/:@", c)
}

// validateRuntime checks a runtime name against the runtimes that the
// provider offers. Empty selects the provider's default runtime.
func validateRuntime(runtime string, p provider.Provider) error {
	if runtime == "" {
		return nil
	}
	if len(runtime) > maxRuntimeLen {
		return invalid("runtime", "must be at most %d bytes, got %d", maxRuntimeLen, len(runtime))
	}
	for _, c := range runtime {
		if !isASCIILetterOrDigit(c) && !strings.ContainsRune("._-", c) {
			return invalid("runtime", "contains %q; a runtime name may contain only letters, digits and . _ -", c)
		}
	}

	offered := p.Capabilities().Runtimes
	if !slices.Contains(offered, runtime) {
		list := "none"
		if len(offered) > 0 {
			list = strings.Join(offered, ", ")
		}
		return invalid("runtime", "%q is not offered by provider %s; available runtimes: %s",
			runtime, p.Name(), list)
	}
	return nil
}

// validateOwnerID checks an owner ID, which is stored as a label on the
// runtime.
func validateOwnerID(owner string) error {
	if n := utf8.RuneCountInString(owner); n > maxOwnerIDLen {
		return invalid("owner_id", "must be at most %d characters, got %d", maxOwnerIDLen, n)
	}
	if err := checkText(owner); err != "" {
		return invalid("owner_id", "%s", err)
	}
	return nil
}

// validateEnv checks environment variables: each key must be a valid shell
// variable name, and each value UTF-8 text without NUL bytes, which execve
// cannot pass. field names the request field in errors.
func validateEnv(field string, env map[string]string) error {
	for _, key := range sortedKeys(env) {
		if !isShellName(key) {
			return invalid(field, "key %q is not a valid variable name; use letters, digits and "+
				"underscores, not starting with a digit", key)
		}
		if value := env[key]; !utf8.ValidString(value) || strings.IndexByte(value, 0) >= 0 {
			return invalid(field, "value of %s must be UTF-8 text without NUL bytes", key)
		}
	}
	return nil
}

// isShellName reports whether s matches [A-Za-z_][A-Za-z0-9_]*.
func isShellName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !isASCIILetterOrDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

// validateMetadata checks user metadata, which providers store as runtime
// labels: at most 64 keys, keys of 1 to 63 characters without control
// characters, whitespace or '=', and values of at most 1024 characters.
func validateMetadata(md map[string]string) error {
	if len(md) > maxMetadataKeys {
		return invalid("metadata", "must have at most %d keys, got %d", maxMetadataKeys, len(md))
	}
	for _, key := range sortedKeys(md) {
		n := utf8.RuneCountInString(key)
		if n == 0 || n > maxMetadataKeyLen {
			return invalid("metadata", "key %q must be 1 to %d characters, got %d", key, maxMetadataKeyLen, n)
		}
		if strings.ContainsFunc(key, func(c rune) bool { return unicode.IsSpace(c) || c == '=' }) {
			return invalid("metadata", "key %q must not contain whitespace or '='", key)
		}
		if err := checkText(key); err != "" {
			return invalid("metadata", "key %q %s", key, err)
		}

		value := md[key]
		if n := utf8.RuneCountInString(value); n > maxMetadataValLen {
			return invalid("metadata", "value of %q must be at most %d characters, got %d", key, maxMetadataValLen, n)
		}
		if !utf8.ValidString(value) || strings.IndexByte(value, 0) >= 0 {
			return invalid("metadata", "value of %q must be UTF-8 text without NUL bytes", key)
		}
	}
	return nil
}

// checkText returns why s is not printable UTF-8 text, or "" when it is.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "must not contain control characters"
	}
	return ""
}

// sizeOrDefault applies the default to a zero size and checks it against
// the maximum. limit names the maximum for the LimitError.
func sizeOrDefault(field string, got, def, max int, limit string) (int, error) {
	switch {
	case got < 0:
		return 0, invalid(field, "must be positive, or 0 for the default of %d, got %d", def, got)
	case got == 0:
		return def, nil
	case got > max:
		return 0, &provider.LimitError{Limit: limit, Value: strconv.Itoa(max), Got: strconv.Itoa(got)}
	}
	return got, nil
}

// durationOrDefault applies the default to a zero duration and checks it
// against the maximum. limit names the maximum for the LimitError.
func durationOrDefault(field string, got, def, max time.Duration, limit string) (time.Duration, error) {
	switch {
	case got < 0:
		return 0, invalid(field, "must be positive, or 0 for the default of %s, got %s", def, got)
	case got == 0:
		return def, nil
	case got > max:
		return 0, &provider.LimitError{Limit: limit, Value: max.String(), Got: got.String()}
	}
	return got, nil
}

// resolvePath turns a request path into an absolute, clean sandbox path.
// Relative paths are taken from /workspace.
func resolvePath(field, p string) (string, error) {
	if p == "" {
		return "", invalid(field, "must not be empty; give an absolute path or one relative to %s", workspace)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", invalid(field, "contains a NUL byte")
	}
	if !path.IsAbs(p) {
		p = path.Join(workspace, p)
	}
	return path.Clean(p), nil
}

// resolveWorkdir is resolvePath with an empty workdir meaning /workspace.
func resolveWorkdir(dir string) (string, error) {
	if dir == "" {
		return workspace, nil
	}
	return resolvePath("workdir", dir)
}

// resolvePattern resolves a glob pattern like a path and checks its syntax.
func resolvePattern(pattern string) (string, error) {
	abs, err := resolvePath("pattern", pattern)
	if err != nil {
		return "", err
	}
	if _, err := path.Match(abs, ""); err != nil {
		return "", invalid("pattern", "is malformed: %q", pattern)
	}
	return abs, nil
}

func isASCIILetterOrDigit(c rune) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// sortedKeys returns the keys of m sorted, so that validation reports the
// same first problem every time.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
