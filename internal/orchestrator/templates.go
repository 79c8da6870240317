package orchestrator

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/store"
)

// Input limits of templates and setup commands.
const (
	maxTemplateNameLen = 63       // bytes in a template name
	maxDescriptionLen  = 1024     // characters in a template description
	maxSetupCommands   = 32       // commands in a setup list
	maxSetupCommandLen = 16 << 10 // bytes in one setup command
	setupTailLines     = 20       // stderr lines kept for a failed setup command
	setupTailBytes     = 2 << 10  // stderr bytes kept for a failed setup command
	setupTailMaxBuffer = 64 << 10 // bytes buffered before the tail is cut back
)

// templateNameRule states the syntax of template names in errors.
const templateNameRule = "must be 1 to 63 characters of lowercase letters, digits, '-', '_' and '.', " +
	"starting with a letter or digit"

// CreateTemplate validates t, stores it with CreatedAt and UpdatedAt set to
// now, and returns the stored template. Field values are checked like a
// spawn request's, but limits such as max_memory_mb are checked only when a
// sandbox is spawned from the template. A template with the same name gives
// an error wrapping store.ErrConflict; an unknown provider one wrapping
// provider.ErrProviderNotFound.
func (m *Manager) CreateTemplate(ctx context.Context, t store.Template) (store.Template, error) {
	if err := m.validateTemplate(ctx, t); err != nil {
		return store.Template{}, err
	}
	now := m.now()
	t.CreatedAt, t.UpdatedAt = now, now
	if err := m.store.CreateTemplate(ctx, t); err != nil {
		return store.Template{}, err
	}

	m.log.Info("template created", "template", t.Name)
	return m.store.GetTemplate(ctx, t.Name)
}

// GetTemplate returns the template named name. An invalid name gives a
// *FieldError and an unknown one an error wrapping store.ErrNotFound.
func (m *Manager) GetTemplate(ctx context.Context, name string) (store.Template, error) {
	if err := validateTemplateName(name); err != nil {
		return store.Template{}, err
	}
	return m.store.GetTemplate(ctx, name)
}

// ListTemplates returns every template, sorted by name.
func (m *Manager) ListTemplates(ctx context.Context) ([]store.Template, error) {
	list, err := m.store.ListTemplates(ctx)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	return list, nil
}

// UpdateTemplate validates t like CreateTemplate and replaces the template
// named t.Name with it, keeping its CreatedAt. Sandboxes spawned from the
// template before are not changed. An unknown name gives an error wrapping
// store.ErrNotFound.
func (m *Manager) UpdateTemplate(ctx context.Context, t store.Template) (store.Template, error) {
	if err := m.validateTemplate(ctx, t); err != nil {
		return store.Template{}, err
	}
	if err := m.store.UpdateTemplate(ctx, t); err != nil {
		return store.Template{}, err
	}

	m.log.Info("template updated", "template", t.Name)
	return m.store.GetTemplate(ctx, t.Name)
}

// DeleteTemplate deletes the template named name. Sandboxes spawned from it
// keep running and keep its name in their record. An unknown name gives an
// error wrapping store.ErrNotFound.
func (m *Manager) DeleteTemplate(ctx context.Context, name string) error {
	if err := validateTemplateName(name); err != nil {
		return err
	}
	if err := m.store.DeleteTemplate(ctx, name); err != nil {
		return err
	}

	m.log.Info("template deleted", "template", name)
	return nil
}

// validateTemplate checks every field of t with the rules of a spawn
// request, without the configured maximums.
func (m *Manager) validateTemplate(ctx context.Context, t store.Template) error {
	if err := validateTemplateName(t.Name); err != nil {
		return err
	}
	if err := validateDescription(t.Description); err != nil {
		return err
	}
	if err := validateImage(t.Image); err != nil {
		return err
	}
	if err := m.validateTemplateProvider(ctx, t.Provider, t.Runtime); err != nil {
		return err
	}

	sizes := []struct {
		field string
		value int
	}{{"memory_mb", t.MemoryMB}, {"vcpus", t.VCPUs}}
	for _, s := range sizes {
		if s.value < 0 {
			return invalid(s.field, "must not be negative, got %d; use 0 for the server default", s.value)
		}
	}
	durations := []struct {
		field string
		value time.Duration
	}{{"ttl", t.TTL}, {"setup_timeout", t.SetupTimeout}}
	for _, d := range durations {
		if d.value < 0 {
			return invalid(d.field, "must not be negative, got %s; use 0 for the server default", d.value)
		}
	}

	if err := validateEnv("env", t.Env); err != nil {
		return err
	}
	if err := validateMetadata(t.Metadata); err != nil {
		return err
	}
	return validateSetup(t.Setup)
}

