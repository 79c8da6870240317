package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

func TestErrorResponses(t *testing.T) {
	s := newStack(t, stackOptions{limits: func(l *config.Limits) { l.MaxRequestBytes = 4096 }})
	id := s.spawn()
	s.do("POST", sandboxPath(id, "/files/mkdir"), map[string]string{"path": "/workspace/full/sub"}).
		wantStatus(t, http.StatusOK)

	tests := []struct {
		name      string
		method    string
		path      string
		body      any
		status    int
		code      string
		fragments []string
	}{
		{"unknown sandbox", "GET", sandboxPath("sb-unknown1", ""), nil,
			404, codeNotFound, []string{"sb-unknown1"}},
		{"unknown sandbox exec", "POST", sandboxPath("sb-unknown2", "/exec"), `{"command":"true"}`,
			404, codeNotFound, []string{"sb-unknown2"}},
		{"unknown sandbox files", "GET", sandboxPath("sb-unknown3", "/files?path=/a"), nil,
			404, codeNotFound, []string{"sb-unknown3"}},
		{"unknown provider", "POST", "/api/v1/sandboxes", `{"provider":"nosuch"}`,
			404, codeNotFound, []string{"nosuch"}},
		{"malformed JSON", "POST", "/api/v1/sandboxes", `{"image":`,
			400, codeBadRequest, []string{"JSON"}},
		{"invalid JSON syntax", "POST", "/api/v1/sandboxes", `{image: 1}`,
			400, codeBadRequest, []string{"JSON"}},
		{"unknown field", "POST", "/api/v1/sandboxes", `{"memory":512}`,
			400, codeBadRequest, []string{`"memory"`}},
		{"wrong type", "POST", "/api/v1/sandboxes", `{"memory_mb":"512"}`,
			400, codeBadRequest, []string{"memory_mb", "integer"}},
		{"not an object", "POST", "/api/v1/sandboxes", `[1,2]`,
			400, codeBadRequest, []string{"object"}},
		{"trailing data", "POST", "/api/v1/sandboxes", `{} {}`,
			400, codeBadRequest, []string{"one object"}},
		{"negative memory", "POST", "/api/v1/sandboxes", `{"memory_mb":-5}`,
			400, codeBadRequest, []string{"memory_mb", "-5"}},
		{"negative vcpus", "POST", "/api/v1/sandboxes", `{"vcpus":-1}`,
			400, codeBadRequest, []string{"vcpus"}},
		{"bad ttl", "POST", "/api/v1/sandboxes", `{"ttl":"ten minutes"}`,
			400, codeBadRequest, []string{"ttl", "ten minutes"}},
		{"negative ttl", "POST", "/api/v1/sandboxes", `{"ttl":"-5m"}`,
			400, codeBadRequest, []string{"ttl"}},
		{"bad image", "POST", "/api/v1/sandboxes", `{"image":"-rm"}`,
			400, codeBadRequest, []string{"image"}},
		{"memory over limit", "POST", "/api/v1/sandboxes", `{"memory_mb":999999}`,
			429, codeResourceLimit, []string{"max_memory_mb", "8192"}},
		{"body too large", "POST", "/api/v1/sandboxes", `{"image":"` + strings.Repeat("a", 5000) + `"}`,
			413, codePayloadTooLarge, []string{"4096"}},
		{"bad exec timeout", "POST", sandboxPath(id, "/exec"), `{"command":"true","timeout":"5 seconds"}`,
			400, codeBadRequest, []string{"timeout", "5 seconds"}},
		{"exec timeout over limit", "POST", sandboxPath(id, "/exec"), `{"command":"true","timeout":"100h"}`,
			429, codeResourceLimit, []string{"max_exec_timeout"}},
		{"bad exec mode", "POST", sandboxPath(id, "/exec"), `{"command":"true","mode":"bash"}`,
			400, codeBadRequest, []string{"mode", "bash"}},
		{"missing command", "POST", sandboxPath(id, "/exec"), `{}`,
			400, codeBadRequest, []string{"command"}},
		{"bad stdin base64", "POST", sandboxPath(id, "/exec"), `{"command":"cat","stdin":"%%%","stdin_encoding":"base64"}`,
			400, codeBadRequest, []string{"stdin"}},
		{"bad stdin encoding", "POST", sandboxPath(id, "/exec"), `{"command":"cat","stdin_encoding":"latin1"}`,
			400, codeBadRequest, []string{"stdin_encoding"}},
		{"bad env key", "POST", sandboxPath(id, "/exec"), `{"command":"true","env":{"1X":"y"}}`,
			400, codeBadRequest, []string{"env"}},
		{"bad file mode", "POST", sandboxPath(id, "/files"), `{"path":"a","content":"x","mode":"rw-r--r--"}`,
			400, codeBadRequest, []string{"mode", "rw-r--r--"}},
		{"file mode out of range", "POST", sandboxPath(id, "/files"), `{"path":"a","content":"x","mode":"01000"}`,
			400, codeBadRequest, []string{"mode"}},
		{"bad upload mode", "PUT", sandboxPath(id, "/files?path=a&mode=9"), "x",
			400, codeBadRequest, []string{"mode"}},
		{"bad content base64", "POST", sandboxPath(id, "/files"), `{"path":"a","content":"!","encoding":"base64"}`,
			400, codeBadRequest, []string{"content"}},
		{"missing path query", "GET", sandboxPath(id, "/files"), nil,
			400, codeBadRequest, []string{"path"}},
		{"missing path body", "POST", sandboxPath(id, "/files"), `{"content":"x"}`,
			400, codeBadRequest, []string{"path"}},
		{"missing pattern", "GET", sandboxPath(id, "/files/glob"), nil,
			400, codeBadRequest, []string{"pattern"}},
		{"missing file", "GET", sandboxPath(id, "/files?path=/workspace/nope"), nil,
			404, codeNotFound, []string{"/workspace/nope"}},
		{"stat missing file", "GET", sandboxPath(id, "/files/stat?path=/workspace/nope"), nil,
			404, codeNotFound, []string{"/workspace/nope"}},
		{"read a directory", "GET", sandboxPath(id, "/files?path=/workspace/full"), nil,
			400, codeBadRequest, []string{"/workspace/full"}},
		{"list missing directory", "GET", sandboxPath(id, "/files/list?path=/workspace/nope"), nil,
			404, codeNotFound, nil},
		{"non-empty directory", "DELETE", sandboxPath(id, "/files?path=/workspace/full"), nil,
			409, codeConflict, []string{"/workspace/full"}},
		{"bad recursive", "DELETE", sandboxPath(id, "/files?path=/workspace/full&recursive=maybe"), nil,
			400, codeBadRequest, []string{"recursive", "maybe"}},
		{"dot-dot stays inside", "GET", sandboxPath(id, "/files?path=/../../etc/passwd"), nil,
			404, codeNotFound, nil},
		{"unknown route", "GET", "/api/v1/nothing", nil,
			404, codeNotFound, []string{"/api/v1/nothing"}},
		{"wrong method", "PATCH", sandboxPath(id, ""), nil,
			405, codeMethodNotAllowed, []string{"PATCH", "GET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.do(tt.method, tt.path, tt.body).wantError(t, tt.status, tt.code, tt.fragments...)
		})
	}
}

