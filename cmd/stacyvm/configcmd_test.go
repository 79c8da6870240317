package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidateValid(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stacyvm.yaml")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:7500\ndefault_provider: mock\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "", nil, "config", "validate", "--config", file)
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0; stderr: %s", r.code, r.stderr)
	}
	if want := "configuration is valid (file " + file + ")\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stacyvm.yaml")
	content := "listen: nowhere\n" +
		"default_provider: nosuch\n" +
		"log:\n  level: loud\n" +
		"limits:\n  max_memory_mb: -1\n  default_ttl: 48h\n" +
		"providers:\n  dockr:\n    host: unix:///run/docker.sock\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", nil, "config", "validate", "--config", file)
	if r.code != 2 {
		t.Errorf("exit code %d, want 2", r.code)
	}
	for _, want := range []string{
		"configuration is invalid (5 problems)",
		`listen "nowhere" is invalid`,
		`default_provider "nosuch" is not a provider of this build`,
		`log.level "loud" is invalid`,
		"limits.max_memory_mb is -1",
		"limits.default_ttl (48h0m0s) is greater than limits.max_ttl",
		"warning: providers.dockr configures a provider that this build does not have",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestConfigValidateUsesServePrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stacyvm.yaml")
	if err := os.WriteFile(file, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A flag wins over the file, as it does for serve.
	if r := cli(t, "", nil, "config", "validate", "--config", file, "--log-level", "debug"); r.code != 0 {
		t.Errorf("with --log-level debug: exit code %d, want 0; stderr: %s", r.code, r.stderr)
	}
	// The environment wins over the file too.
	r := cliEnv(t, []string{"STACYVM_LOG_LEVEL=warn"}, "config", "validate", "--config", file)
	if r.code != 0 {
		t.Errorf("with STACYVM_LOG_LEVEL=warn: exit code %d, want 0; stderr: %s", r.code, r.stderr)
	}
}

func TestConfigValidateHasServeFlags(t *testing.T) {
	a := &app{}
	validate := a.newConfigValidateCommand()
	for _, sf := range serveFlags {
		if sf.flag == "api-key" {
			continue // a persistent flag of the root command
		}
		if validate.Flags().Lookup(sf.flag) == nil {
			t.Errorf("config validate lacks the serve flag --%s", sf.flag)
		}
	}
}

// cliEnv runs the stacyvm binary with extra environment variables and
// returns its output and exit code.
func cliEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	err := cmd.Run()
	var exitErr *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run stacyvm %v: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// A file with an unknown key and a value of the wrong type still has its
// other values checked, so one run lists every problem.
func TestConfigValidateReportsParseAndValueProblems(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stacyvm.yaml")
	content := "listen: nowhere\n" +
		"limits:\n  max_memroy: 5\n  default_exec_timeout: sixty\n  max_vcpus: -2\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", nil, "config", "validate", "--config", file)
	if r.code != 2 {
		t.Errorf("exit code %d, want 2", r.code)
	}
	for _, want := range []string{
		"max_memroy",
		"sixty",
		`listen "nowhere" is invalid`,
		"limits.max_vcpus",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}
