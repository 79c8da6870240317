package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const pythonTemplateYAML = `name: py
description: |
  Python with the test tools.
  Second line.
image: python:3.12-slim
memory_mb: 384
vcpus: 2
ttl: 45m
network: true
env:
  GREETING: hello from yaml
  PORT: 8080
setup:
  - echo setup-ran > ready.txt
  - |
    mkdir -p out
    printf '%s' "$GREETING" > out/greeting
setup_timeout: 30s
metadata:
  team: ml
`

// writeTemplateFile writes content to a YAML file and returns its path.
func writeTemplateFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTemplatesCreateGetSpawn(t *testing.T) {
	srv := startServe(t, t.TempDir())

	if got := mustCLI(t, srv.url, "templates", "create", "-f", writeTemplateFile(t, pythonTemplateYAML)); got != "created template py\n" {
		t.Errorf("create printed %q, want the name", got)
	}

	table := mustCLI(t, srv.url, "templates", "ls")
	for _, want := range []string{"NAME", "SETUP", "py", "python:3.12-slim", "384MiB", "45m", "Python with the test tools."} {
		if !strings.Contains(table, want) {
			t.Errorf("ls output lacks %q:\n%s", want, table)
		}
	}
	if got := mustCLI(t, srv.url, "templates", "ls", "-q"); got != "py\n" {
		t.Errorf("ls -q printed %q, want py", got)
	}

	var file templateFile
	if err := yaml.Unmarshal([]byte(mustCLI(t, srv.url, "templates", "get", "py")), &file); err != nil {
		t.Fatalf("get printed invalid YAML: %v", err)
	}
	if file.Env["PORT"] != "8080" || file.TTL != "45m0s" || len(file.Setup) != 2 || file.SetupTimeout != "30s" || file.CreatedAt == "" {
		t.Errorf("get -o yaml = %+v, want the file's fields and a creation time", file)
	}
	var wire map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, srv.url, "templates", "get", "py", "-o", "json")), &wire); err != nil {
		t.Fatalf("get -o json printed invalid JSON: %v", err)
	}
	if wire["name"] != "py" || wire["memory_mb"] != float64(384) || wire["ttl"] != "45m0s" {
		t.Errorf("get -o json = %v, want name, memory_mb and ttl", wire)
	}

	var sb map[string]any
	out := mustCLI(t, srv.url, "templates", "spawn", "py", "--memory", "256", "-e", "EXTRA=1", "-o", "json")
	if err := json.Unmarshal([]byte(out), &sb); err != nil {
		t.Fatalf("templates spawn -o json printed invalid JSON: %v", err)
	}
	id, _ := sb["id"].(string)
	if sb["memory_mb"] != float64(256) || sb["vcpus"] != float64(2) || sb["network"] != true {
		t.Errorf("spawned sandbox = %v, want memory 256 from the flag and vcpus 2 and network from the template", sb)
	}
	env := mustCLI(t, srv.url, "exec", id, "--", "env")
	for _, want := range []string{"GREETING=hello from yaml", "PORT=8080", "EXTRA=1"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("env lacks %q:\n%s", want, env)
		}
	}
	if got := mustCLI(t, srv.url, "exec", id, "--", "cat", "ready.txt", "out/greeting"); got != "setup-ran\nhello from yaml" {
		t.Errorf("files from setup = %q, want both setup outputs", got)
	}

	other := spawnID(t, srv.url, "--template", "py", "--network=false")
	var spawned map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, srv.url, "inspect", other)), &spawned); err != nil {
		t.Fatalf("inspect printed invalid JSON: %v", err)
	}
	if spawned["memory_mb"] != float64(384) || spawned["network"] != false {
		t.Errorf("spawn --template = %v, want the template's memory and network off", spawned)
	}
	if got := mustCLI(t, srv.url, "exec", other, "--", "cat", "ready.txt"); got != "setup-ran\n" {
		t.Errorf("ready.txt of spawn --template = %q, want the setup's output", got)
	}
}

