package api

import (
	"encoding/json"
	"net/http"
	"time"
	"unicode/utf8"
)

// streamWriteTimeout bounds each write of a streamed response. A write
// that blocks this long because the client stopped reading fails, and the
// command is cancelled, so a stalled reader cannot block the output
// callback forever.
const streamWriteTimeout = 30 * time.Second

// ndjsonWriter writes a newline-delimited JSON stream, one flushed line per
// value. It writes the status line lazily, with the first line, so that a
// handler that fails before any output can still send a normal error
// response. After the first failed write it drops every later line.
// It is not safe for concurrent use.
type ndjsonWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	err     error       // first write error
	onFail  func(error) // called once with the first write error
}

func newNDJSONWriter(w http.ResponseWriter, onFail func(error)) *ndjsonWriter {
	return &ndjsonWriter{w: w, rc: http.NewResponseController(w), onFail: onFail}
}

// writeLine encodes v as one line and flushes it to the client.
func (nw *ndjsonWriter) writeLine(v any) {
	if nw.err != nil {
		return
	}
	line, err := json.Marshal(v)
	if err != nil {
		// The stream's line types contain only strings, numbers and bools.
		panic("api: encode stream line: " + err.Error())
	}

	nw.writeHeader()

	// A writer without deadline support returns an error here, and then a
	// write can block until the connection breaks.
	_ = nw.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := nw.w.Write(append(line, '\n')); err != nil {
		nw.fail(err)
		return
	}
	if err := nw.rc.Flush(); err != nil {
		nw.fail(err)
	}
}

// start sends the status line and headers and flushes them, so the client
// sees the stream open before the first line.
func (nw *ndjsonWriter) start() {
	if nw.started || nw.err != nil {
		return
	}
	nw.writeHeader()
	if err := nw.rc.Flush(); err != nil {
		nw.fail(err)
	}
}

// writeHeader writes the stream's status line and headers once.
func (nw *ndjsonWriter) writeHeader() {
	if nw.started {
		return
	}
	nw.started = true
	h := nw.w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	nw.w.WriteHeader(http.StatusOK)
}

func (nw *ndjsonWriter) fail(err error) {
	nw.err = err
	if nw.onFail != nil {
		nw.onFail(err)
	}
}

// close clears the write deadline, which would otherwise stay on a
// keep-alive connection and break the next request on it.
func (nw *ndjsonWriter) close() {
	if nw.started {
		_ = nw.rc.SetWriteDeadline(time.Time{})
	}
}

// textDecoder turns a byte stream into valid UTF-8 text, chunk by chunk.
// Each invalid byte becomes U+FFFD. A multi-byte character split across
// chunks is held back, at most 3 bytes, until the rest arrives, so no chunk
// ends inside a character. The text of all chunks plus flush equals
// sanitizeUTF8 of the whole stream.
type textDecoder struct {
	carry [utf8.UTFMax - 1]byte
	n     int // bytes held in carry
	buf   []byte
}

// decode returns the text of p and of the bytes held from earlier chunks,
// less any incomplete character at the end.
func (d *textDecoder) decode(p []byte) string {
	data := append(append(d.buf[:0], d.carry[:d.n]...), p...)
	d.buf = data

	incomplete := incompleteSuffix(data)
	d.n = copy(d.carry[:], data[len(data)-incomplete:])
	return sanitizeUTF8(data[:len(data)-incomplete])
}

// flush returns the held bytes, each as U+FFFD because the stream ended
// before their character was complete.
func (d *textDecoder) flush() string {
	text := sanitizeUTF8(d.carry[:d.n])
	d.n = 0
	return text
}

// incompleteSuffix returns the length of a character at the end of p that
// has begun but is not complete: 1 to 3 bytes, or 0 when p ends on a
// complete character or an invalid byte.
func incompleteSuffix(p []byte) int {
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		if utf8.RuneStart(p[len(p)-k]) {
			if utf8.FullRune(p[len(p)-k:]) {
				return 0
			}
			return k
		}
	}
	return 0
}

// sanitizeUTF8 returns p as a string with every byte that is not part of a
// valid UTF-8 encoding replaced by U+FFFD.
func sanitizeUTF8(p []byte) string {
	if utf8.Valid(p) {
		return string(p)
	}
	out := make([]byte, 0, len(p)+8)
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, p[:size]...)
		}
		p = p[size:]
	}
	return string(out)
}
