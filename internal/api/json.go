package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// sandboxJSON is the wire form of a sandbox. Times are RFC 3339 in UTC.
type sandboxJSON struct {
	ID        string            `json:"id"`
	State     store.State       `json:"state"`
	Provider  string            `json:"provider"`
	Image     string            `json:"image"`
	MemoryMB  int               `json:"memory_mb"`
	VCPUs     int               `json:"vcpus"`
	OwnerID   string            `json:"owner_id"`
	CreatedAt string            `json:"created_at"`
	ExpiresAt string            `json:"expires_at"`
	Metadata  map[string]string `json:"metadata"`

	// Fields added to the v1 shape.
	Runtime     string `json:"runtime"`
	Network     bool   `json:"network"`
	Template    string `json:"template,omitempty"` // template the sandbox was spawned from
	Error       string `json:"error,omitempty"`
	UpdatedAt   string `json:"updated_at"`
	DestroyedAt string `json:"destroyed_at,omitempty"`
}

// toSandboxJSON converts a store record to its wire form. The environment
// is left out because it may hold secrets.
func toSandboxJSON(sb store.Sandbox) sandboxJSON {
	metadata := sb.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	return sandboxJSON{
		ID:          sb.ID,
		State:       sb.State,
		Provider:    sb.Provider,
		Image:       sb.Image,
		MemoryMB:    sb.MemoryMB,
		VCPUs:       sb.VCPUs,
		OwnerID:     sb.OwnerID,
		CreatedAt:   formatTime(sb.CreatedAt),
		ExpiresAt:   formatTime(sb.ExpiresAt),
		Metadata:    metadata,
		Runtime:     sb.Runtime,
		Network:     sb.Network,
		Template:    sb.Template,
		Error:       sb.Error,
		UpdatedAt:   formatTime(sb.UpdatedAt),
		DestroyedAt: formatTime(sb.DestroyedAt),
	}
}

// formatTime formats t as RFC 3339 in UTC, and the zero time as "".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// fileJSON is the wire form of a file system entry.
type fileJSON struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	Mode       string `json:"mode"` // permission bits as an octal string, such as "0644"
	IsDir      bool   `json:"is_dir"`
	Type       string `json:"type"` // "file", "dir", "symlink" or "other"
	ModTime    string `json:"mod_time"`
	LinkTarget string `json:"link_target"` // "" unless the entry is a symlink
}

func toFileJSON(fi provider.FileInfo) fileJSON {
	return fileJSON{
		Name:       fi.Name,
		Path:       fi.Path,
		Size:       fi.Size,
		Mode:       formatMode(fi.Mode),
		IsDir:      fi.IsDir(),
		Type:       string(fi.Type),
		ModTime:    formatTime(fi.ModTime),
		LinkTarget: fi.LinkTarget,
	}
}

func toFileListJSON(infos []provider.FileInfo) []fileJSON {
	list := make([]fileJSON, len(infos))
	for i, fi := range infos {
		list[i] = toFileJSON(fi)
	}
	return list
}

// formatMode formats the permission bits of mode as four octal digits.
func formatMode(mode fs.FileMode) string {
	return fmt.Sprintf("%04o", mode.Perm())
}

// parseMode parses an octal permission string such as "0644", "644" or
// "0o644". An empty string gives def. field names the request field in
// errors.
func parseMode(field, s string, def fs.FileMode) (fs.FileMode, error) {
	if s == "" {
		return def, nil
	}
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	n, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || digits == "" || n > 0o777 {
		return 0, invalidf("%s must be an octal permission string from 0000 to 0777 such as \"0644\", got %q", field, s)
	}
	return fs.FileMode(n), nil
}

// parseDuration parses a Go duration string such as "10m" or "1h30m". An
// empty string gives zero, which the manager replaces by its default.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, invalidf("%s must be a Go duration string such as \"30s\", \"10m\" or \"1h30m\", got %q", field, s)
	}
	if d < 0 {
		return 0, invalidf("%s must not be negative, got %q", field, s)
	}
	return d, nil
}

// writeJSON writes v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Every wire type is a plain struct, map or slice of strings and
		// numbers, so Marshal cannot fail on them.
		panic(fmt.Sprintf("api: encode %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// decodeJSON decodes the request body, a single JSON object, into v. An
// empty body decodes as {}. Unknown fields, type mismatches, malformed JSON
// and trailing data give 400 errors that name the field and the fix. A body over the
// limit set by serveRoute gives the *http.MaxBytesError.
//
// decodeJSON reads the body to its end, which lets net/http notice a client
// that disconnects while the handler runs and cancel the request context.
func decodeJSON(r *http.Request, v any) error {
	if r.Body == nil {
		return nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidf("request body has data after the JSON object; send exactly one object")
	}
	return nil
}

// jsonError turns a decoding error into a 400 error that names the field.
func jsonError(err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntaxErr):
		return invalidf("request body is not valid JSON: %v (at byte %d)", err, syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalidf("request body is not valid JSON: the object is cut off")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return invalidf("request body must be a JSON object, got %s", typeErr.Value)
		}
		return invalidf("%s must be %s, got %s", typeErr.Field, jsonTypeName(typeErr.Type.Kind()), typeErr.Value)
	}

	// encoding/json reports unknown fields only as text: json: unknown field "name".
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalidf("request body has unknown field %s; check the field name against the API reference", field)
	}
	return invalidf("request body is not valid JSON: %v", err)
}

// jsonTypeName names a Go kind the way a JSON client thinks of it.
func jsonTypeName(kind reflect.Kind) string {
	switch kind {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + kind.String()
}
