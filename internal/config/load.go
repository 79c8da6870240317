package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultFile is the configuration file Load reads from the current
// directory when LoadOptions.File is empty and the file exists.
const DefaultFile = "stacyvm.yaml"

// EnvPrefix starts every environment variable that Load reads.
const EnvPrefix = "STACYVM_"

// EnvConfigFile names the configuration file when LoadOptions.File is empty.
const EnvConfigFile = EnvPrefix + "CONFIG"

// envProviders starts the environment variables that set provider keys:
// STACYVM_PROVIDERS_<NAME>_<KEY> sets providers.<name>.<key>.
const envProviders = EnvPrefix + "PROVIDERS_"

// envNames holds the environment variables whose names are not derived
// from the key path. STACYVM_API_KEY is shared with the CLI, so one
// variable configures both the server and its clients.
var envNames = map[string]string{
	"auth.api_key": EnvPrefix + "API_KEY",
}

// LoadOptions are the inputs of Load other than the defaults.
type LoadOptions struct {
	// File is the YAML configuration file. When empty, Load reads the file
	// named by STACYVM_CONFIG, else ./stacyvm.yaml when it exists, else no
	// file.
	File string

	// Flags holds the values the user set on the command line, keyed by
	// configuration key ("listen", "log.level", "providers.docker.host"),
	// in the same string form as environment variables. Flags the user did
	// not set must be absent, so that they do not override lower layers.
	Flags map[string]string

	// Environ is the environment as KEY=VALUE pairs. Nil means os.Environ().
	Environ []string
}

// Setting describes one configuration key and the environment variable
// that sets it.
type Setting struct {
	Key string // dotted YAML path, such as "limits.max_memory_mb"
	Env string // environment variable, such as "STACYVM_LIMITS_MAX_MEMORY_MB"
}

// setting is a Setting plus where it lives in Config.
type setting struct {
	Setting
	index []int
}

// Settings returns every fixed configuration key with its environment
// variable, in declaration order. Provider keys are open-ended and not
// listed: STACYVM_PROVIDERS_<NAME>_<KEY> sets providers.<name>.<key>.
func Settings() []Setting {
	all := settings()
	out := make([]Setting, len(all))
	for i, s := range all {
		out[i] = s.Setting
	}
	return out
}

// settings walks Config's yaml tags. Every leaf field becomes a key, and
// nested structs add a dotted prefix. The Providers map is skipped because
// its keys are not known in advance.
func settings() []setting {
	var out []setting
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			key := prefix + name
			idx := append(append([]int(nil), index...), i)
			switch {
			case f.Type.Kind() == reflect.Map:
				continue
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key+".", idx)
			default:
				out = append(out, setting{Setting{Key: key, Env: envName(key)}, idx})
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// yamlName returns the YAML key of a struct field, or "" when the field is
// not part of the file format.
func yamlName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}

// envName derives the environment variable for a key: STACYVM_ plus the
// upper-cased path with dots replaced by underscores.
func envName(key string) string {
	if name, ok := envNames[key]; ok {
		return name
	}
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load builds the configuration from, in increasing precedence: Default(),
// the YAML file, the environment and opts.Flags. It fills in DataDir when
// no layer sets it. Load does not validate; call Validate on the result.
//
// A layer with problems, such as an unknown key or a value of the wrong
// type, does not stop the others. Load returns every such problem joined,
// together with the configuration built from what it could read, so that a
// caller can also report what Validate finds in it.
func Load(opts LoadOptions) (Config, error) {
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	env := parseEnviron(environ)

	cfg := Default()
	cfg.DataDir = defaultDataDir(os.Geteuid(), env)

	file, required := opts.File, true
	if file == "" {
		file = env[EnvConfigFile]
	}
	if file == "" {
		file, required = DefaultFile, false
	}
	errs := []error{loadFile(&cfg, file, required)}
	errs = append(errs, applyEnv(&cfg, env))
	errs = append(errs, applyFlags(&cfg, opts.Flags))
	return cfg, errors.Join(errs...)
}

func parseEnviron(environ []string) map[string]string {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			env[k] = v
		}
	}
	return env
}

// defaultDataDir is /var/lib/stacyvm for root, else $XDG_DATA_HOME/stacyvm,
// else ~/.local/share/stacyvm.
func defaultDataDir(euid int, env map[string]string) string {
	if euid == 0 {
		return "/var/lib/stacyvm"
	}
	if xdg := env["XDG_DATA_HOME"]; xdg != "" && filepath.IsAbs(xdg) {
		return filepath.Join(xdg, "stacyvm")
	}
	home := env["HOME"]
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home == "" {
		// Without a home directory there is no per-user default, so
		// Validate reports the empty data_dir.
		return ""
	}
	return filepath.Join(home, ".local", "share", "stacyvm")
}

