package client_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/pkg/client"
)

func TestExec(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)

	tests := []struct {
		name       string
		req        client.ExecRequest
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "argv keeps arguments whole",
			req:        client.ExecRequest{Command: "printf", Args: []string{"%s|", "a b", "$HOME"}},
			wantStdout: "a b|$HOME|",
		},
		{
			name:     "non-zero exit is a result",
			req:      client.ExecRequest{Command: "sh", Args: []string{"-c", "exit 7"}},
			wantCode: 7,
		},
		{
			name:       "shell mode",
			req:        client.ExecRequest{Command: "echo out; echo err >&2", Shell: true},
			wantStdout: "out\n",
			wantStderr: "err\n",
		},
		{
			name:       "env",
			req:        client.ExecRequest{Command: "echo $GREETING", Shell: true, Env: map[string]string{"GREETING": "hi"}},
			wantStdout: "hi\n",
		},
		{
			name:       "binary stdin",
			req:        client.ExecRequest{Command: "wc", Args: []string{"-c"}, Stdin: []byte{0, 1, 2, 0xff, 0xfe, '\n'}},
			wantStdout: "6\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Exec(t.Context(), sb.ID, tt.req)
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", res.ExitCode, tt.wantCode)
			}
			if strings.TrimLeft(res.Stdout, " ") != tt.wantStdout {
				t.Errorf("stdout: got %q, want %q", res.Stdout, tt.wantStdout)
			}
			if res.Stderr != tt.wantStderr {
				t.Errorf("stderr: got %q, want %q", res.Stderr, tt.wantStderr)
			}
		})
	}
}

func TestExecTimeout(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)

	start := time.Now()
	res, err := c.Exec(t.Context(), sb.ID, client.ExecRequest{
		Command: "echo started; sleep 30",
		Shell:   true,
		Timeout: 300 * time.Millisecond,
	})
	if !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("got error %v, want ErrTimeout", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Exec returned after %v, want soon after the 300ms timeout", elapsed)
	}
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusRequestTimeout {
		t.Errorf("error %v: want an *APIError with status 408", err)
	}
	if !res.TimedOut {
		t.Error("result TimedOut: got false, want true")
	}
	if res.Stdout != "started\n" {
		t.Errorf("partial stdout: got %q, want %q", res.Stdout, "started\n")
	}
}

func TestExecStream(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)

	var stdout, stderr strings.Builder
	exit, err := c.ExecStream(t.Context(), sb.ID, client.ExecRequest{
		Command: "for i in 1 2 3; do echo out$i; echo err$i >&2; done; exit 5",
		Shell:   true,
	}, func(ch client.Chunk) error {
		switch ch.Stream {
		case client.Stdout:
			stdout.Write(ch.Data)
		case client.Stderr:
			stderr.Write(ch.Data)
		default:
			t.Errorf("chunk on unknown stream %q", ch.Stream)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ExecStream: %v", err)
	}
	if exit.ExitCode != 5 {
		t.Errorf("exit code: got %d, want 5", exit.ExitCode)
	}
	if got := stdout.String(); got != "out1\nout2\nout3\n" {
		t.Errorf("stdout: got %q", got)
	}
	if got := stderr.String(); got != "err1\nerr2\nerr3\n" {
		t.Errorf("stderr: got %q", got)
	}
}

func TestExecStreamTimeout(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)

	var stdout strings.Builder
	exit, err := c.ExecStream(t.Context(), sb.ID, client.ExecRequest{
		Command: "echo started; sleep 30",
		Shell:   true,
		Timeout: 300 * time.Millisecond,
	}, func(ch client.Chunk) error {
		if ch.Stream == client.Stdout {
			stdout.Write(ch.Data)
		}
		return nil
	})
	if !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("got error %v, want ErrTimeout", err)
	}
	if !exit.TimedOut {
		t.Error("exit TimedOut: got false, want true")
	}
	if stdout.String() != "started\n" {
		t.Errorf("stdout: got %q, want %q", stdout.String(), "started\n")
	}
}

func TestExecStreamCallbackError(t *testing.T) {
	c := newClient(t)
	sb := spawn(t, c)

	stop := errors.New("enough")
	start := time.Now()
	_, err := c.ExecStream(t.Context(), sb.ID, client.ExecRequest{
		Command: "while true; do echo tick; sleep 0.05; done",
		Shell:   true,
	}, func(client.Chunk) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("got %v, want the callback's error", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("ExecStream returned after %v, want right after the first chunk", elapsed)
	}
}

func TestExecUnknownSandbox(t *testing.T) {
	c := newClient(t)
	req := client.ExecRequest{Command: "true"}

	if _, err := c.Exec(t.Context(), "sb-doesnotexist", req); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Exec: got %v, want ErrNotFound", err)
	}
	_, err := c.ExecStream(t.Context(), "sb-doesnotexist", req, func(client.Chunk) error { return nil })
	if !errors.Is(err, client.ErrNotFound) {
		t.Errorf("ExecStream: got %v, want ErrNotFound", err)
	}
}