func TestTemplatesUpdateAndRemove(t *testing.T) {
	srv := startServe(t, t.TempDir())
	path := writeTemplateFile(t, "name: web\nimage: node:22\n")
	mustCLI(t, srv.url, "templates", "create", "-f", path)

	r := cli(t, srv.url, nil, "templates", "create", "-f", path)
	if r.code != 1 || !strings.Contains(r.stderr, `template "web" already exists`) {
		t.Errorf("duplicate create: code %d stderr %q, want 1 and already exists", r.code, r.stderr)
	}

	// Standard input, and --update for an existing template.
	r = cli(t, srv.url, []byte("name: web\nimage: node:23\n"), "templates", "create", "-f", "-", "--update")
	if r.code != 0 || r.stdout != "updated template web\n" {
		t.Errorf("create --update from stdin: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := mustCLI(t, srv.url, "templates", "get", "web"); !strings.Contains(got, "image: node:23\n") {
		t.Errorf("get after update:\n%s\nwant image node:23", got)
	}

	if got := mustCLI(t, srv.url, "templates", "rm", "web"); got != "web\n" {
		t.Errorf("rm printed %q, want the name", got)
	}
	r = cli(t, srv.url, nil, "templates", "get", "web")
	if r.code != 1 || !strings.Contains(r.stderr, `template "web" does not exist`) {
		t.Errorf("get after rm: code %d stderr %q, want 1 and does not exist", r.code, r.stderr)
	}
	r = cli(t, srv.url, nil, "templates", "rm", "web")
	if r.code != 1 || !strings.Contains(r.stderr, "web") {
		t.Errorf("rm of a missing template: code %d stderr %q, want 1 naming it", r.code, r.stderr)
	}
}

func TestTemplatesErrors(t *testing.T) {
	srv := startServe(t, t.TempDir())
	mustCLI(t, srv.url, "templates", "create", "-f", writeTemplateFile(t, "name: broken\nsetup:\n  - echo oops >&2; exit 5\n"))

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{"missing file flag", []string{"templates", "create"}, 2, []string{"missing -f FILE"}},
		{"unknown key", []string{"templates", "create", "-f", writeTemplateFile(t, "name: a\ncpus: 2\n")}, 1,
			[]string{"field cpus not found"}},
		{"bad duration", []string{"templates", "create", "-f", writeTemplateFile(t, "name: a\nttl: soon\n")}, 1,
			[]string{`ttl "soon" is not a Go duration`}},
		{"no name", []string{"templates", "create", "-f", writeTemplateFile(t, "image: alpine\n")}, 1,
			[]string{"has no name"}},
		{"empty file", []string{"templates", "create", "-f", writeTemplateFile(t, "")}, 1, []string{"is empty"}},
		{"invalid name", []string{"templates", "create", "-f", writeTemplateFile(t, "name: Bad\n")}, 1,
			[]string{"name must be 1 to 63 characters"}},
		{"negative memory", []string{"templates", "create", "-f", writeTemplateFile(t, "name: a\nmemory_mb: -1\n")}, 1,
			[]string{"memory_mb must not be negative"}},
		{"bad output", []string{"templates", "get", "broken", "-o", "wide"}, 2, []string{`invalid --output "wide"`}},
		{"unknown template", []string{"templates", "spawn", "nope"}, 1, []string{`template "nope" does not exist`}},
		{"unknown template on spawn", []string{"spawn", "--template", "nope"}, 1, []string{`"nope"`}},
		{"failing setup", []string{"templates", "spawn", "broken"}, 1,
			[]string{"exit 5", "exit status 5", "oops", "was destroyed"}},
		{"bad env override", []string{"templates", "spawn", "broken", "-e", "NOEQUALS"}, 2, []string{"invalid --env"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, srv.url, nil, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", r.code, tt.wantCode, r.stderr)
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q lacks %q", r.stderr, want)
				}
			}
		})
	}

	if got := mustCLI(t, srv.url, "ls", "-q"); got != "" {
		t.Errorf("live sandboxes after the failed setup: %q, want none", got)
	}
}
