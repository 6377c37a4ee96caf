package qrimg_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"runtime"
)

// runtimeMem is the bytes allocated so far.
type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

// rewriteIHDR returns png with its header's width and height replaced (the
// chunk's CRC recomputed), the pixel data left as it was: a file that
// claims a picture it does not hold.
func rewriteIHDR(png []byte, w, h uint32) []byte {
	out := bytes.Clone(png)
	// signature (8), length (4), "IHDR" (4), then width and height
	ihdr := out[8+4 : 8+4+4+13]
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	binary.BigEndian.PutUint32(out[8+4+4+13:], crc32.ChecksumIEEE(ihdr))
	return out
}
