package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSpawnListInspectKill(t *testing.T) {
	srv := startServe(t, t.TempDir())

	id := spawnID(t, srv.url, "--owner", "alice", "--meta", "job=build", "--ttl", "20m")

	var spawned map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, srv.url, "spawn", "-o", "json", "--memory", "256")), &spawned); err != nil {
		t.Fatalf("spawn -o json printed invalid JSON: %v", err)
	}
	other, _ := spawned["id"].(string)
	if spawned["state"] != "running" || spawned["memory_mb"] != float64(256) {
		t.Errorf("spawn -o json: got state %v memory_mb %v, want running and 256", spawned["state"], spawned["memory_mb"])
	}

	table := mustCLI(t, srv.url, "ls")
	for _, want := range []string{"ID", "STATE", "EXPIRES IN", id, other, "alice", "running", "mock"} {
		if !strings.Contains(table, want) {
			t.Errorf("ls output lacks %q:\n%s", want, table)
		}
	}
	if got := mustCLI(t, srv.url, "ps", "-q", "--owner", "alice"); got != id+"\n" {
		t.Errorf("ps -q --owner alice: got %q, want %q", got, id+"\n")
	}

	var inspected map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, srv.url, "inspect", id)), &inspected); err != nil {
		t.Fatalf("inspect printed invalid JSON: %v", err)
	}
	if inspected["id"] != id || inspected["owner_id"] != "alice" {
		t.Errorf("inspect: got id %v owner %v, want %s alice", inspected["id"], inspected["owner_id"], id)
	}
	if meta, _ := inspected["metadata"].(map[string]any); meta["job"] != "build" {
		t.Errorf("inspect metadata: got %v, want job=build", inspected["metadata"])
	}

	if out := mustCLI(t, srv.url, "extend", id, "--ttl", "2h"); !strings.Contains(out, id+" expires at") {
		t.Errorf("extend: got %q", out)
	}

	if got := mustCLI(t, srv.url, "kill", id, other); got != id+"\n"+other+"\n" {
		t.Errorf("kill: got %q, want both IDs", got)
	}
	if got := mustCLI(t, srv.url, "ls", "-q"); got != "" {
		t.Errorf("ls -q after kill: got %q, want nothing", got)
	}
	if got := mustCLI(t, srv.url, "ls", "-a", "-q"); !strings.Contains(got, id) {
		t.Errorf("ls -a -q after kill: got %q, want %s", got, id)
	}

	r := cli(t, srv.url, nil, "inspect", id)
	if r.code != 1 || !strings.Contains(r.stderr, "Error: ") || !strings.Contains(r.stderr, "request_id") {
		t.Errorf("inspect of a destroyed sandbox: got code %d stderr %q, want 1 and an error with its request_id", r.code, r.stderr)
	}
	r = cli(t, srv.url, nil, "kill", "sb-doesnotexist")
	if r.code != 1 || !strings.Contains(r.stderr, "sb-doesnotexist") {
		t.Errorf("kill of an unknown sandbox: got code %d stderr %q, want 1 naming the ID", r.code, r.stderr)
	}
}

func TestExecExitCodes(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)

	tests := []struct {
		name       string
		args       []string
		stdin      []byte
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"success", []string{"exec", id, "--", "echo", "hello world"}, nil, 0, "hello world\n", ""},
		{"flags reach the command", []string{"exec", id, "ls", "-d", "/"}, nil, 0, "/\n", ""},
		{"exit code passes through", []string{"exec", id, "--", "sh", "-c", "exit 7"}, nil, 7, "", ""},
		{"stderr stays separate", []string{"exec", id, "--", "sh", "-c", "echo out; echo err >&2"}, nil, 0, "out\n", "err\n"},
		{"shell mode joins arguments", []string{"exec", "--sh", id, "echo", "$((6*7))", "|", "tr", "4", "X"}, nil, 0, "X2\n", ""},
		{"environment", []string{"exec", "-e", "A=1", "-e", "B=two", id, "--", "sh", "-c", "echo $A$B"}, nil, 0, "1two\n", ""},
		{"stdin", []string{"exec", "-i", id, "--", "cat"}, []byte("from stdin\n"), 0, "from stdin\n", ""},
		{"timeout", []string{"exec", "--timeout", "500ms", id, "--", "sleep", "30"}, nil, 124, "", "timeout"},
		{"blocking timeout", []string{"exec", "--no-stream", "--timeout", "500ms", id, "--", "sleep", "30"}, nil, 124, "", "timeout"},
		{"blocking exit code", []string{"exec", "--no-stream", id, "--", "sh", "-c", "echo done; exit 3"}, nil, 3, "done\n", ""},
		{"unknown sandbox", []string{"exec", "sb-doesnotexist", "--", "true"}, nil, 125, "", "Error: "},
		{"missing command", []string{"exec", id}, nil, 2, "", "missing arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, srv.url, tt.stdin, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", r.code, tt.wantCode, r.stderr)
			}
			if r.stdout != tt.wantStdout {
				t.Errorf("stdout: got %q, want %q", r.stdout, tt.wantStdout)
			}
			if tt.wantStderr == "" && r.stderr != "" {
				t.Errorf("stderr: got %q, want nothing", r.stderr)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr: got %q, want it to contain %q", r.stderr, tt.wantStderr)
			}
		})
	}
}