func TestMethodNotAllowedSetsAllow(t *testing.T) {
	s := newStack(t, stackOptions{})

	resp := s.do("PUT", "/api/v1/sandboxes", nil)
	resp.wantError(t, http.StatusMethodNotAllowed, codeMethodNotAllowed)
	allow := resp.header.Get("Allow")
	for _, m := range []string{"GET", "POST"} {
		if !strings.Contains(allow, m) {
			t.Errorf("Allow = %q, want it to contain %s", allow, m)
		}
	}
}

func TestErrorStatusMapping(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", provider.ErrSandboxNotFound), 404, codeNotFound},
		{fmt.Errorf("x: %w", provider.ErrSandboxDestroyed), 404, codeNotFound},
		{fmt.Errorf("x: %w", provider.ErrProviderNotFound), 404, codeNotFound},
		{&provider.PathError{Op: "stat", Path: "/a", Err: provider.ErrPathNotFound}, 404, codeNotFound},
		{fmt.Errorf("x: %w", provider.ErrExecTimeout), 408, codeTimeout},
		{fmt.Errorf("x: %w", store.ErrConflict), 409, codeConflict},
		{fmt.Errorf("x: %w", orchestrator.ErrNotRunning), 409, codeConflict},
		{&provider.PathError{Op: "rm", Path: "/a", Err: provider.ErrDirectoryNotEmpty}, 409, codeConflict},
		{&provider.PathError{Op: "mkdir", Path: "/a", Err: provider.ErrPathExists}, 409, codeConflict},
		{&http.MaxBytesError{Limit: 10}, 413, codePayloadTooLarge},
		{&provider.LimitError{Limit: "max_vcpus", Value: "8", Got: "9"}, 429, codeResourceLimit},
		{fmt.Errorf("x: %w", provider.ErrResourceLimit), 429, codeResourceLimit},
		{fmt.Errorf("x: %w", provider.ErrUnavailable), 503, codeUnavailable},
		{fmt.Errorf("x: %w", provider.ErrNotImplemented), 501, codeNotImplemented},
		{fmt.Errorf("x: %w", provider.ErrInvalidArgument), 400, codeBadRequest},
		{&provider.PathError{Op: "read", Path: "/a", Err: provider.ErrIsDirectory}, 400, codeBadRequest},
		{&provider.PathError{Op: "list", Path: "/a", Err: provider.ErrNotDirectory}, 400, codeBadRequest},
		{&provider.PathError{Op: "open", Path: "/a", Err: provider.ErrPathEscapes}, 400, codeBadRequest},
		{errors.New("database is locked"), 500, codeInternal},
	}
	for _, tt := range tests {
		status, code, message := errorStatus(tt.err)
		if status != tt.status || code != tt.code {
			t.Errorf("errorStatus(%v) = %d %s, want %d %s", tt.err, status, code, tt.status, tt.code)
		}
		if status == 500 && strings.Contains(message, "locked") {
			t.Errorf("internal error message %q contains the internal cause", message)
		}
	}

	_, _, message := errorStatus(&provider.LimitError{Limit: "max_vcpus", Value: "8", Got: "9"})
	if !strings.Contains(message, "max_vcpus") || !strings.Contains(message, "8") {
		t.Errorf("limit message %q does not name the limit and its value", message)
	}
}
