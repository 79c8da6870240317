// Package custom implements the custom provider protocol, with which
// StacyVM drives an isolation runtime that lives behind an HTTP service.
// It contains both sides:
//
//   - the client, Provider, which StacyVM registers as the provider
//     "custom" when providers.custom.base_url is set;
//   - the server, Server, which exposes any local provider.Provider over
//     the protocol. The command "stacyvm provider-server" runs it, and
//     teams that write their own backend can use it or follow the
//     protocol in another language.
//
// Every provider.Provider method has an endpoint. JSON carries requests
// and results, file contents and tar archives travel as raw streamed
// bodies, and exec output is a stream of NDJSON lines that ends with
// exactly one exit or error line. Errors carry a code that the client
// turns back into the provider sentinel, so errors.Is and errors.As work
// across the wire. docs/custom-provider-protocol.md describes the
// protocol for people who implement a backend.
package custom

import (
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// Name is the registry name of the client provider.
const Name = "custom"

// ProtocolVersion is the major version of the protocol. A client rejects a
// server of another major version.
const ProtocolVersion = 1

// ProtocolRevision counts additive changes within ProtocolVersion, such as
// new optional fields. Clients accept any revision of their major version.
const ProtocolRevision = 0

// headerProtocol is set on every server response to ProtocolVersion, so
// that a client pointed at another kind of HTTP service notices at once.
const headerProtocol = "Stacyvm-Provider-Protocol"

// Content types of bodies.
const (
	contentJSON   = "application/json"
	contentNDJSON = "application/x-ndjson"
	contentBytes  = "application/octet-stream"
	contentTar    = "application/x-tar"
)

// Request paths. {id} is the sandbox ID, path-escaped.
const (
	pathVersion  = "/v1/version"
	pathHealth   = "/v1/health"
	pathRuntimes = "/v1/runtimes"
	pathSpawn    = "/v1/sandboxes"
	pathSandbox  = "/v1/sandboxes/{id}"
)

// Operations under pathSandbox.
const (
	opRecover     = "/recover"
	opExec        = "/exec"
	opStats       = "/stats"
	opLogs        = "/logs"
	opFileContent = "/files/content"
	opFileArchive = "/files/archive"
	opFileStat    = "/files/stat"
	opFileList    = "/files/list"
	opFileGlob    = "/files/glob"
	opFileMkdir   = "/files/mkdir"
	opFileRemove  = "/files/remove"
	opFileMove    = "/files/move"
	opFileChmod   = "/files/chmod"
)

// Limits of the protocol.
const (
	// maxJSONBody bounds a JSON request body. Exec requests carry stdin,
	// so this is also the largest stdin, after base64 encoding.
	maxJSONBody = 64 << 20

	// maxJSONResponse bounds a JSON response body, such as the listing of
	// a large directory.
	maxJSONResponse = 256 << 20

	// maxErrorBody bounds an error body.
	maxErrorBody = 64 << 10

	// maxChunk is the most output bytes one exec line carries. The server
	// splits larger writes, so that a line stays under maxLine even when
	// every byte needs a six-character JSON escape.
	maxChunk = 64 << 10

	// maxLine bounds one NDJSON line of an exec stream.
	maxLine = 1 << 20
)

// Heartbeat limits. The client asks for an interval in each exec request,
// and the server clamps it to this range.
const (
	defaultHeartbeat = 2 * time.Second
	minHeartbeat     = 10 * time.Millisecond
	maxHeartbeat     = time.Minute
)

// versionInfo is the body of GET /v1/version.
type versionInfo struct {
	Protocol      int                   `json:"protocol"`       // ProtocolVersion
	Revision      int                   `json:"revision"`       // ProtocolRevision
	ServerVersion string                `json:"server_version"` // release of the server, such as "v0.1.0"
	Provider      string                `json:"provider"`       // name of the provider behind the server
	Capabilities  provider.Capabilities `json:"capabilities"`
}

// spawnRequest is the body of POST /v1/sandboxes.
type spawnRequest struct {
	ID       string            `json:"id"`
	Image    string            `json:"image,omitempty"`
	Runtime  string            `json:"runtime,omitempty"`
	MemoryMB int               `json:"memory_mb,omitempty"`
	VCPUs    int               `json:"vcpus,omitempty"`
	Network  bool              `json:"network,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	OwnerID  string            `json:"owner_id,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func toSpawnRequest(spec provider.SpawnSpec) spawnRequest {
	return spawnRequest(spec)
}

func (r spawnRequest) toProvider() provider.SpawnSpec {
	return provider.SpawnSpec(r)
}

// execRequest is the body of POST /v1/sandboxes/{id}/exec.
type execRequest struct {
	Argv           []string          `json:"argv"`
	Env            map[string]string `json:"env,omitempty"`
	Workdir        string            `json:"workdir,omitempty"`
	Stdin          []byte            `json:"stdin,omitempty"` // base64 in JSON
	TimeoutMS      int64             `json:"timeout_ms,omitempty"`
	MaxOutputBytes int64             `json:"max_output_bytes,omitempty"`
	HeartbeatMS    int64             `json:"heartbeat_ms,omitempty"` // quiet time after which the server sends a heartbeat line
}

// Values of the "stream" field of exec lines.
const (
	streamStdout    = "stdout"
	streamStderr    = "stderr"
	streamHeartbeat = "heartbeat"
	streamExit      = "exit"
	streamError     = "error"
)

// encodingBase64 is the "encoding" of a chunk whose bytes are not valid
// UTF-8 and are sent base64-encoded.
const encodingBase64 = "base64"

// execLine is one NDJSON line of an exec stream. Which fields are set
// depends on Stream.
type execLine struct {
	Stream string `json:"stream"`

	// stdout and stderr
	Data     string `json:"data,omitempty"`
	Encoding string `json:"encoding,omitempty"` // "" for UTF-8 text, "base64" for other bytes

	// exit
	ExitCode   *int     `json:"exit_code,omitempty"`
	TimedOut   bool     `json:"timed_out,omitempty"`
	Truncated  bool     `json:"truncated,omitempty"`
	DurationMS *float64 `json:"duration_ms,omitempty"` // fractional milliseconds
	ExitReason string   `json:"exit_reason,omitempty"`

	// error
	errorBody
}

// exitLine is the exit line of an exec stream. It has its own type so that
// exit_code, timed_out, truncated and duration_ms are always present.
type exitLine struct {
	Stream     string  `json:"stream"` // always "exit"
	ExitCode   int     `json:"exit_code"`
	TimedOut   bool    `json:"timed_out"`
	Truncated  bool    `json:"truncated"`
	DurationMS float64 `json:"duration_ms"`
	ExitReason string  `json:"exit_reason,omitempty"`
}

// errorBody is the JSON error of a failed call: the body of a non-2xx
// response and the fields of an exec error line. Op and Path are set when
// the error is a *provider.PathError, and Limit when it is a
// *provider.LimitError.
type errorBody struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Op      string     `json:"op,omitempty"`
	Path    string     `json:"path,omitempty"`
	Limit   *limitBody `json:"limit,omitempty"`
}