func TestExecWorkdir(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)

	mustCLI(t, srv.url, "exec", "-w", "/workspace/wd", id, "--", "sh", "-c", "echo here > out.txt")
	if got := mustCLI(t, srv.url, "files", "cat", id, "/workspace/wd/out.txt"); got != "here\n" {
		t.Errorf("file written in the workdir: got %q, want %q", got, "here\n")
	}
}

func TestExecBinaryStdin(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)

	data := make([]byte, 100_000)
	rand.Read(data)
	sum := sha256.Sum256(data)

	r := cli(t, srv.url, data, "exec", "-i", id, "--", "sha256sum")
	if r.code != 0 {
		t.Fatalf("exec -i sha256sum: code %d stderr %q", r.code, r.stderr)
	}
	if got := strings.Fields(r.stdout); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 inside the sandbox: got %q, want %s", r.stdout, hex.EncodeToString(sum[:]))
	}
}

func TestFilesCopyBinaryFile(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)
	local := t.TempDir()

	data := make([]byte, 3<<20)
	rand.Read(data)
	src := filepath.Join(local, "data.bin")
	if err := os.WriteFile(src, data, 0o751); err != nil {
		t.Fatal(err)
	}

	mustCLI(t, srv.url, "files", "cp", src, id+":/workspace/in/data.bin")
	out := filepath.Join(local, "out.bin")
	mustCLI(t, srv.url, "files", "cp", id+":/workspace/in/data.bin", out)

	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("round trip: got %d bytes that differ from the %d sent", len(got), len(data))
	}
	if info, err := os.Stat(out); err != nil || info.Mode().Perm() != 0o751 {
		t.Errorf("round trip mode: got %v (%v), want 0751", info.Mode().Perm(), err)
	}

	// A directory destination receives the file under its own name, and
	// "-" streams standard input and output.
	mustCLI(t, srv.url, "files", "cp", src, id+":/workspace/")
	r := cli(t, srv.url, nil, "files", "cp", id+":/workspace/data.bin", "-")
	if r.code != 0 || !bytes.Equal([]byte(r.stdout), data) {
		t.Errorf("cp into a directory then to -: code %d, got %d bytes, want the %d sent", r.code, len(r.stdout), len(data))
	}
	if r := cli(t, srv.url, []byte("piped\n"), "files", "cp", "-", id+":piped.txt"); r.code != 0 {
		t.Fatalf("cp - : code %d stderr %q", r.code, r.stderr)
	}
	if got := mustCLI(t, srv.url, "files", "cat", id, "/workspace/piped.txt"); got != "piped\n" {
		t.Errorf("cat after cp -: got %q, want %q", got, "piped\n")
	}
}

