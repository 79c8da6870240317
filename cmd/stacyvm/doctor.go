package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacyvm/stacyvm/internal/agent"
	"github.com/stacyvm/stacyvm/internal/config"
	"github.com/stacyvm/stacyvm/internal/orchestrator"
)

// doctorTimeout bounds each check that talks to another program, so that
// a hung Docker engine delays the report only briefly.
const doctorTimeout = 5 * time.Second

// defaultDockerHost is the engine address the docker provider uses when
// providers.docker.host is empty.
const defaultDockerHost = "unix:///var/run/docker.sock"

// allProviders marks a check that every provider needs.
const allProviders = "*"

// checkStatus is the result of one host check.
type checkStatus int

const (
	statusOK   checkStatus = iota
	statusWarn             // degraded or optional: nothing the check's providers need is missing
	statusFail             // the providers in needs cannot work
)

func (s checkStatus) String() string {
	switch s {
	case statusOK:
		return "OK"
	case statusWarn:
		return "WARN"
	}
	return "FAIL"
}

// checkResult is the outcome of one check. fix is the remedy printed for
// WARN and FAIL.
type checkResult struct {
	status checkStatus
	detail string
	fix    string
}

func checkOK(format string, args ...any) checkResult {
	return checkResult{status: statusOK, detail: fmt.Sprintf(format, args...)}
}

func checkWarn(fix, format string, args ...any) checkResult {
	return checkResult{status: statusWarn, detail: fmt.Sprintf(format, args...), fix: fix}
}

func checkFail(fix, format string, args ...any) checkResult {
	return checkResult{status: statusFail, detail: fmt.Sprintf(format, args...), fix: fix}
}

// hostCheck is one check of the doctor command.
type hostCheck struct {
	name  string
	needs []string // providers that cannot work when the check fails; allProviders for every one
	run   func(ctx context.Context, env *doctorEnv) checkResult
}

// doctorEnv is the state the checks share.
type doctorEnv struct {
	cfg       config.Config
	cfgErr    error       // the configuration failed to load or validate
	docker    *dockerInfo // set by the engine check when the engine responded
	dockerErr error
}

func (a *app) newDoctorCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host for what each provider needs",
		Long: "Check this host for what the providers need: the Docker engine and its\n" +
			"runtimes, cgroups, namespaces, overlayfs, /dev/kvm, the agent binary,\n" +
			"PRoot, and free space in the data directory. Each check prints one line\n" +
			"with OK, WARN or FAIL, and a fix for each problem.\n\n" +
			"The configuration is loaded as serve loads it. The command exits with 1\n" +
			"when a check that the configured default provider needs fails; with\n" +
			"default_provider auto, when docker, native and proot all have one.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			env := &doctorEnv{}
			env.cfg, env.cfgErr = loadDoctorConfig(cmd, configFile)
			return runDoctor(cmd.Context(), a.stdout, env, doctorChecks())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file (env "+config.EnvConfigFile+"; default ./"+config.DefaultFile+" when present)")
	f.String("data-dir", "", "data directory whose free space is checked (default as serve)")
	f.String("default-provider", config.Default().DefaultProvider, `provider whose needs decide the exit status, or "auto"`)
	return cmd
}

// loadDoctorConfig loads the configuration as serve does. When it does
// not validate, the doctor still runs on what loaded, or on the defaults,
// and reports the problems in its config check.
func loadDoctorConfig(cmd *cobra.Command, file string) (config.Config, error) {
	cfg, err := loadServeConfig(cmd, file)
	if err == nil {
		return cfg, nil
	}
	loaded, loadErr := config.Load(config.LoadOptions{File: file})
	if loadErr != nil {
		return config.Default(), err // DataDir stays empty, and the disk check reports that
	}
	return loaded, err
}

