package orchestrator

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// registryWith returns an "auto" registry holding fakes with the given
// names, and the fakes by name.
func registryWith(names ...string) (*Registry, map[string]*fakeProvider) {
	r := NewRegistry("auto")
	fakes := make(map[string]*fakeProvider)
	for _, name := range names {
		f := newFake(name)
		fakes[name] = f
		r.Register(f)
	}
	return r, fakes
}

func TestRegistryAutoPicks(t *testing.T) {
	down := errors.New("down")
	tests := []struct {
		name       string
		registered []string
		unhealthy  []string
		want       string
	}{
		{"docker first", []string{"mock", "proot", "native", "docker"}, nil, "docker"},
		{"native when docker is down", []string{"docker", "native", "proot"}, []string{"docker"}, "native"},
		{"proot when the others are missing", []string{"proot", "mock"}, nil, "proot"},
		{"proot when the others are down", []string{"docker", "native", "proot"}, []string{"docker", "native"}, "proot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, fakes := registryWith(tt.registered...)
			for _, name := range tt.unhealthy {
				fakes[name].health = down
			}
			p, err := r.Get(t.Context(), "")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if p.Name() != tt.want {
				t.Errorf("auto picked %s, want %s", p.Name(), tt.want)
			}
			name, err := r.DefaultName(t.Context())
			if err != nil || name != tt.want {
				t.Errorf("DefaultName = %q, %v; want %q", name, err, tt.want)
			}
		})
	}
}

func TestRegistryAutoNeverPicksMock(t *testing.T) {
	r, fakes := registryWith("mock", "docker")
	fakes["docker"].health = errors.New("cannot connect to the Docker daemon")

	_, err := r.Get(t.Context(), "auto")
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("error = %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	for _, part := range []string{
		"install and start Docker",
		"user namespaces for native",
		"install proot",
		"--default-provider mock",
		"docker: cannot connect to the Docker daemon",
		"native: not registered",
	} {
		if !strings.Contains(msg, part) {
			t.Errorf("message %q does not contain %q", msg, part)
		}
	}
}

func TestRegistryNamedDefault(t *testing.T) {
	r := NewRegistry("mock")
	r.Register(newFake("mock"))
	r.Register(newFake("docker"))

	p, err := r.Get(t.Context(), "")
	if err != nil || p.Name() != "mock" {
		t.Fatalf("Get(\"\") = %v, %v; want mock", p, err)
	}
	p, err = r.Get(t.Context(), "docker")
	if err != nil || p.Name() != "docker" {
		t.Fatalf("Get(docker) = %v, %v; want docker", p, err)
	}
}

func TestRegistryUnknownName(t *testing.T) {
	r, _ := registryWith("mock", "docker")
	_, err := r.Get(t.Context(), "qemu")
	if !errors.Is(err, provider.ErrProviderNotFound) {
		t.Fatalf("error = %v, want ErrProviderNotFound", err)
	}
	if !strings.Contains(err.Error(), `"qemu"`) || !strings.Contains(err.Error(), "docker, mock") {
		t.Errorf("message %q should name the provider and list the registered ones", err)
	}
}

func TestRegistryNamesAndAll(t *testing.T) {
	r, _ := registryWith("proot", "docker", "mock")
	if got, want := r.Names(), []string{"docker", "mock", "proot"}; !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	var names []string
	for _, p := range r.All() {
		names = append(names, p.Name())
	}
	if want := []string{"docker", "mock", "proot"}; !slices.Equal(names, want) {
		t.Errorf("All = %v, want %v", names, want)
	}
}

func TestRegistryRejectsDuplicate(t *testing.T) {
	r, _ := registryWith("docker")
	defer func() {
		if recover() == nil {
			t.Error("registering docker twice did not panic")
		}
	}()
	r.Register(newFake("docker"))
}
