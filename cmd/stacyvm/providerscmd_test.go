package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestProvidersTable(t *testing.T) {
	srv := startServe(t, t.TempDir())
	out := mustCLI(t, srv.url, "providers")

	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("got %d lines, want a header and a row per provider:\n%s", len(lines), out)
	}
	header := strings.Fields(lines[0])
	want := []string{"NAME", "DEFAULT", "HEALTHY", "ISOLATION", "RUNTIMES", "CAPABILITIES", "ERROR"}
	if strings.Join(header, " ") != strings.Join(want, " ") {
		t.Errorf("header %v, want %v", header, want)
	}

	var mockRow []string
	for _, line := range lines[1:] {
		if fields := strings.Fields(line); len(fields) > 0 && fields[0] == "mock" {
			mockRow = fields
		}
	}
	if mockRow == nil {
		t.Fatalf("no row for the mock provider:\n%s", out)
	}
	if mockRow[1] != "*" || mockRow[2] != "true" {
		t.Errorf("mock row %v: got default %q healthy %q, want * and true", mockRow, mockRow[1], mockRow[2])
	}

	if got := mustCLI(t, srv.url, "providers", "list"); got != out {
		t.Errorf("providers list printed\n%s\nwant the same as providers:\n%s", got, out)
	}
}

func TestProvidersJSON(t *testing.T) {
	srv := startServe(t, t.TempDir())
	var rows []providerRow
	if err := json.Unmarshal([]byte(mustCLI(t, srv.url, "providers", "-o", "json")), &rows); err != nil {
		t.Fatalf("providers -o json printed invalid JSON: %v", err)
	}

	defaults := 0
	var mock *providerRow
	for i, r := range rows {
		if r.Default {
			defaults++
		}
		if r.Name == "mock" {
			mock = &rows[i]
		}
	}
	if defaults != 1 {
		t.Errorf("%d providers marked default, want 1", defaults)
	}
	if mock == nil {
		t.Fatalf("no mock provider in %+v", rows)
	}
	if !mock.Default || !mock.Healthy || mock.Capabilities.Isolation == "" {
		t.Errorf("mock: got default %v healthy %v isolation %q, want true, true and an isolation", mock.Default, mock.Healthy, mock.Capabilities.Isolation)
	}
}

func TestProvidersRejectsUnknownOutput(t *testing.T) {
	r := cli(t, "http://127.0.0.1:1", nil, "providers", "-o", "yaml")
	if r.code != 2 || !strings.Contains(r.stderr, `invalid --output "yaml"`) {
		t.Errorf("got code %d stderr %q, want 2 and a message about --output", r.code, r.stderr)
	}
}