func TestFilesCopyDirectory(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)
	local := t.TempDir()

	tree := map[string]string{
		"project/README.md":          "read me\n",
		"project/src/main.go":        "package main\n",
		"project/src/deep/data.json": `{"a":1}`,
	}
	for name, content := range tree {
		path := filepath.Join(local, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(local, "project", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}

	mustCLI(t, srv.url, "files", "cp", filepath.Join(local, "project"), id+":/workspace/")
	listing := mustCLI(t, srv.url, "files", "ls", id, "/workspace/project")
	if listing != "README.md\nempty/\nsrc/\n" {
		t.Errorf("files ls: got %q", listing)
	}
	long := mustCLI(t, srv.url, "files", "ls", "-l", id, "project/src")
	for _, want := range []string{"NAME", "SIZE", "MODE", "MODIFIED", "main.go", "13", "-rw-r--r--", "deep/", "drwx"} {
		if !strings.Contains(long, want) {
			t.Errorf("files ls -l lacks %q:\n%s", want, long)
		}
	}
	if got := mustCLI(t, srv.url, "files", "cat", id, "/workspace/project/src/deep/data.json"); got != `{"a":1}` {
		t.Errorf("files cat: got %q", got)
	}

	back := filepath.Join(local, "back")
	mustCLI(t, srv.url, "files", "cp", id+":/workspace/project", back)
	for name, content := range tree {
		got, err := os.ReadFile(filepath.Join(back, strings.TrimPrefix(name, "project/")))
		if err != nil {
			t.Errorf("copied back: %v", err)
			continue
		}
		if string(got) != content {
			t.Errorf("copied back %s: got %q, want %q", name, got, content)
		}
	}
	if info, err := os.Stat(filepath.Join(back, "empty")); err != nil || !info.IsDir() {
		t.Errorf("copied back: empty directory missing (%v)", err)
	}
}

func TestFilesMkdirRemove(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)

	mustCLI(t, srv.url, "files", "mkdir", id, "/workspace/a/b/c")
	if got := mustCLI(t, srv.url, "files", "ls", id, "/workspace/a/b"); got != "c/\n" {
		t.Errorf("ls after mkdir: got %q, want %q", got, "c/\n")
	}

	r := cli(t, srv.url, nil, "files", "rm", id, "/workspace/a")
	if r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("rm of a non-empty directory: got code %d stderr %q, want 1 and 'not empty'", r.code, r.stderr)
	}
	mustCLI(t, srv.url, "files", "rm", "-r", id, "/workspace/a")
	r = cli(t, srv.url, nil, "files", "ls", id, "/workspace/a")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("ls after rm -r: got code %d stderr %q, want 1 and 'not found'", r.code, r.stderr)
	}
}

func TestFilesSandboxPathForms(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)
	other := spawnID(t, srv.url)

	mustCLI(t, srv.url, "files", "mkdir", id+":/workspace/a/b", id+":c")
	if got := mustCLI(t, srv.url, "files", "ls", id+":"); got != "a/\nc/\n" {
		t.Errorf("ls ID: got %q, want %q", got, "a/\nc/\n")
	}
	if got := mustCLI(t, srv.url, "files", "ls", id+":/workspace/a"); got != "b/\n" {
		t.Errorf("ls ID:PATH: got %q, want %q", got, "b/\n")
	}
	if got := mustCLI(t, srv.url, "files", "ls", id, "a"); got != "b/\n" {
		t.Errorf("ls ID PATH: got %q, want %q", got, "b/\n")
	}

	if r := cli(t, srv.url, []byte("hello\n"), "files", "cp", "-", id+":c/hello.txt"); r.code != 0 {
		t.Fatalf("cp - : code %d stderr %q", r.code, r.stderr)
	}
	if got := mustCLI(t, srv.url, "files", "cat", id+":/workspace/c/hello.txt"); got != "hello\n" {
		t.Errorf("cat ID:PATH: got %q, want %q", got, "hello\n")
	}
	if got := mustCLI(t, srv.url, "files", "cat", id+":c/hello.txt"); got != "hello\n" {
		t.Errorf("cat ID:relative path: got %q, want %q", got, "hello\n")
	}

	// Each ID:PATH argument names its own sandbox.
	mustCLI(t, srv.url, "files", "mkdir", id+":/workspace/d", other+":/workspace/d")
	if got := mustCLI(t, srv.url, "files", "ls", other+":"); got != "d/\n" {
		t.Errorf("ls of the second sandbox after mkdir: got %q, want %q", got, "d/\n")
	}

	mustCLI(t, srv.url, "files", "rm", id+":/workspace/c/hello.txt", id+":d")
	mustCLI(t, srv.url, "files", "rm", "-r", id+":/workspace/a")
	if got := mustCLI(t, srv.url, "files", "ls", id); got != "c/\n" {
		t.Errorf("ls after rm ID:PATH: got %q, want %q", got, "c/\n")
	}
}

func TestExtendDurationArgument(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url, "--ttl", "10m")

	out := mustCLI(t, srv.url, "extend", id, "1h", "-o", "json")
	var sb map[string]any
	if err := json.Unmarshal([]byte(out), &sb); err != nil {
		t.Fatalf("extend -o json printed invalid JSON: %v", err)
	}
	expires, _ := sb["expires_at"].(string)
	at, err := time.Parse(time.RFC3339, expires)
	if err != nil {
		t.Fatalf("extend -o json: expires_at %q: %v", expires, err)
	}
	if left := time.Until(at); left < 50*time.Minute || left > 61*time.Minute {
		t.Errorf("extend ID 1h: expiry in %s, want about 1h", left)
	}
}

