package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Pull downloads the image ref from its registry and stores it under ref,
// normalized, replacing any image stored under that name. Credentials come
// from the Docker config (~/.docker/config.json and credential helpers).
// For a multi-platform image it takes the image for linux on this machine's
// architecture. progress, when not nil, is called as blobs are stored.
//
// It returns an error wrapping ErrNotFound when the registry has no such
// image.
func (s *Store) Pull(ctx context.Context, ref string, progress func(Progress)) (Image, error) {
	n, err := normalizeName(ref)
	if err != nil {
		return Image{}, err
	}
	r, err := name.ParseReference(n, s.nameOptions(n)...)
	if err != nil {
		return Image{}, fmt.Errorf("%w: image reference %q: %v", ErrInvalid, ref, err)
	}

	gcLock, err := s.lockShared(ctx)
	if err != nil {
		return Image{}, err
	}
	defer gcLock.unlock()

	img, err := remote.Image(r,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	)
	if err != nil {
		return Image{}, pullError(n, err)
	}
	return s.add(ctx, n, img, "registry "+r.Context().RegistryStr(), progress)
}

// nameOptions makes the reference use plain HTTP when its registry is
// configured as insecure or is a loopback address.
func (s *Store) nameOptions(n string) []name.Option {
	r, err := name.ParseReference(n)
	if err != nil {
		return nil
	}
	host := r.Context().RegistryStr()
	if s.insecure[host] || isLoopbackHost(host) {
		return []name.Option{name.Insecure}
	}
	return nil
}

func isLoopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func pullError(n string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && isNotFound(terr) {
		return fmt.Errorf("pull %s: %w: %v", n, ErrNotFound, err)
	}
	return fmt.Errorf("pull %s: %w", n, err)
}

func isNotFound(terr *transport.Error) bool {
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}
