package agent

import (
	"encoding/binary"
	"fmt"
	"io"
)

// frameKind is the first byte of an exec stream frame.
type frameKind byte

// Frame kinds of the exec response stream. Stdout and stderr frames carry
// raw output bytes; an exec stream ends with exactly one exit or error
// frame, whose payload is JSON.
const (
	frameStdout frameKind = 1
	frameStderr frameKind = 2
	frameExit   frameKind = 3 // exitBody
	frameError  frameKind = 4 // errorBody
)

func (k frameKind) String() string {
	switch k {
	case frameStdout:
		return "stdout"
	case frameStderr:
		return "stderr"
	case frameExit:
		return "exit"
	case frameError:
		return "error"
	}
	return fmt.Sprintf("frame kind %d", byte(k))
}

// frameHeaderSize is the kind byte plus the big-endian uint32 payload
// length.
const frameHeaderSize = 5

// maxFramePayload bounds the payload a reader accepts. The agent sends
// output in chunks of at most 32 KiB, so a larger length means a corrupt
// stream.
const maxFramePayload = 1 << 20

// appendFrame appends one frame to dst and returns the extended slice.
func appendFrame(dst []byte, kind frameKind, payload []byte) []byte {
	dst = append(dst, byte(kind))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// frameReader reads frames from a stream, reusing one payload buffer.
type frameReader struct {
	r      io.Reader
	header [frameHeaderSize]byte
	buf    []byte
}

// next returns the next frame. The payload is valid until the following
// call. A stream that ends between frames returns io.EOF; one that ends
// inside a frame returns io.ErrUnexpectedEOF.
func (fr *frameReader) next() (frameKind, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.header[:]); err != nil {
		return 0, nil, err
	}
	kind := frameKind(fr.header[0])
	size := binary.BigEndian.Uint32(fr.header[1:])
	if size > maxFramePayload {
		return 0, nil, fmt.Errorf("%v frame of %d bytes exceeds the limit of %d bytes", kind, size, maxFramePayload)
	}
	if cap(fr.buf) < int(size) {
		fr.buf = make([]byte, size)
	}
	payload := fr.buf[:size]
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return kind, payload, nil
}