// loadFile decodes the YAML file at path over cfg. A missing file is an
// error only when required.
func loadFile(cfg *Config, path string, required bool) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open config file: %w", err)
	}
	defer f.Close()

	var doc yaml.Node
	if err := yaml.NewDecoder(f).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	keysErr := checkKeys(path, &doc)
	var decodeErr error
	if err := doc.Decode(cfg); err != nil {
		decodeErr = fmt.Errorf("config file %s: %w", path, err)
	}
	return errors.Join(keysErr, decodeErr)
}

// checkKeys reports every key in the document that Config does not define,
// with its dotted path and line, so that a typo is not silently ignored.
func checkKeys(path string, doc *yaml.Node) error {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s:%d: the top level must be a mapping of keys such as listen and limits", path, root.Line)
	}
	var errs []error
	checkMapping(path, root, reflect.TypeFor[Config](), "", &errs)
	return errors.Join(errs...)
}

func checkMapping(path string, n *yaml.Node, t reflect.Type, prefix string, errs *[]error) {
	fields := make(map[string]reflect.Type)
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			fields[name] = t.Field(i).Type
		}
	}

	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			*errs = append(*errs, fmt.Errorf("config file %s:%d: unknown key %q (valid keys here: %s)",
				path, k.Line, prefix+k.Value, strings.Join(sortedKeys(fields), ", ")))
			continue
		}
		if ft.Kind() == reflect.Struct && v.Kind == yaml.MappingNode {
			checkMapping(path, v, ft, prefix+k.Value+".", errs)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// applyEnv sets every key whose environment variable is present, including
// empty values, so that STACYVM_API_KEY= clears a key from the file.
func applyEnv(cfg *Config, env map[string]string) error {
	v := reflect.ValueOf(cfg).Elem()
	var errs []error
	for _, s := range settings() {
		raw, ok := env[s.Env]
		if !ok {
			continue
		}
		if err := setValue(v.FieldByIndex(s.index), raw); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s=%q: %w", s.Env, raw, err))
		}
	}

	for _, name := range sortedKeys(env) {
		rest, ok := strings.CutPrefix(name, envProviders)
		if !ok {
			continue
		}
		provider, key, ok := strings.Cut(strings.ToLower(rest), "_")
		if !ok || provider == "" || key == "" {
			errs = append(errs, fmt.Errorf("environment variable %s: want %s<NAME>_<KEY>, such as %sDOCKER_HOST",
				name, envProviders, envProviders))
			continue
		}
		setProvider(cfg, provider, key, env[name])
	}
	return errors.Join(errs...)
}

// applyFlags sets the keys given on the command line.
func applyFlags(cfg *Config, flags map[string]string) error {
	if len(flags) == 0 {
		return nil
	}
	byKey := make(map[string]setting)
	for _, s := range settings() {
		byKey[s.Key] = s
	}

	v := reflect.ValueOf(cfg).Elem()
	var errs []error
	for _, key := range sortedKeys(flags) {
		raw := flags[key]
		if rest, ok := strings.CutPrefix(key, "providers."); ok {
			provider, pkey, ok := strings.Cut(rest, ".")
			if !ok || provider == "" || pkey == "" {
				errs = append(errs, fmt.Errorf("flag for key %q: want providers.<name>.<key>", key))
				continue
			}
			setProvider(cfg, provider, pkey, raw)
			continue
		}
		s, ok := byKey[key]
		if !ok {
			errs = append(errs, fmt.Errorf("flag for unknown key %q", key))
			continue
		}
		if err := setValue(v.FieldByIndex(s.index), raw); err != nil {
			errs = append(errs, fmt.Errorf("flag for key %q=%q: %w", key, raw, err))
		}
	}
	return errors.Join(errs...)
}

// setProvider stores raw under providers.<provider>.<key>. The value is
// parsed as a YAML scalar so that a provider receives the same types (int,
// bool, string) whether the key came from the file, the environment or a
// flag.
func setProvider(cfg *Config, provider, key, raw string) {
	var value any
	if err := yaml.Unmarshal([]byte(raw), &value); err != nil {
		value = raw
	}
	switch value.(type) {
	case string, int, float64, bool:
	default:
		// Empty values, lists and mappings stay the literal string.
		value = raw
	}

	if cfg.Providers == nil {
		cfg.Providers = make(map[string]map[string]any)
	}
	if cfg.Providers[provider] == nil {
		cfg.Providers[provider] = make(map[string]any)
	}
	cfg.Providers[provider][key] = value
}

var durationType = reflect.TypeFor[time.Duration]()

// setValue parses raw into v according to v's type: durations in Go syntax
// ("90s", "1h30m"), lists as comma-separated values.
func setValue(v reflect.Value, raw string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("invalid duration: use Go syntax such as 90s or 1h30m")
		}
		v.SetInt(int64(d))
		return nil
	}

	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("invalid boolean: use true or false")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer: use a whole number such as 1024")
		}
		v.SetInt(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", v.Type())
		}
		var items []string
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}
