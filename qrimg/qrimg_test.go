package qrimg_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/qrimg"
	"github.com/hcxfed/hcx/qrimg/qrimgtest"
)

// codeText is a code-shaped text: "HCX1:" and three base64url parts of a
// code's sizes (about 400 characters), random so that each test image is a
// different symbol. Real codes go through the HTTP tests (cmd/hcx).
func codeText(seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 1))
	part := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return "HCX1:" + part(40) + "." + part(180) + "." + part(64)
}

// Photos is the set of transformations every decoder test and the
// benchmark use; each must decode to the exact text.
func photos() map[string]qrimgtest.Photo {
	return map[string]qrimgtest.Photo{
		"clean png":                {Size: 600, Module: 6},
		"rotated 7°":               {Angle: 7, Noise: 4, Quality: 70},
		"rotated 90°":              {Angle: 90, Quality: 70},
		"rotated 180°":             {Angle: 180, Quality: 70},
		"rotated 33°":              {Angle: 33, Noise: 3, Quality: 80},
		"noisy":                    {Angle: 3, Noise: 18, Quality: 90},
		"low contrast":             {Angle: 5, Contrast: 0.35, Noise: 3, Quality: 70},
		"jpeg q50":                 {Angle: 2, Noise: 5, Quality: 50},
		"small in a 1024 px photo": {Module: 3.2, Angle: 8, Noise: 5, Quality: 60, AtX: 0.3, AtY: 0.65},
		"large 3000 px photo":      {Size: 3000, Angle: 6, Noise: 6, Quality: 65},
	}
}

