package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
	"github.com/stacyvm/stacyvm/internal/provider/custom"
	"github.com/stacyvm/stacyvm/pkg/client"
)

const providerToken = "provider-token-0b5e7d19c4a2"

// startProviderServer runs "stacyvm provider-server" for the mock provider
// on a free loopback port, with the token in the environment, and waits
// until it prints its ready line. The process is killed when the test
// ends, if it is still running.
func startProviderServer(t *testing.T, dataDir string) *serverProcess {
	t.Helper()
	cmd := exec.Command(binary, "provider-server", "--listen", "127.0.0.1:0", "--provider", "mock",
		"--data-dir", dataDir, "--log-level", "debug")
	cmd.Env = append(baseEnv(), envProviderToken+"="+providerToken)
	cmd.Dir = t.TempDir()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, dataDir: dataDir, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start provider-server: %v", err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("provider-server stderr:\n%s", p.stderr.String())
		}
	})
	p.url = readReadyLine(t, p, stdout)
	return p
}

// newCustomClient returns the custom provider for the backend at url.
func newCustomClient(t *testing.T, url string) provider.Provider {
	t.Helper()
	p, err := custom.New(t.Context(), custom.Config{BaseURL: url, APIKey: providerToken})
	if err != nil {
		t.Fatalf("custom.New: %v", err)
	}
	return p
}

func TestProviderServerConformance(t *testing.T) {
	srv := startProviderServer(t, t.TempDir())
	conformance.Run(t, conformance.Harness{
		New:       func(t *testing.T) provider.Provider { return newCustomClient(t, srv.url) },
		HostPaths: true,
	})
}

func TestProviderServerRequiresToken(t *testing.T) {
	r := cli(t, "", nil, "provider-server", "--provider", "mock", "--data-dir", t.TempDir())
	if r.code != exitUsage {
		t.Errorf("exit code: got %d, want %d", r.code, exitUsage)
	}
	if !strings.Contains(r.stderr, envProviderToken) {
		t.Errorf("stderr does not name %s:\n%s", envProviderToken, r.stderr)
	}
}

func TestProviderServerUnknownProvider(t *testing.T) {
	r := cli(t, "", nil, "provider-server", "--provider", "warp", "--token", "x", "--data-dir", t.TempDir())
	if r.code != exitUsage {
		t.Errorf("exit code: got %d, want %d", r.code, exitUsage)
	}
	if !strings.Contains(r.stderr, `"warp"`) || !strings.Contains(r.stderr, "mock") {
		t.Errorf("stderr does not name the bad provider and the valid ones:\n%s", r.stderr)
	}
}

func TestProviderServerAuth(t *testing.T) {
	srv := startProviderServer(t, t.TempDir())

	for _, header := range []string{"", "Bearer wrong-token-77f3", "Bearer " + providerToken + "x"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.url+"/v1/version", nil)
		if err != nil {
			t.Fatal(err)
		}
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", header, resp.StatusCode)
		}
	}

	p := newCustomClient(t, srv.url)
	if err := p.Health(t.Context()); err != nil {
		t.Errorf("Health with the token: %v", err)
	}

	logs := srv.stderr.String()
	if !strings.Contains(logs, "rejected a call without a valid token") {
		t.Errorf("log does not record the rejected calls:\n%s", logs)
	}
	for _, secret := range []string{providerToken, "wrong-token-77f3"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains the token %q:\n%s", secret, logs)
		}
	}
}

func TestProviderServerGracefulShutdown(t *testing.T) {
	srv := startProviderServer(t, t.TempDir())
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.exitCode(t, 30*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	if logs := srv.stderr.String(); !strings.Contains(logs, "provider server stopped") {
		t.Errorf("log lacks the stop:\n%s", logs)
	}
}

// writeCustomConfig writes a serve configuration whose custom provider
// uses the backend at url.
func writeCustomConfig(t *testing.T, url string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "stacyvm.yaml")
	content := "providers:\n  custom:\n    base_url: " + url + "\n    api_key: " + providerToken + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestCustomProviderBackendKilledMidExec(t *testing.T) {
	backend := startProviderServer(t, t.TempDir())
	srv := startServe(t, t.TempDir(), "--config", writeCustomConfig(t, backend.url), "--default-provider", "custom")

	c, err := client.New(srv.url)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.Spawn(t.Context(), client.SpawnRequest{})
	if err != nil {
		t.Fatalf("spawn on the custom provider: %v", err)
	}
	if sb.Provider != custom.Name {
		t.Fatalf("sandbox provider = %q, want %q", sb.Provider, custom.Name)
	}

	var killedAt time.Time
	req := client.ExecRequest{Command: "echo started; sleep 30", Shell: true, Timeout: 10 * time.Second}
	start := time.Now()
	_, err = c.ExecStream(t.Context(), sb.ID, req, func(chunk client.Chunk) error {
		if killedAt.IsZero() {
			killedAt = time.Now()
			backend.kill(syscall.SIGKILL)
		}
		return nil
	})
	returned := time.Now()
	if killedAt.IsZero() {
		t.Fatalf("ExecStream returned before any output: %v", err)
	}
	t.Logf("backend killed %v after the exec started; ExecStream returned %v after the kill with: %v",
		killedAt.Sub(start), returned.Sub(killedAt), err)

	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "UNAVAILABLE" {
		t.Fatalf("ExecStream after the backend was killed: %v, want an UNAVAILABLE error line", err)
	}
	if !strings.Contains(apiErr.Message, backend.url) {
		t.Errorf("error message %q does not name the backend %s", apiErr.Message, backend.url)
	}
	if elapsed := returned.Sub(killedAt); elapsed > 5*time.Second {
		t.Errorf("ExecStream returned %v after the kill, want well within the 10s exec timeout", elapsed)
	}

	if logs := srv.stderr.String(); strings.Contains(logs, providerToken) {
		t.Errorf("serve log contains the custom provider's API key:\n%s", logs)
	}
}
