package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

func TestBuildArgv(t *testing.T) {
	tests := []struct {
		name string
		req  ExecRequest
		want []string
	}{
		{"argv mode", ExecRequest{Command: "ls", Args: []string{"-l", "/tmp dir"}}, []string{"ls", "-l", "/tmp dir"}},
		{"argv mode without args", ExecRequest{Command: "pwd"}, []string{"pwd"}},
		{"shell without args", ExecRequest{Command: "echo $HOME | wc -c", Shell: true}, []string{"sh", "-c", "echo $HOME | wc -c"}},
		{"shell with plain args", ExecRequest{Command: "echo", Args: []string{"a", "b"}, Shell: true}, []string{"sh", "-c", "echo 'a' 'b'"}},
		{"shell with space", ExecRequest{Command: "cat", Args: []string{"my file"}, Shell: true}, []string{"sh", "-c", "cat 'my file'"}},
		{"shell with quote", ExecRequest{Command: "echo", Args: []string{"it's"}, Shell: true}, []string{"sh", "-c", `echo 'it'\''s'`}},
		{"shell with empty arg", ExecRequest{Command: "printf", Args: []string{""}, Shell: true}, []string{"sh", "-c", "printf ''"}},
		{"shell with metacharacters", ExecRequest{Command: "echo", Args: []string{"$(id) `x` ; | & *"}, Shell: true}, []string{"sh", "-c", "echo '$(id) `x` ; | & *'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildArgv(tt.req)
			if err != nil {
				t.Fatalf("buildArgv: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("argv = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBuildArgvRejects(t *testing.T) {
	tests := []struct {
		name  string
		req   ExecRequest
		field string
	}{
		{"empty command", ExecRequest{}, "command"},
		{"blank command", ExecRequest{Command: "  "}, "command"},
		{"NUL in command", ExecRequest{Command: "ls\x00"}, "command"},
		{"NUL in an arg", ExecRequest{Command: "ls", Args: []string{"a", "b\x00"}}, "args[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildArgv(tt.req)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("error = %v, want a FieldError naming %s", err, tt.field)
			}
		})
	}
}

// TestShellQuoteRoundTrip runs the quoted arguments through a real sh and
// checks that each arrives unchanged as one word.
func TestShellQuoteRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("sh is not installed")
	}
	args := []string{"plain", "two words", "it's", `back\slash`, "$HOME", "`id`", "$(id)", "*", "", "a\nb", "'", `"`, "--", ";"}
	argv, err := buildArgv(ExecRequest{Command: "printf '[%s]'", Args: args, Shell: true})
	if err != nil {
		t.Fatal(err)
	}

	out, err := exec.CommandContext(t.Context(), sh, argv[1:]...).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	var want strings.Builder
	for _, a := range args {
		want.WriteString("[" + a + "]")
	}
	if string(out) != want.String() {
		t.Errorf("sh printed %q, want %q", out, want.String())
	}
}

func TestResolveWorkdir(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "/workspace"},
		{"src", "/workspace/src"},
		{"./src/../lib/", "/workspace/lib"},
		{"/tmp", "/tmp"},
		{"/tmp//x/./y/", "/tmp/x/y"},
		{"..", "/"},
		{"/", "/"},
	}
	for _, tt := range tests {
		got, err := resolveWorkdir(tt.in)
		if err != nil {
			t.Errorf("resolveWorkdir(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("resolveWorkdir(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	_, err := resolveWorkdir("a\x00b")
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "workdir" {
		t.Errorf("resolveWorkdir with NUL: error = %v, want a FieldError naming workdir", err)
	}
}

func TestExecPassesRequest(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{Env: map[string]string{"A": "sandbox", "B": "sandbox"}})

	var out bytes.Buffer
	res, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{
		Command: "env",
		Env:     map[string]string{"B": "request", "C": "request"},
		Workdir: "build",
		Stdin:   []byte("input"),
	}, collect(&out))
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if res.ExitCode != 0 || out.String() != "ok\n" {
		t.Errorf("result %+v with output %q, want exit 0 and the provider's output", res, out.String())
	}

	req := env.fake.lastExec(t)
	wantEnv := map[string]string{"A": "sandbox", "B": "request", "C": "request"}
	if len(req.Env) != len(wantEnv) {
		t.Errorf("env = %v, want %v", req.Env, wantEnv)
	}
	for k, v := range wantEnv {
		if req.Env[k] != v {
			t.Errorf("env[%s] = %q, want %q", k, req.Env[k], v)
		}
	}
	if req.Workdir != "/workspace/build" {
		t.Errorf("workdir = %q, want /workspace/build", req.Workdir)
	}
	if string(req.Stdin) != "input" {
		t.Errorf("stdin = %q, want input", req.Stdin)
	}
	if req.MaxOutputBytes != env.m.Limits().MaxOutputBytes {
		t.Errorf("MaxOutputBytes = %d, want %d", req.MaxOutputBytes, env.m.Limits().MaxOutputBytes)
	}
	if !slices.Equal(req.Argv, []string{"env"}) {
		t.Errorf("argv = %q, want [env]", req.Argv)
	}
}

func TestExecTimeout(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	limits := env.m.Limits()

	if _, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true"}, discard); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if got := env.fake.lastExec(t).Timeout; got != limits.DefaultExecTimeout {
		t.Errorf("timeout = %s, want the default %s", got, limits.DefaultExecTimeout)
	}

	if _, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true", Timeout: 5 * time.Second}, discard); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if got := env.fake.lastExec(t).Timeout; got != 5*time.Second {
		t.Errorf("timeout = %s, want 5s", got)
	}

	_, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true", Timeout: limits.MaxExecTimeout + time.Second}, discard)
	var le *provider.LimitError
	if !errors.As(err, &le) || le.Limit != "max_exec_timeout" {
		t.Errorf("timeout above the maximum: error = %v, want LimitError max_exec_timeout", err)
	}

	_, err = env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true", Timeout: -time.Second}, discard)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "timeout" {
		t.Errorf("negative timeout: error = %v, want a FieldError naming timeout", err)
	}
}