func TestDecodePhotos(t *testing.T) {
	zbar, zbarErr := exec.LookPath("zbarimg")
	if zbarErr != nil {
		t.Logf("zbarimg is not on PATH (Debian zbar-tools; scripts/apt-packages.sh installs it): the independent oracle is skipped, gozxing's answers are still checked against the drawn text")
	}
	dir := t.TempDir()
	// In a fixed order, so that each photo's seed and text are the same in
	// every run.
	all := photos()
	names := slices.Sorted(maps.Keys(all))
	zbarRead := 0
	for i, name := range names {
		p := all[name]
		t.Run(name, func(t *testing.T) {
			text := codeText(uint64(i + 1))
			p.Seed = uint64(i + 1)
			img, err := p.Code(text)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			got, err := qrimg.Decode(bytes.NewReader(img), 0)
			if err != nil {
				t.Fatalf("%s (%d bytes): %v", name, len(img), err)
			}
			if got != text {
				t.Fatalf("decoded %q, want %q", got, text)
			}
			t.Logf("%s: %d bytes, %v", name, len(img), time.Since(t0))
			if zbar == "" {
				return
			}
			file := filepath.Join(dir, fmt.Sprintf("photo%d", i))
			if err := os.WriteFile(file, img, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(zbar, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", file).Output()
			if err != nil {
				// zbar reads fewer hard photos than gozxing (a 33° turn, small
				// modules): where it reads nothing it cannot speak either way.
				t.Logf("zbarimg could not read %s (%v): the oracle is silent on this photo", name, err)
				return
			}
			if z := strings.TrimRight(string(out), "\n"); z != text {
				t.Fatalf("zbarimg read %q, gozxing and the drawing %q", z, text)
			}
			zbarRead++
		})
	}
	// An oracle that read nothing would prove nothing.
	if zbar != "" && zbarRead < len(names)/2 {
		t.Errorf("zbarimg read only %d of %d photos: the oracle comparison is too thin", zbarRead, len(names))
	}
}

func wantImageError(t *testing.T, err error, class hcx.ErrorCode, code string) {
	t.Helper()
	var e *hcx.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *hcx.Error %s", err, code)
	}
	if e.Class != class || e.Code != code || e.Field != "image" {
		t.Fatalf("got %s/%s field %q (%s), want %s/%s field image", e.Class, e.Code, e.Field, e.Message, class, code)
	}
}

func TestDecodeRefusesNotAnImage(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":         nil,
		"text":          []byte("HCX1:abc.def.ghi"),
		"gif":           []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
		"svg":           []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`),
		"short png sig": []byte("\x89PN"),
	} {
		_, err := qrimg.Decode(bytes.NewReader(b), 0)
		t.Logf("%s: %v", name, err)
		wantImageError(t, err, hcx.EInvalid, qrimg.CodeNotAnImage)
	}
	// The right signature, then garbage: a bad image, not a panic.
	for name, b := range map[string][]byte{
		"png":  append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 100)...),
		"jpeg": append([]byte{0xff, 0xd8, 0xff, 0xe0}, bytes.Repeat([]byte{7}, 100)...),
	} {
		_, err := qrimg.Decode(bytes.NewReader(b), 0)
		t.Logf("%s: %v", name, err)
		wantImageError(t, err, hcx.EInvalid, qrimg.CodeBadImage)
	}
}

// countingReader counts the bytes taken from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestDecodeRefuses50MB(t *testing.T) {
	// A 50 MB "photo": a JPEG's signature, then 50 MB. It is refused after
	// MaxBytes+1 bytes, before any decoding.
	big := io.MultiReader(bytes.NewReader([]byte{0xff, 0xd8, 0xff, 0xe0}), io.LimitReader(zeros{}, 50<<20))
	cr := &countingReader{r: big}
	_, err := qrimg.Decode(cr, 0)
	wantImageError(t, err, hcx.ETooLarge, qrimg.CodeTooLarge)
	if cr.n > qrimg.MaxBytes+1 {
		t.Fatalf("read %d bytes of a 50 MB body, want at most %d", cr.n, qrimg.MaxBytes+1)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// bombPNG is a valid PNG of w×h grey pixels, all white: a few kilobytes
// that decode to w×h bytes.
func bombPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeRefusesDecompressionBomb(t *testing.T) {
	// A real 8192×8192 all-white PNG (64 Mpixel) is some 60 KB.
	b := bombPNG(t, 8192, 8192)
	t.Logf("8192×8192 PNG: %d bytes", len(b))
	var before, after runtimeMem
	before.read()
	_, err := qrimg.Decode(bytes.NewReader(b), 0)
	after.read()
	wantImageError(t, err, hcx.ETooLarge, qrimg.CodeTooLarge)
	if grew := after.total - before.total; grew > 16<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes: its pixels were decoded", grew)
	}
	// A tiny PNG whose header claims 100,000 × 100,000 pixels (its IHDR
	// rewritten, CRC fixed): refused from the header alone.
	small := bombPNG(t, 8, 8)
	claim := rewriteIHDR(small, 100_000, 100_000)
	_, err = qrimg.Decode(bytes.NewReader(claim), 0)
	wantImageError(t, err, hcx.ETooLarge, qrimg.CodeTooLarge)
	// Within each side but over the pixel bound: 4096 × 4097 is refused for
	// its side, 4096 × 4096 (16 Mpixel) passes the header check.
	_, err = qrimg.Decode(bytes.NewReader(rewriteIHDR(small, 4096, 4097)), 0)
	wantImageError(t, err, hcx.ETooLarge, qrimg.CodeTooLarge)
}

func TestDecodeRefusesNoQR(t *testing.T) {
	img, err := qrimgtest.Photo{Noise: 5, Quality: 70}.Codes(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = qrimg.Decode(bytes.NewReader(img), 0)
	wantImageError(t, err, hcx.EInvalid, qrimg.CodeNoQR)
	_, err = qrimg.Decode(bytes.NewReader(bombPNG(t, 64, 64)), 0)
	wantImageError(t, err, hcx.EInvalid, qrimg.CodeNoQR)
}

func TestDecodeRefusesTwoQR(t *testing.T) {
	for name, p := range map[string]qrimgtest.Photo{
		"side by side": {Size: 1024, Module: 4.5, Noise: 3, Quality: 80},
		"rotated":      {Size: 1024, Module: 4.5, Angle: 10, Noise: 3, Quality: 70},
		"rotated 90°":  {Size: 1024, Module: 4.5, Angle: 90, Noise: 3, Quality: 70},
	} {
		img, err := p.Codes([]string{codeText(100), codeText(101)}, [][2]float64{{0.25, 0.25}, {0.75, 0.75}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = qrimg.Decode(bytes.NewReader(img), 0)
		t.Logf("%s: %v", name, err)
		wantImageError(t, err, hcx.EInvalid, qrimg.CodeSeveralQR)
	}
	// The same code twice is one code.
	text := codeText(102)
	img, err := qrimgtest.Photo{Size: 1024, Module: 3.5, Quality: 80}.Codes([]string{text, text}, [][2]float64{{0.27, 0.3}, {0.73, 0.7}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := qrimg.Decode(bytes.NewReader(img), 0); err != nil || got != text {
		t.Fatalf("the same code twice: %q, %v", got, err)
	}
}

// BenchmarkDecodePhoto decodes a 1024 px phone photo (rotated 7°, noisy,
// JPEG q70) with qrimg.Decode, and the same photo's luminance with the
// plain gozxing reader alone (the raw primitive), reporting p50 and p99.
func BenchmarkDecodePhoto(b *testing.B) {
	img, err := qrimgtest.Photo{Angle: 7, Noise: 5, Quality: 70, Seed: 7}.Code(codeText(7))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("qrimg.Decode", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t0 := time.Now()
			if _, err := qrimg.Decode(bytes.NewReader(img), 0); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		report(b, lat)
	})
	b.Run("gozxing-plain", func(b *testing.B) {
		// The raw primitive: JPEG decode, gozxing's own image source and
		// the plain QR reader, no bounds and no second-code check.
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t0 := time.Now()
			m, _, err := image.Decode(bytes.NewReader(img))
			if err != nil {
				b.Fatal(err)
			}
			bmp, err := gozxing.NewBinaryBitmapFromImage(m)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := qrcode.NewQRCodeReader().Decode(bmp, nil); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		report(b, lat)
	})
}

func report(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
