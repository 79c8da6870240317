package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// minTime and maxTime bound the times that fit in int64 unix nanoseconds.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// encodeTime returns t as unix nanoseconds, or nil (NULL) for the zero time.
func encodeTime(field string, t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return nil, fmt.Errorf("%s %s is out of range: times must fall between %s and %s",
			field, t.Format(time.RFC3339), minTime.UTC().Format(time.RFC3339), maxTime.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// decodeTime is the inverse of encodeTime and returns the time in UTC.
func decodeTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// encodeMap returns m as a JSON object, {} when m is nil. It rejects keys and
// values that are not valid UTF-8, because JSON would silently replace their
// bad bytes with U+FFFD.
func encodeMap(field string, m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	for key, value := range m {
		if !utf8.ValidString(key) {
			return "", fmt.Errorf("%s key %q is not valid UTF-8", field, key)
		}
		if !utf8.ValidString(value) {
			return "", fmt.Errorf("%s value of key %q is not valid UTF-8", field, key)
		}
	}
	text, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", field, err)
	}
	return string(text), nil
}

// decodeMap is the inverse of encodeMap and never returns nil.
func decodeMap(field, text string) (map[string]string, error) {
	m := map[string]string{}
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", field, err)
	}
	if m == nil {
		// The JSON literal null leaves the map nil.
		m = map[string]string{}
	}
	return m, nil
}

func encodeBool(b bool) int {
	if b {
		return 1
	}
	return 0
}
