package api

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitizeUTF8(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", ""},
		{"plain", "plain"},
		{"€ and 😀", "€ and 😀"},
		{"a\xffb", "a\uFFFDb"},
		{"\xe2\x82", "\uFFFD\uFFFD"},
		{"\xe2\x82A", "\uFFFD\uFFFDA"},
		{"\xc0\x80", "\uFFFD\uFFFD"},           // overlong encoding of NUL
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate half
	}
	for _, tt := range tests {
		if got := sanitizeUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("sanitizeUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTextDecoderHoldsSplitCharacter(t *testing.T) {
	var d textDecoder
	steps := []struct {
		in   string
		want string
	}{
		{"a\xe2", "a"},
		{"\x82", ""},
		{"\xacb", "€b"},
		{"\xf0\x9f", ""},
		{"\x98\x80", "😀"},
		{"x\xff", "x\uFFFD"},
		{"\xe2\x82", ""},
	}
	for i, s := range steps {
		if got := d.decode([]byte(s.in)); got != s.want {
			t.Errorf("step %d: decode(%q) = %q, want %q", i, s.in, got, s.want)
		}
	}
	if got := d.flush(); got != "\uFFFD\uFFFD" {
		t.Errorf("flush = %q, want two U+FFFD for the incomplete character", got)
	}
	if got := d.flush(); got != "" {
		t.Errorf("second flush = %q, want empty", got)
	}
}

func TestTextDecoderMatchesWholeStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "€", "😀", "é", "\xff", "\xe2", "\x82", "\xac", "\xf0\x9f", "\n"}

	for round := range 500 {
		var whole strings.Builder
		for range rng.IntN(40) {
			whole.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		data := []byte(whole.String())

		var d textDecoder
		var got strings.Builder
		for len(data) > 0 {
			n := 1 + rng.IntN(min(len(data), 5))
			chunk := d.decode(data[:n])
			if !utf8.ValidString(chunk) {
				t.Fatalf("round %d: chunk %q is not valid UTF-8", round, chunk)
			}
			got.WriteString(chunk)
			data = data[n:]
		}
		got.WriteString(d.flush())

		if want := sanitizeUTF8([]byte(whole.String())); got.String() != want {
			t.Fatalf("round %d: chunked decode of %q = %q, want %q", round, whole.String(), got.String(), want)
		}
	}
}