// validateTemplateProvider checks that a named provider is registered and
// offers the runtime. Without a provider, or with "auto", the provider is
// chosen at spawn, so only the runtime name's syntax is checked here.
func (m *Manager) validateTemplateProvider(ctx context.Context, name, runtime string) error {
	if name == "" || name == AutoProvider {
		return validateRuntimeName(runtime)
	}
	p, err := m.registry.Get(ctx, name)
	if err != nil {
		return err
	}
	return validateRuntime(runtime, p)
}

// validateTemplateName checks a name against templateNameRule.
func validateTemplateName(name string) error {
	if name == "" || len(name) > maxTemplateNameLen {
		return invalid("name", "%s, got %q (%d characters)", templateNameRule, name, len(name))
	}
	for i, c := range name {
		lowerOrDigit := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if i == 0 && !lowerOrDigit {
			return invalid("name", "%s, got %q", templateNameRule, name)
		}
		if !lowerOrDigit && !strings.ContainsRune("-_.", c) {
			return invalid("name", "%s, got %q", templateNameRule, name)
		}
	}
	return nil
}

// validateDescription accepts UTF-8 text of at most 1024 characters, with
// line breaks and tabs but no other control characters.
func validateDescription(text string) error {
	if !utf8.ValidString(text) {
		return invalid("description", "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(text); n > maxDescriptionLen {
		return invalid("description", "must be at most %d characters, got %d", maxDescriptionLen, n)
	}
	if strings.ContainsFunc(text, func(c rune) bool { return unicode.IsControl(c) && c != '\n' && c != '\t' }) {
		return invalid("description", "must not contain control characters other than line breaks and tabs")
	}
	return nil
}

// validateRuntimeName checks the syntax of a runtime name without a
// provider to check it against.
func validateRuntimeName(runtime string) error {
	if len(runtime) > maxRuntimeLen {
		return invalid("runtime", "must be at most %d bytes, got %d", maxRuntimeLen, len(runtime))
	}
	for _, c := range runtime {
		if !isASCIILetterOrDigit(c) && !strings.ContainsRune("._-", c) {
			return invalid("runtime", "contains %q; a runtime name may contain only letters, digits and . _ -", c)
		}
	}
	return nil
}

// validateSetup checks a list of setup commands: at most 32, each a
// non-blank shell command of at most 16 KiB without NUL bytes.
func validateSetup(commands []string) error {
	if len(commands) > maxSetupCommands {
		return invalid("setup", "must have at most %d commands, got %d", maxSetupCommands, len(commands))
	}
	for i, command := range commands {
		field := fmt.Sprintf("setup[%d]", i)
		switch {
		case strings.TrimSpace(command) == "":
			return invalid(field, "must not be empty")
		case len(command) > maxSetupCommandLen:
			return invalid(field, "must be at most %d bytes, got %d", maxSetupCommandLen, len(command))
		case strings.IndexByte(command, 0) >= 0:
			return invalid(field, "contains a NUL byte")
		case !utf8.ValidString(command):
			return invalid(field, "must be valid UTF-8")
		}
	}
	return nil
}

// withTemplate returns req completed from the template it names, or req
// unchanged when it names none. An unknown template gives an error wrapping
// store.ErrNotFound that names it.
func (m *Manager) withTemplate(ctx context.Context, req SpawnRequest) (SpawnRequest, error) {
	if req.Template == "" {
		return req, nil
	}
	t, err := m.GetTemplate(ctx, req.Template)
	if err != nil {
		return SpawnRequest{}, err
	}
	return mergeTemplate(t, req), nil
}

// mergeTemplate returns req with every field it leaves zero taken from t.
// Env and metadata are merged, with req's keys winning. Network comes from t
// unless req.NetworkSet, and a non-empty req.Setup replaces t's list.
func mergeTemplate(t store.Template, req SpawnRequest) SpawnRequest {
	out := req
	out.Template = t.Name

	pick := func(dst *string, fallback string) {
		if *dst == "" {
			*dst = fallback
		}
	}
	pick(&out.Image, t.Image)
	pick(&out.Provider, t.Provider)
	pick(&out.Runtime, t.Runtime)
	if out.MemoryMB == 0 {
		out.MemoryMB = t.MemoryMB
	}
	if out.VCPUs == 0 {
		out.VCPUs = t.VCPUs
	}
	if out.TTL == 0 {
		out.TTL = t.TTL
	}
	if out.SetupTimeout == 0 {
		out.SetupTimeout = t.SetupTimeout
	}

	if !out.NetworkSet {
		out.Network = t.Network
	}
	if len(out.Setup) == 0 {
		out.Setup = append([]string(nil), t.Setup...)
	}
	out.Env = mergeMaps(t.Env, req.Env)
	out.Metadata = mergeMaps(t.Metadata, req.Metadata)
	return out
}

// mergeMaps returns a new map with the keys of base and then of over, or
// nil when both are empty.
func mergeMaps(base, over map[string]string) map[string]string {
	if len(base) == 0 && len(over) == 0 {
		return nil
	}
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]string, len(over))
	}
	maps.Copy(out, over)
	return out
}