// limitBody is provider.LimitError on the wire.
type limitBody struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Got   string `json:"got,omitempty"`
}

// pathRequest is the body of mkdir, remove and chmod.
type pathRequest struct {
	Path      string `json:"path"`
	Mode      string `json:"mode,omitempty"` // octal permission bits, such as "0755"
	Recursive bool   `json:"recursive,omitempty"`
}

// moveRequest is the body of move.
type moveRequest struct {
	OldPath string `json:"old_path"`
	NewPath string `json:"new_path"`
}

// logsResponse is the body of GET /v1/sandboxes/{id}/logs.
type logsResponse struct {
	Lines []string `json:"lines"`
}

// fileInfo is provider.FileInfo on the wire. Mode is octal with the
// permission bits and the setuid (04000), setgid (02000) and sticky
// (01000) bits in their Unix positions. The type bits follow from Type.
type fileInfo struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Size       int64     `json:"size"`
	Mode       string    `json:"mode"`
	Type       string    `json:"type"`
	ModTime    time.Time `json:"mod_time"`
	LinkTarget string    `json:"link_target,omitempty"`
}

// runtimeInfo is provider.RuntimeInfo on the wire.
type runtimeInfo struct {
	ID        string            `json:"id"`
	Image     string            `json:"image,omitempty"`
	MemoryMB  int               `json:"memory_mb,omitempty"`
	VCPUs     int               `json:"vcpus,omitempty"`
	OwnerID   string            `json:"owner_id,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Running   bool              `json:"running"`
}

func toWireInfo(fi provider.FileInfo) fileInfo {
	return fileInfo{
		Name:       fi.Name,
		Path:       fi.Path,
		Size:       fi.Size,
		Mode:       formatMode(fi.Mode),
		Type:       string(fi.Type),
		ModTime:    fi.ModTime,
		LinkTarget: fi.LinkTarget,
	}
}

func toWireInfos(infos []provider.FileInfo) []fileInfo {
	out := make([]fileInfo, len(infos))
	for i, fi := range infos {
		out[i] = toWireInfo(fi)
	}
	return out
}

func (fi fileInfo) toProvider() (provider.FileInfo, error) {
	mode, err := parseMode(fi.Mode, 0o7777)
	if err != nil {
		return provider.FileInfo{}, fmt.Errorf("entry %q: %w", fi.Path, err)
	}
	return provider.FileInfo{
		Name:       fi.Name,
		Path:       fi.Path,
		Size:       fi.Size,
		Mode:       mode | typeBits(provider.FileType(fi.Type)),
		Type:       provider.FileType(fi.Type),
		ModTime:    fi.ModTime,
		LinkTarget: fi.LinkTarget,
	}, nil
}

// typeBits returns the fs.FileMode type bits of a file type. An entry of
// type "other" gets fs.ModeIrregular, because the wire does not say
// whether it is a device, a socket or a pipe.
func typeBits(t provider.FileType) fs.FileMode {
	switch t {
	case provider.TypeDir:
		return fs.ModeDir
	case provider.TypeSymlink:
		return fs.ModeSymlink
	case provider.TypeOther:
		return fs.ModeIrregular
	}
	return 0
}

func toWireRuntime(r provider.RuntimeInfo) runtimeInfo {
	return runtimeInfo(r)
}

func (r runtimeInfo) toProvider() provider.RuntimeInfo {
	return provider.RuntimeInfo(r)
}

// formatMode returns the permission, setuid, setgid and sticky bits of m
// in octal with a leading zero, such as "0755" or "01777".
func formatMode(m fs.FileMode) string {
	bits := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return "0" + strconv.FormatUint(uint64(bits), 8)
}

// parseMode parses an octal mode of at most maxBits, which is 0o777 where
// only permission bits are allowed and 0o7777 where the setuid, setgid and
// sticky bits are too.
func parseMode(s string, maxBits uint64) (fs.FileMode, error) {
	bits, err := strconv.ParseUint(s, 8, 32)
	if err != nil || bits > maxBits {
		return 0, fmt.Errorf("%w: mode %q is not an octal mode of at most %#o", provider.ErrInvalidArgument, s, maxBits)
	}
	mode := fs.FileMode(bits & 0o777)
	if bits&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if bits&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if bits&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode, nil
}

// durationMS returns d in fractional milliseconds.
func durationMS(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// ceilMilliseconds converts d to whole milliseconds, rounding up so that a
// positive duration never becomes zero, which means none.
func ceilMilliseconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
