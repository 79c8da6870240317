package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// forbiddenDeps are packages the agent must not link: it runs inside every
// sandbox, so it stays small and carries none of the server, the store, the
// Docker SDK or the database drivers. An entry ending in "/" forbids every
// package under it.
var forbiddenDeps = []string{
	"github.com/stacyvm/stacyvm/internal/store",
	"github.com/stacyvm/stacyvm/internal/orchestrator",
	"github.com/stacyvm/stacyvm/internal/api",
	"github.com/stacyvm/stacyvm/cmd/stacyvm",
	"github.com/docker/",
	"github.com/moby/",
	"modernc.org/sqlite",
	"github.com/jackc/pgx",
}

func TestDependencyBudget(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the agent's dependencies: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}

	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %d packages, want the agent's whole graph", len(deps))
	}
	for _, dep := range deps {
		for _, forbidden := range forbiddenDeps {
			if dep == forbidden || strings.HasPrefix(dep, strings.TrimSuffix(forbidden, "/")+"/") {
				t.Errorf("stacyvm-agent depends on %s, which is outside its dependency budget (%s)", dep, forbidden)
			}
		}
	}
}
