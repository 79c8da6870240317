// Package settings converts the values of a provider's configuration
// section (providers.<name>.<key>) to Go types. The values come from YAML,
// where numbers and booleans are typed, or from environment variables and
// flags, where they are strings, so each conversion accepts both.
package settings

import (
	"fmt"
	"math"
	"strconv"
)

// String returns v when it is a string.
func String(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %T", v)
	}
	return s, nil
}

// Int returns v as an int when it is a whole number or a string holding one.
func Int(v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case uint64:
		return int(n), nil
	case float64:
		if n != math.Trunc(n) {
			return 0, fmt.Errorf("want a whole number, got %v", n)
		}
		return int(n), nil
	case string:
		i, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("want a whole number, got %q", n)
		}
		return i, nil
	}
	return 0, fmt.Errorf("want a whole number, got %T", v)
}

// Bool returns v as a bool when it is one or a string that
// strconv.ParseBool accepts.
func Bool(v any) (bool, error) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		parsed, err := strconv.ParseBool(b)
		if err != nil {
			return false, fmt.Errorf("want true or false, got %q", b)
		}
		return parsed, nil
	}
	return false, fmt.Errorf("want true or false, got %T", v)
}
