package main

import (
	"regexp"
	"strings"
	"testing"
)

// doctorLine is the form of one check line: the status, the check name
// and a detail, with the fix for a problem.
var doctorLine = regexp.MustCompile(`^(OK|WARN|FAIL)  +([a-z-]+) +(\S.*)$`)

func TestDoctorPrintsLinePerCheck(t *testing.T) {
	r := cli(t, "", nil, "doctor", "--data-dir", t.TempDir(), "--default-provider", "mock")

	// The host decides which checks pass, so only the structure is
	// checked. With the mock provider, only the config and disk checks
	// can decide the exit status.
	if r.code != 0 && r.code != 1 {
		t.Fatalf("exit code %d, want 0 or 1; stderr: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	checks := doctorChecks()
	if len(lines) != len(checks)+1 {
		t.Fatalf("got %d lines, want %d checks and a summary:\n%s", len(lines), len(checks), r.stdout)
	}
	for i, c := range checks {
		m := doctorLine.FindStringSubmatch(lines[i])
		if m == nil {
			t.Errorf("line %d %q does not match STATUS NAME DETAIL", i, lines[i])
			continue
		}
		if m[2] != c.name {
			t.Errorf("line %d names check %s, want %s", i, m[2], c.name)
		}
		if m[1] != "OK" && !strings.Contains(lines[i], "; fix: ") {
			t.Errorf("line %d reports %s without a fix: %q", i, m[1], lines[i])
		}
		if m[1] == "FAIL" && !strings.Contains(lines[i], "(needed by ") {
			t.Errorf("line %d fails without naming the providers that need it: %q", i, lines[i])
		}
	}
	if summary := lines[len(lines)-1]; !strings.HasPrefix(summary, "default provider mock") {
		t.Errorf("last line %q, want the default provider summary", summary)
	}
	if !strings.Contains(r.stdout, "OK    config ") {
		t.Errorf("config check did not pass with a valid configuration:\n%s", r.stdout)
	}
}

func TestDoctorFailsForInvalidConfig(t *testing.T) {
	r := cli(t, "", nil, "doctor", "--config", t.TempDir()+"/missing.yaml", "--default-provider", "mock")
	if r.code != 1 {
		t.Errorf("exit code %d, want 1", r.code)
	}
	if !strings.Contains(r.stdout, "FAIL  config ") {
		t.Errorf("stdout lacks a failed config check:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "failed checks: config") {
		t.Errorf("stderr %q does not name the failed config check", r.stderr)
	}
}

func TestDefaultBlockers(t *testing.T) {
	tests := []struct {
		name     string
		provider string
		failed   map[string][]string
		want     []string
	}{
		{"named provider ok", "docker", map[string][]string{"proot": {"proot"}}, nil},
		{"named provider fails", "docker", map[string][]string{"docker": {"docker-engine", "agent"}}, []string{"docker-engine", "agent"}},
		{"check every provider needs", "mock", map[string][]string{allProviders: {"disk-space"}}, []string{"disk-space"}},
		{"auto with one usable", "auto", map[string][]string{"docker": {"docker-engine"}, "native": {"cgroups"}}, nil},
		{"auto with none usable", "auto",
			map[string][]string{"docker": {"agent"}, "native": {"agent", "cgroups"}, "proot": {"agent"}},
			[]string{"agent", "cgroups"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaultBlockers(tt.provider, tt.failed)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("defaultBlockers(%s) = %v, want %v", tt.provider, got, tt.want)
			}
		})
	}
}