func TestExecRejectsBadEnv(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	_, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true", Env: map[string]string{"BAD KEY": "x"}}, discard)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "env" {
		t.Errorf("error = %v, want a FieldError naming env", err)
	}
}

func TestExecRecordsEvent(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	env.fake.set(func(f *fakeProvider) {
		f.execFunc = func(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
			out(provider.Stdout, []byte("secret output"))
			return provider.ExecResult{ExitCode: 137, TimedOut: true, ExitReason: provider.ExitTimeout, Duration: 2 * time.Second}, nil
		}
	})

	res, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "sleep 10", Shell: true}, discard)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if !res.TimedOut || res.ExitCode != 137 {
		t.Errorf("result = %+v, want the provider's timed-out result", res)
	}

	events, err := env.store.EventsAfter(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if last.Type != EventExecCompleted {
		t.Fatalf("last event = %s, want %s", last.Type, EventExecCompleted)
	}
	var data map[string]any
	if err := json.Unmarshal(last.Data, &data); err != nil {
		t.Fatalf("event data: %v", err)
	}
	if data["exit_code"] != float64(137) || data["timed_out"] != true || data["exit_reason"] != "timeout" || data["duration_ms"] != float64(2000) {
		t.Errorf("event data = %v, want exit_code 137, timed_out, exit_reason timeout, duration_ms 2000", data)
	}
	if strings.Contains(string(last.Data), "secret output") {
		t.Error("event data contains the command's output")
	}
}

func TestExecEndsWithRequest(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	started := make(chan struct{})
	env.fake.set(func(f *fakeProvider) {
		f.execFunc = func(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
			close(started)
			<-ctx.Done()
			return provider.ExecResult{}, ctx.Err()
		}
	})

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, err := env.m.Exec(ctx, sb.ID, ExecRequest{Command: "sleep", Args: []string{"100"}}, discard)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if got := env.get(t, sb.ID); got.State != store.StateRunning {
		t.Errorf("state = %s, want running after a canceled exec", got.State)
	}
}

func TestExecRuntimeVanished(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	env.fake.set(func(f *fakeProvider) { delete(f.runtimes, sb.ID) })

	_, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true"}, discard)
	if !errors.Is(err, provider.ErrSandboxDestroyed) {
		t.Fatalf("error = %v, want ErrSandboxDestroyed", err)
	}
	got := env.get(t, sb.ID)
	if got.State != store.StateDestroyed || got.Error != "runtime disappeared" {
		t.Errorf("record: state %s error %q, want destroyed with 'runtime disappeared'", got.State, got.Error)
	}
	if n := countOf(env.eventTypes(t, sb.ID), EventDestroyed); n != 1 {
		t.Errorf("sandbox.destroyed events = %d, want 1", n)
	}
}

func TestExecNotFoundButRecoverable(t *testing.T) {
	env := newEnv(t)
	sb := env.spawn(t, SpawnRequest{})
	env.fake.set(func(f *fakeProvider) {
		f.execFunc = func(ctx context.Context, req provider.ExecRequest, out provider.OutputFunc) (provider.ExecResult, error) {
			return provider.ExecResult{}, provider.ErrSandboxNotFound
		}
	})

	_, err := env.m.Exec(t.Context(), sb.ID, ExecRequest{Command: "true"}, discard)
	if err == nil {
		t.Fatal("Exec succeeded, want the provider's error")
	}
	if got := env.get(t, sb.ID); got.State != store.StateRunning {
		t.Errorf("state = %s, want running because Recover found the runtime", got.State)
	}
}
