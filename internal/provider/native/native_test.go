//go:build linux

package native

import (
	"testing"

	"github.com/stacyvm/stacyvm/internal/provider"
	"github.com/stacyvm/stacyvm/internal/provider/conformance"
)

func TestConformance(t *testing.T) {
	requireHost(t)
	testImages(t)
	conformance.Run(t, conformance.Harness{
		New:   func(t *testing.T) provider.Provider { return newTestProvider(t, testOptions{images: true}) },
		Image: minimalImage,
	})
}

func TestConformanceHostView(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		New:   func(t *testing.T) provider.Provider { return newTestProvider(t, testOptions{}) },
		Image: HostImage,
	})
}
