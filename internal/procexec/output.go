package procexec

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stacyvm/stacyvm/internal/provider"
)

// output delivers the chunks read from stdout and stderr to an OutputFunc,
// one call at a time, and applies the per-stream cap.
type output struct {
	mu        sync.Mutex
	out       provider.OutputFunc // nil discards
	max       int64               // cap per stream; 0 for none
	sent      map[provider.Stream]int64
	truncated bool

	// draining is set once the tree was killed: from then on every read
	// gets a deadline of drainIdle, so an idle pipe ends the read loop.
	draining atomic.Bool

	// stopped ends the read loops at the next read, after drainLimit.
	stopped atomic.Bool
}

func newOutput(out provider.OutputFunc, max int64) *output {
	return &output{out: out, max: max, sent: make(map[provider.Stream]int64, 2)}
}

// write delivers p on stream, cut to what is left under the cap. Once the
// cap is reached the rest is discarded and the output is marked truncated.
func (o *output) write(stream provider.Stream, p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()

	if o.max > 0 {
		room := max(o.max-o.sent[stream], 0)
		if int64(len(p)) > room {
			p = p[:room]
			o.truncated = true
		}
	}
	if len(p) == 0 {
		return
	}
	o.sent[stream] += int64(len(p))
	if o.out != nil {
		o.out(stream, p)
	}
}

func (o *output) isTruncated() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.truncated
}

// copyFrom reads r until end of file, the read deadline or another error and
// delivers every chunk as soon as it is read. It keeps reading past the cap
// so that reaching the cap does not leave the command blocked on a full pipe.
func (o *output) copyFrom(stream provider.Stream, r *os.File) {
	buf := make([]byte, readChunk)
	for {
		if o.stopped.Load() {
			return
		}
		if o.draining.Load() {
			_ = r.SetReadDeadline(time.Now().Add(drainIdle))
		}
		n, err := r.Read(buf)
		if n > 0 {
			o.write(stream, buf[:n])
		}
		if err != nil {
			return
		}
	}
}
