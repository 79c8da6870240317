// Package agent implements the wire protocol between StacyVM and
// stacyvm-agent, the small process that runs as PID 1 inside every sandbox
// whose provider can start a process of ours there. It contains the server
// side, which the agent binary serves, and the client side, which providers
// use.
//
// The protocol is HTTP/2 without TLS (prior knowledge, no upgrade) over any
// byte stream, so many calls share one connection with per-stream flow
// control. The first transport is a unix socket; vsock or a virtio serial
// port carry the same protocol later. docs/agent-protocol.md describes every
// operation, the exec frame format and the error codes.
package agent

import (
	"encoding/json"
	"io/fs"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// ProtocolVersion is the major version of the protocol this package speaks.
// A client rejects an agent of another major version.
const ProtocolVersion = 1

// ProtocolRevision counts the additive changes made within
// ProtocolVersion: new operations or new optional fields. A client accepts
// agents of any revision of its major version and checks an agent's
// revision before it uses an operation added later.
const ProtocolRevision = 0

// Fixed paths inside a sandbox. The provider mounts its per-sandbox host
// directory at SandboxDir, so the host reaches the socket at
// <host directory>/agent.sock.
const (
	SandboxDir        = "/run/stacyvm"
	DefaultSocketPath = SandboxDir + "/agent.sock"
)

// BinaryName is the file name of the agent executable.
const BinaryName = "stacyvm-agent"

// HTTP header and trailer names of the protocol.
const (
	// headerProtocol is sent on every response with the agent's
	// ProtocolVersion, so a client notices an agent replaced by an
	// incompatible one after a reconnect.
	headerProtocol = "Stacyvm-Agent-Protocol"

	// trailerError carries the JSON error body when a streamed download
	// fails after its first byte was sent.
	trailerError = "Stacyvm-Error"
)

// Content types of response bodies.
const (
	contentJSON   = "application/json"
	contentFrames = "application/vnd.stacyvm.frames"
	contentBytes  = "application/octet-stream"
	contentTar    = "application/x-tar"
)

// Request paths.
const (
	pathVersion     = "/v1/version"
	pathPing        = "/v1/ping"
	pathExec        = "/v1/exec"
	pathFileContent = "/v1/files/content"
	pathFileArchive = "/v1/files/archive"
	pathFileStat    = "/v1/files/stat"
	pathFileList    = "/v1/files/list"
	pathFileMkdir   = "/v1/files/mkdir"
	pathFileRemove  = "/v1/files/remove"
	pathFileMove    = "/v1/files/move"
	pathFileChmod   = "/v1/files/chmod"
	pathFileGlob    = "/v1/files/glob"
)

// baseURL prefixes every request path. Its host is a placeholder because
// the client's Dialer chooses the connection.
const baseURL = "http://agent"

// maxJSONBody bounds a JSON request body. Exec requests carry stdin, so
// this is also the largest stdin an exec accepts, after base64 encoding.
const maxJSONBody = 64 << 20

// VersionInfo is the body of GET /v1/version.
type VersionInfo struct {
	Protocol     int    `json:"protocol"`      // major version, ProtocolVersion
	Revision     int    `json:"revision"`      // additive revision, ProtocolRevision
	AgentVersion string `json:"agent_version"` // release of the agent binary, such as "v0.1.0"
}

// execRequest is the body of POST /v1/exec.
type execRequest struct {
	Argv           []string          `json:"argv"`
	Env            map[string]string `json:"env,omitempty"`
	Workdir        string            `json:"workdir,omitempty"`
	Stdin          []byte            `json:"stdin,omitempty"` // base64 in JSON
	TimeoutMS      int64             `json:"timeout_ms,omitempty"`
	MaxOutputBytes int64             `json:"max_output_bytes,omitempty"`
}

// exitBody is the payload of an exit frame.
type exitBody struct {
	ExitCode   int     `json:"exit_code"`
	TimedOut   bool    `json:"timed_out"`
	Truncated  bool    `json:"truncated"`
	DurationMS float64 `json:"duration_ms"` // fractional milliseconds
	ExitReason string  `json:"exit_reason,omitempty"`
}

// errorBody is the JSON error of a failed call: the body of a non-2xx
// response, the payload of an error frame and the value of trailerError.
// Op and Path are set when the error is a *provider.PathError.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Op      string `json:"op,omitempty"`
	Path    string `json:"path,omitempty"`
}

// pathRequest is the body of the file operations that take one path.
type pathRequest struct {
	Path      string `json:"path"`
	Mode      uint32 `json:"mode,omitempty"` // permission bits, for mkdir and chmod
	Recursive bool   `json:"recursive,omitempty"`
}

// moveRequest is the body of POST /v1/files/move.
type moveRequest struct {
	OldPath string `json:"old_path"`
	NewPath string `json:"new_path"`
}

// globRequest is the body of POST /v1/files/glob.
type globRequest struct {
	Pattern string `json:"pattern"`
}

// fileInfo is provider.FileInfo on the wire.
type fileInfo struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Size       int64     `json:"size"`
	Mode       uint32    `json:"mode"` // Go fs.FileMode bits: type bits and permission bits
	Type       string    `json:"type"`
	ModTime    time.Time `json:"mod_time"`
	LinkTarget string    `json:"link_target,omitempty"`
}

func toWireInfo(fi provider.FileInfo) fileInfo {
	return fileInfo{
		Name:       fi.Name,
		Path:       fi.Path,
		Size:       fi.Size,
		Mode:       uint32(fi.Mode),
		Type:       string(fi.Type),
		ModTime:    fi.ModTime,
		LinkTarget: fi.LinkTarget,
	}
}

func (fi fileInfo) toProvider() provider.FileInfo {
	return provider.FileInfo{
		Name:       fi.Name,
		Path:       fi.Path,
		Size:       fi.Size,
		Mode:       fs.FileMode(fi.Mode),
		Type:       provider.FileType(fi.Type),
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

// mustJSON encodes v, which is always one of the protocol's own types.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("agent: encode " + err.Error())
	}
	return b
}