// doctorChecks lists every check in the order they run and print.
func doctorChecks() []hostCheck {
	checks := []hostCheck{
		{name: "config", needs: []string{allProviders}, run: checkConfig},
		{name: "docker-engine", needs: []string{"docker"}, run: checkDockerEngine},
		{name: "docker-runtimes", needs: []string{"docker"}, run: checkDockerRuntimes},
		{name: "agent", needs: []string{"docker", "native", "proot"}, run: checkAgent},
		{name: "proot", needs: []string{"proot"}, run: checkPRoot},
	}
	return append(checks, platformChecks()...)
}

// runDoctor runs the checks, prints one line for each and a summary for
// the default provider, and returns an exit error when a check that the
// default provider needs failed.
func runDoctor(ctx context.Context, w io.Writer, env *doctorEnv, checks []hostCheck) error {
	failed := make(map[string][]string) // provider -> names of failed checks
	for _, c := range checks {
		res := c.run(ctx, env)
		printCheck(w, c, res)
		if res.status == statusFail {
			for _, p := range c.needs {
				failed[p] = append(failed[p], c.name)
			}
		}
	}

	name := env.cfg.DefaultProvider
	blockers := defaultBlockers(name, failed)
	if len(blockers) == 0 {
		fmt.Fprintf(w, "default provider %s: no failed check stops it\n", name)
		return nil
	}
	return &exitError{code: exitFailure, err: fmt.Errorf("default provider %s cannot work on this host: failed checks: %s",
		name, strings.Join(blockers, ", "))}
}

// printCheck prints the line of one check: the status, the name, the
// detail, the providers a failure stops and the fix.
func printCheck(w io.Writer, c hostCheck, res checkResult) {
	line := fmt.Sprintf("%-4s  %-16s %s", res.status, c.name, res.detail)
	if res.status == statusFail {
		line += " (needed by " + describeNeeds(c.needs) + ")"
	}
	if res.status != statusOK && res.fix != "" {
		line += "; fix: " + res.fix
	}
	fmt.Fprintln(w, line)
}

func describeNeeds(needs []string) string {
	if slices.Contains(needs, allProviders) {
		return "every provider"
	}
	return strings.Join(needs, ", ")
}

// defaultBlockers returns the failed checks that stop the default provider
// name. For auto, which picks the first usable of docker, native and
// proot, they are the failures of all three, unless one of them has none.
func defaultBlockers(name string, failed map[string][]string) []string {
	common := failed[allProviders]
	if name != orchestrator.AutoProvider {
		return withoutDuplicates(append(slices.Clone(common), failed[name]...))
	}
	candidates := []string{"docker", "native", "proot"}
	var all []string
	for _, p := range candidates {
		if len(failed[p]) == 0 {
			return common
		}
		all = append(all, failed[p]...)
	}
	return withoutDuplicates(append(slices.Clone(common), all...))
}