// setupPlan contains the setup commands of a spawn and the timeout of each.
type setupPlan struct {
	commands []string
	timeout  time.Duration
}

// planSetup validates the setup of req. A setup timeout above
// max_exec_timeout gives a *provider.LimitError.
func (m *Manager) planSetup(req SpawnRequest) (setupPlan, error) {
	if err := validateSetup(req.Setup); err != nil {
		return setupPlan{}, err
	}
	timeout, err := durationOrDefault("setup_timeout", req.SetupTimeout,
		m.limits.DefaultExecTimeout, m.limits.MaxExecTimeout, "max_exec_timeout")
	if err != nil {
		return setupPlan{}, err
	}
	return setupPlan{commands: req.Setup, timeout: timeout}, nil
}

// SetupError is a setup command that exited with a non-zero status or ran
// past its timeout, which fails the spawn. The manager destroys the sandbox
// before it returns the error. It unwraps to provider.ErrInvalidArgument,
// because the request's setup is at fault.
type SetupError struct {
	SandboxID  string        // the destroyed sandbox
	Index      int           // position of the command in the setup list, from 0
	Command    string        // the shell command as given
	ExitCode   int           // exit status; 128+N when killed by signal N
	TimedOut   bool          // the setup timeout killed the command
	Timeout    time.Duration // the timeout each setup command had
	StderrTail string        // the last 20 lines of stderr, at most 2 KiB
}

func (e *SetupError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "setup[%d] %q ", e.Index, e.Command)
	if e.TimedOut {
		fmt.Fprintf(&b, "timed out after %s (exit status %d)", e.Timeout, e.ExitCode)
	} else {
		fmt.Fprintf(&b, "failed with exit status %d", e.ExitCode)
	}
	fmt.Fprintf(&b, "; sandbox %s was destroyed", e.SandboxID)
	if e.StderrTail == "" {
		b.WriteString("; stderr was empty")
	} else {
		b.WriteString("; stderr tail:\n" + e.StderrTail)
	}
	return b.String()
}

func (e *SetupError) Unwrap() error { return provider.ErrInvalidArgument }

// runSetup runs the setup commands in the new runtime of sb, in order, each
// as a shell command in /workspace with the sandbox's environment. It stops
// at the first command that fails and returns a *SetupError for it, or the
// provider's error when a command could not run. ctx must not be
// cancelable by the client.
func (m *Manager) runSetup(ctx context.Context, p provider.Provider, sb store.Sandbox, plan setupPlan) error {
	for i, command := range plan.commands {
		preq, err := m.execRequest(sb, ExecRequest{Command: command, Shell: true, Timeout: plan.timeout})
		if err != nil {
			return err
		}

		var stderr tailBuffer
		res, err := p.Exec(ctx, sb.ID, preq, func(stream provider.Stream, b []byte) {
			if stream == provider.Stderr {
				stderr.write(b)
			}
		})
		if err != nil {
			return fmt.Errorf("run setup[%d] in sandbox %s: %w", i, sb.ID, err)
		}
		m.log.Debug("setup command done", "sandbox_id", sb.ID, "provider", sb.Provider, "index", i,
			"exit_code", res.ExitCode, "timed_out", res.TimedOut, "duration_ms", res.Duration.Milliseconds())

		if res.ExitCode != 0 || res.TimedOut {
			return &SetupError{
				SandboxID:  sb.ID,
				Index:      i,
				Command:    command,
				ExitCode:   res.ExitCode,
				TimedOut:   res.TimedOut,
				Timeout:    plan.timeout,
				StderrTail: stderr.tail(setupTailLines, setupTailBytes),
			}
		}
	}
	return nil
}

// tailBuffer keeps the end of a stream, so that a command that writes
// gigabytes to stderr costs a bounded amount of memory.
type tailBuffer struct {
	buf []byte
}

func (t *tailBuffer) write(p []byte) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > setupTailMaxBuffer {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-setupTailBytes:]...)
	}
}

// tail returns at most the last maxLines lines and maxBytes bytes of the
// stream as UTF-8 text, without a final line break. A character cut at the
// start of the window is dropped, and invalid bytes become U+FFFD.
func (t *tailBuffer) tail(maxLines, maxBytes int) string {
	b := t.buf
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	text := strings.ToValidUTF8(strings.TrimRight(string(b), "\n"), "\uFFFD")

	lines := strings.Split(text, "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}
