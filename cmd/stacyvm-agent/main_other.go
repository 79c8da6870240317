//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "stacyvm-agent runs only on Linux; build it with GOOS=linux CGO_ENABLED=0")
	os.Exit(1)
}