func withoutDuplicates(list []string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// providerSetting returns the string value of providers.<name>.<key>, or
// "" when it is not set.
func providerSetting(cfg config.Config, name, key string) string {
	value, _ := cfg.Providers[name][key].(string)
	return value
}

func checkConfig(_ context.Context, env *doctorEnv) checkResult {
	if env.cfgErr != nil {
		problems := strings.ReplaceAll(strings.TrimSpace(describe(env.cfgErr)), "\n  - ", " - ")
		return checkFail("run 'stacyvm config validate' and correct each problem it lists", "%s", problems)
	}
	return checkOK("loaded and valid; default provider %s, data directory %s", env.cfg.DefaultProvider, env.cfg.DataDir)
}

// dockerInfo is the engine version and runtimes read from the Docker API.
type dockerInfo struct {
	host       string
	version    string   // engine version, such as 27.5.1
	apiVersion string   // API version, such as 1.47
	runtimes   []string // registered OCI runtimes, sorted
}

func checkDockerEngine(ctx context.Context, env *doctorEnv) checkResult {
	host := providerSetting(env.cfg, "docker", "host")
	if host == "" {
		host = defaultDockerHost
	}
	info, err := queryDocker(ctx, host)
	if err != nil {
		env.dockerErr = err
		fix := "install Docker: apt-get install docker.io, then start dockerd: systemctl start docker"
		if errors.Is(err, syscall.EACCES) {
			fix = "run stacyvm as root, or add its user to the docker group: usermod -aG docker USER"
		}
		return checkFail(fix, "Docker engine not reachable at %s: %v", host, err)
	}
	env.docker = &info
	return checkOK("Docker %s (API %s) at %s", info.version, info.apiVersion, host)
}

func checkDockerRuntimes(_ context.Context, env *doctorEnv) checkResult {
	if env.docker == nil {
		return checkWarn("fix the docker-engine check first", "not checked: the Docker engine is not reachable")
	}
	have := env.docker.runtimes
	if !slices.Contains(have, "runc") {
		return checkFail("reinstall Docker, whose packages include runc, or register runc in /etc/docker/daemon.json",
			"runc is not registered with the engine (registered: %s)", strings.Join(have, ", "))
	}

	var missing []string
	for _, rt := range []string{"runsc", "kata-runtime"} {
		if !slices.Contains(have, rt) {
			missing = append(missing, rt)
		}
	}
	if len(missing) > 0 {
		return checkWarn("for gVisor install runsc and run 'runsc install', for Kata Containers register kata-runtime "+
			"in /etc/docker/daemon.json; then restart dockerd",
			"registered: %s; missing optional runtimes: %s", strings.Join(have, ", "), strings.Join(missing, ", "))
	}
	return checkOK("registered: %s", strings.Join(have, ", "))
}

// queryDocker reads the version and the registered runtimes of the engine
// at host, a unix:// or tcp:// address.
func queryDocker(ctx context.Context, host string) (dockerInfo, error) {
	client, base, err := dockerClient(host)
	if err != nil {
		return dockerInfo{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()

	var version struct {
		Version    string `json:"Version"`
		APIVersion string `json:"ApiVersion"`
	}
	if err := getJSON(ctx, client, base+"/version", &version); err != nil {
		return dockerInfo{}, err
	}
	var info struct {
		Runtimes map[string]json.RawMessage `json:"Runtimes"`
	}
	if err := getJSON(ctx, client, base+"/info", &info); err != nil {
		return dockerInfo{}, err
	}

	out := dockerInfo{host: host, version: version.Version, apiVersion: version.APIVersion}
	for name := range info.Runtimes {
		out.runtimes = append(out.runtimes, name)
	}
	slices.Sort(out.runtimes)
	return out, nil
}

// dockerClient returns an HTTP client and base URL for the engine address.
func dockerClient(host string) (*http.Client, string, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, "", fmt.Errorf("invalid engine address %q: %w", host, err)
	}
	switch u.Scheme {
	case "unix":
		socket := u.Path
		transport := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}
		return &http.Client{Transport: transport}, "http://docker", nil
	case "tcp", "http":
		return &http.Client{}, "http://" + u.Host, nil
	}
	return nil, "", fmt.Errorf("engine address %q is not checked: use a unix:// or tcp:// address without TLS", host)
}

func getJSON(ctx context.Context, client *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", req.URL.Path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", req.URL.Path, err)
	}
	return nil
}

func checkAgent(context.Context, *doctorEnv) checkResult {
	path, err := agent.BinaryPath()
	if err != nil {
		return checkFail("build it with 'make build', or with 'CGO_ENABLED=0 go build -o bin/stacyvm-agent ./cmd/stacyvm-agent', "+
			"and place it next to stacyvm or set "+agent.EnvBinary, "stacyvm-agent not found")
	}
	return checkOK("%s", path)
}

func checkPRoot(_ context.Context, env *doctorEnv) checkResult {
	binary := providerSetting(env.cfg, "proot", "binary")
	if binary == "" {
		binary = "proot"
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return checkFail("install PRoot: apt-get install proot, or set providers.proot.binary", "%s not found: %v", binary, err)
	}
	return checkOK("%s", path)
}