func TestServerWithoutScheme(t *testing.T) {
	srv := startServe(t, t.TempDir())
	id := spawnID(t, srv.url)
	hostPort := strings.TrimPrefix(srv.url, "http://")

	if r := cli(t, srv.url, nil, "--server", hostPort, "ls", "-q"); r.code != 0 || r.stdout != id+"\n" {
		t.Errorf("--server %s: got code %d stdout %q stderr %q, want 0 and %s", hostPort, r.code, r.stdout, r.stderr, id)
	}
	if r := cli(t, hostPort, nil, "ls", "-q"); r.code != 0 || r.stdout != id+"\n" {
		t.Errorf("STACYVM_SERVER=%s: got code %d stdout %q stderr %q, want 0 and %s", hostPort, r.code, r.stdout, r.stderr, id)
	}
	localhost := strings.Replace(hostPort, "127.0.0.1", "localhost", 1)
	if r := cli(t, srv.url, nil, "--server", localhost, "ls", "-q"); r.code != 0 {
		t.Errorf("--server %s: got code %d stderr %q, want 0", localhost, r.code, r.stderr)
	}
}

func TestVersionCommand(t *testing.T) {
	srv := startServe(t, t.TempDir())

	out := mustCLI(t, srv.url, "version")
	if want := "Client: " + testVersion + "\nServer: " + testVersion + "\n"; out != want {
		t.Errorf("version: got %q, want %q", out, want)
	}

	srv.kill(syscall.SIGKILL)
	r := cli(t, srv.url, nil, "version")
	if r.code != 0 || r.stdout != "Client: "+testVersion+"\n" || !strings.Contains(r.stderr, "not available") {
		t.Errorf("version with the server down: got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestClientUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"ls", "--nope"}, "unknown flag"},
		{"bad pair", []string{"spawn", "--meta", "novalue"}, "use KEY=VALUE"},
		{"cp between two local paths", []string{"files", "cp", "a", "b"}, "exactly one of SRC and DST"},
		{"bad output", []string{"ls", "-o", "yaml"}, `invalid --output "yaml"`},
		{"negative memory", []string{"spawn", "--memory", "-5"}, "invalid --memory -5"},
		{"negative cpus", []string{"spawn", "--cpus", "-1"}, "invalid --cpus -1"},
		{"negative memory with template", []string{"spawn", "--template", "python", "--memory", "-5"}, "invalid --memory -5"},
		{"negative cpus in templates spawn", []string{"templates", "spawn", "python", "--cpus", "-2"}, "invalid --cpus -2"},
		{"extend without duration", []string{"extend", "sb-abc"}, "give it after the ID or with --ttl"},
		{"extend with two durations", []string{"extend", "sb-abc", "1h", "--ttl", "2h"}, "duration given twice"},
		{"extend without unit", []string{"extend", "sb-abc", "90"}, `invalid duration "90"`},
		{"extend with zero ttl", []string{"extend", "sb-abc", "--ttl", "0s"}, "invalid --ttl 0s"},
		{"ls with path twice", []string{"files", "ls", "sb-abc:/workspace", "/tmp"}, "give the directory once"},
		{"cat without path", []string{"files", "cat", "sb-abc"}, `missing PATH after sandbox ID "sb-abc"`},
		{"cat with empty path", []string{"files", "cat", "sb-abc:"}, `missing path in "sb-abc:"`},
		{"cat of two files", []string{"files", "cat", "sb-abc:a", "sb-abc:b"}, "prints one file"},
		{"rm mixing path forms", []string{"files", "rm", "sb-abc:/workspace/a", "/workspace/b"}, `invalid argument "/workspace/b"`},
		{"mkdir without path", []string{"files", "mkdir", "sb-abc"}, "missing PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, "http://127.0.0.1:1", nil, tt.args...)
			if r.code != 2 {
				t.Errorf("exit code: got %d, want 2", r.code)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr: got %q, want it to contain %q", r.stderr, tt.want)
			}
		})
	}
}

func TestServerUnreachable(t *testing.T) {
	r := cli(t, "http://127.0.0.1:1", nil, "ls")
	if r.code != 1 {
		t.Errorf("exit code: got %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "cannot connect to the StacyVM server") {
		t.Errorf("stderr: got %q, want a hint about the server", r.stderr)
	}
}
