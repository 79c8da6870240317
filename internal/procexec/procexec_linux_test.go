package procexec

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stacyvm/stacyvm/internal/provider"
)

func TestHasEnvEntry(t *testing.T) {
	t.Parallel()
	entry := []byte("K=v")
	tests := []struct {
		environ string
		want    bool
	}{
		{"K=v\x00", true},
		{"A=1\x00K=v\x00B=2\x00", true},
		{"A=1\x00K=v", true},
		{"K=vv\x00", false},
		{"XK=v\x00", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := hasEnvEntry([]byte(tt.environ), entry); got != tt.want {
			t.Errorf("hasEnvEntry(%q) = %v, want %v", tt.environ, got, tt.want)
		}
	}
}

func TestRunConfigureCannotUndoGroupOrEnv(t *testing.T) {
	t.Parallel()
	configured := false
	c := Command{
		Argv: sh(`read -r pid comm state ppid pgrp rest < /proc/$$/stat; echo "$pid $pgrp"; echo "leak=$LEAK"`),
		Configure: func(cmd *exec.Cmd) {
			configured = true
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: false}
			cmd.Env = []string{"LEAK=1"}
		},
	}
	_, rec := runCommand(t, c)
	if !configured {
		t.Fatal("Configure was not called")
	}
	lines := strings.Split(strings.TrimSpace(rec.text(provider.Stdout)), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout = %q, want two lines", rec.text(provider.Stdout))
	}
	if ids := strings.Fields(lines[0]); len(ids) != 2 || ids[0] != ids[1] {
		t.Errorf("pid and process group = %q, want the command to lead its own group", lines[0])
	}
	if lines[1] != "leak=" {
		t.Errorf("%s, want Run's environment to replace the one Configure set", lines[1])
	}
}
