package config

import (
	"slices"
	"strings"
	"testing"
)

func TestImageDir(t *testing.T) {
	tests := []struct {
		name    string
		dataDir string
		dir     string
		want    string
	}{
		{"default under data dir", "/var/lib/stacyvm", "", "/var/lib/stacyvm/images"},
		{"explicit dir", "/var/lib/stacyvm", "/srv/images", "/srv/images"},
		{"no data dir", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.DataDir = tt.dataDir
			cfg.Images.Dir = tt.dir
			if got := cfg.ImageDir(); got != tt.want {
				t.Errorf("ImageDir() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadImages(t *testing.T) {
	file := writeFile(t, "images:\n  dir: /srv/images\n  insecure_registries: [registry.lan:5000]\n")
	cfg, err := Load(LoadOptions{File: file, Environ: []string{"HOME=/home/test"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ImageDir() != "/srv/images" {
		t.Errorf("ImageDir() = %q, want /srv/images", cfg.ImageDir())
	}
	if !slices.Equal(cfg.Images.InsecureRegistries, []string{"registry.lan:5000"}) {
		t.Errorf("insecure_registries = %v, want [registry.lan:5000]", cfg.Images.InsecureRegistries)
	}

	cfg, err = Load(LoadOptions{
		File:    file,
		Environ: []string{"HOME=/home/test", "STACYVM_IMAGES_INSECURE_REGISTRIES=a.lan, b.lan:80"},
		Flags:   map[string]string{"images.dir": "/mnt/images"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ImageDir() != "/mnt/images" {
		t.Errorf("ImageDir() with a flag = %q, want /mnt/images", cfg.ImageDir())
	}
	if !slices.Equal(cfg.Images.InsecureRegistries, []string{"a.lan", "b.lan:80"}) {
		t.Errorf("insecure_registries from the environment = %v, want [a.lan b.lan:80]", cfg.Images.InsecureRegistries)
	}
}

func TestValidateImages(t *testing.T) {
	valid := [][]string{
		{"registry.lan"},
		{"registry.lan:5000", "10.0.0.7:443", "[fd00::1]:5000", "localhost"},
	}
	for _, hosts := range valid {
		cfg := validConfig()
		cfg.Images.InsecureRegistries = hosts
		if err := cfg.Validate(); err != nil {
			t.Errorf("insecure_registries %v: %v", hosts, err)
		}
	}

	invalid := []string{"", "https://registry.lan", "registry.lan/team", "registry.lan:http", "registry.lan:0", "reg istry", "user@registry.lan"}
	for _, host := range invalid {
		cfg := validConfig()
		cfg.Images.InsecureRegistries = []string{host}
		err := cfg.Validate()
		if err == nil {
			t.Errorf("insecure_registries [%q]: Validate accepted it", host)
			continue
		}
		if want := "images.insecure_registries entry"; !strings.Contains(err.Error(), want) {
			t.Errorf("insecure_registries [%q]: error %q does not contain %q", host, err, want)
		}
	}

	cfg := validConfig()
	cfg.Images.Dir = " /srv/images"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "images.dir") {
		t.Errorf("images.dir with a leading space: error = %v, want one naming images.dir", err)
	}
}
