// Package qrimg reads the one QR code in a photo or a scan (issue 12 item 3;
// docs/decisions.md, "Issue 12: QR images in").
//
// Decode takes JPEG or PNG only, recognised by their magic bytes, and is
// bounded before it spends anything: the bytes read (a larger body is
// refused before a pixel is decoded), then the dimensions from the image's
// header (image.DecodeConfig), so a small file that claims a huge picture (a
// decompression bomb) is refused without allocating it. Pixels become one
// luminance plane (a JPEG's Y plane is used as it is), a very large photo is
// box-downscaled, and gozxing reads it: the plain QR reader first, then the
// multi reader with TRY_HARDER, which finds codes the plain one misses.
// Exactly one distinct code text is an answer; none is no_qr_code, two or
// more are several_qr_codes. Every error is an *hcx.Error naming the field
// "image".
package qrimg

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"sort"

	"github.com/makiuchi-d/gozxing"
	multiqr "github.com/makiuchi-d/gozxing/multi/qrcode"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/hcxfed/hcx"
)

const (
	// MaxBytes is the default bound on an image's bytes: 8 MiB, the
	// request token's body limit (a phone photo is 1 to 5 MB).
	MaxBytes = 8 << 20
	// MaxSide bounds each dimension, in pixels.
	MaxSide = 4096
	// MaxPixels bounds width × height: 16 Mpixel, 16 MiB of luminance.
	MaxPixels = 16 << 20
	// DecodeSide is the longest side the reader works on: a larger image is
	// box-downscaled by a whole factor to at most this. A code that fills a
	// tenth of a 1600 px photo still has about 3 px per module.
	DecodeSide = 1600
)

// Field is the field every error of this package names.
const Field = "image"

// Error codes.
const (
	CodeNotAnImage = "not_an_image"
	CodeTooLarge   = "image_too_large"
	CodeBadImage   = "bad_image"
	CodeNoQR       = "no_qr_code"
	CodeSeveralQR  = "several_qr_codes"
)

func imageError(class hcx.ErrorCode, code, format string, args ...any) *hcx.Error {
	return &hcx.Error{Class: class, Code: code, Field: Field, Message: fmt.Sprintf(format, args...)}
}

var (
	magicPNG  = []byte("\x89PNG\r\n\x1a\n")
	magicJPEG = []byte{0xff, 0xd8, 0xff}
)

// Format names the image format of b from its magic bytes: "png", "jpeg",
// or "" for anything else.
func Format(b []byte) string {
	switch {
	case bytes.HasPrefix(b, magicPNG):
		return "png"
	case bytes.HasPrefix(b, magicJPEG):
		return "jpeg"
	}
	return ""
}

// Decode reads at most maxBytes (MaxBytes if maxBytes <= 0) from r and
// returns the text of the one QR code in the image.
func Decode(r io.Reader, maxBytes int64) (string, error) {
	if maxBytes <= 0 {
		maxBytes = MaxBytes
	}
	b, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return "", imageError(hcx.EInvalid, CodeBadImage, "could not read the image: %v", err)
	}
	if int64(len(b)) > maxBytes {
		return "", imageError(hcx.ETooLarge, CodeTooLarge, "the image is over the limit of %d bytes", maxBytes)
	}
	return DecodeBytes(b)
}

// DecodeBytes is Decode on an image already read (and already bounded).
func DecodeBytes(b []byte) (string, error) {
	lum, w, h, err := Luminance(b)
	if err != nil {
		return "", err
	}
	return decodeLuminance(lum, w, h)
}

// Luminance checks b (format, header, dimensions), decodes its pixels and
// returns its luminance plane, downscaled to at most DecodeSide.
func Luminance(b []byte) (lum []byte, w, h int, err error) {
	if len(b) == 0 {
		return nil, 0, 0, imageError(hcx.EInvalid, CodeNotAnImage, "the image is empty: send a JPEG or PNG")
	}
	var decodeConfig func(io.Reader) (image.Config, error)
	var decode func(io.Reader) (image.Image, error)
	format := Format(b)
	switch format {
	case "png":
		decodeConfig, decode = png.DecodeConfig, png.Decode
	case "jpeg":
		decodeConfig, decode = jpeg.DecodeConfig, jpeg.Decode
	default:
		return nil, 0, 0, imageError(hcx.EInvalid, CodeNotAnImage, "the image is neither a JPEG nor a PNG (its first bytes are not their signature)")
	}
	cfg, err := decodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, 0, 0, imageError(hcx.EInvalid, CodeBadImage, "the image is not a readable %s: %v", format, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxSide || cfg.Height > MaxSide || cfg.Width*cfg.Height > MaxPixels {
		return nil, 0, 0, imageError(hcx.ETooLarge, CodeTooLarge,
			"the image is %d×%d pixels; at most %d on a side and %d Mpixel", cfg.Width, cfg.Height, MaxSide, MaxPixels>>20)
	}
	img, err := decode(bytes.NewReader(b))
	if err != nil {
		return nil, 0, 0, imageError(hcx.EInvalid, CodeBadImage, "the image is not a readable %s: %v", format, err)
	}
	lum, w, h = luminance(img)
	if f := (max(w, h) + DecodeSide - 1) / DecodeSide; f > 1 {
		lum, w, h = downscale(lum, w, h, f)
	}
	return lum, w, h, nil
}

// luminance returns img's luminance, one byte per pixel, rows packed. A
// JPEG's Y plane and a grey image are copied; anything else is converted
// pixel by pixel with gozxing's weights (alpha over white).
func luminance(img image.Image) ([]byte, int, int) {
	r := img.Bounds()
	w, h := r.Dx(), r.Dy()
	lum := make([]byte, w*h)
	switch m := img.(type) {
	case *image.YCbCr:
		for y := range h {
			o := m.YOffset(r.Min.X, r.Min.Y+y)
			copy(lum[y*w:(y+1)*w], m.Y[o:o+w])
		}
	case *image.Gray:
		for y := range h {
			o := m.PixOffset(r.Min.X, r.Min.Y+y)
			copy(lum[y*w:(y+1)*w], m.Pix[o:o+w])
		}
	default:
		i := 0
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				cr, cg, cb, ca := img.At(x, y).RGBA()
				l := (cr + 2*cg + cb) * 255 / (4 * 0xffff)
				lum[i] = byte((l*ca + (0xffff-ca)*255) / 0xffff)
				i++
			}
		}
	}
	return lum, w, h
}

// downscale averages f×f boxes of lum (w×h) into a ceil(w/f)×ceil(h/f) plane.
func downscale(lum []byte, w, h, f int) ([]byte, int, int) {
	nw, nh := (w+f-1)/f, (h+f-1)/f
	sum := make([]uint32, nw)
	cnt := make([]uint32, nw)
	out := make([]byte, nw*nh)
	for ny := range nh {
		clear(sum)
		clear(cnt)
		for y := ny * f; y < min((ny+1)*f, h); y++ {
			row := lum[y*w : (y+1)*w]
			for x, v := range row {
				sum[x/f] += uint32(v)
				cnt[x/f]++
			}
		}
		for nx := range nw {
			out[ny*nw+nx] = byte(sum[nx] / cnt[nx])
		}
	}
	return out, nw, nh
}

func bitmap(lum []byte, w, h int) (*gozxing.BinaryBitmap, gozxing.LuminanceSource, error) {
	src, err := gozxing.NewPlanarYUVLuminanceSource(lum, w, h, 0, 0, w, h, false)
	if err != nil {
		return nil, nil, err
	}
	bmp, err := gozxing.NewBinaryBitmap(gozxing.NewHybridBinarizer(src))
	return bmp, src, err
}

// decodeLuminance finds the one code in a luminance plane. The plain reader
// answers most photos in a few milliseconds; when it does, the code's area
// is made white in the black matrix and the plain reader, then the multi reader (without
// TRY_HARDER) look again, so a second, different code beside it is still
// refused. When the plain reader finds nothing, the
// multi reader with TRY_HARDER decides (none, one, or several).
func decodeLuminance(lum []byte, w, h int) (string, error) {
	bmp, src, err := bitmap(lum, w, h)
	if err != nil {
		return "", imageError(hcx.EInvalid, CodeBadImage, "the image cannot be read: %v", err)
	}
	if res, err := qrcode.NewQRCodeReader().Decode(bmp, nil); err == nil {
		text := res.GetText()
		if bmp2, err := blanked(bmp, src, res.GetResultPoints()); err == nil {
			if res2, err := qrcode.NewQRCodeReader().Decode(bmp2, nil); err == nil {
				if res2.GetText() != text {
					return "", several(2)
				}
			} else if rs, _ := multiqr.NewQRCodeMultiReader().DecodeMultiple(bmp2, nil); len(rs) > 0 {
				for _, r := range rs {
					if r.GetText() != text {
						return "", several(2)
					}
				}
			}
		}
		return text, nil
	}
	hints := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true}
	results, err := multiqr.NewQRCodeMultiReader().DecodeMultiple(bmp, hints)
	if err != nil {
		var nf gozxing.NotFoundException
		if errors.As(err, &nf) || len(results) == 0 {
			return "", imageError(hcx.EInvalid, CodeNoQR, "no QR code was found in the image: photograph the whole code, flat and in focus")
		}
	}
	texts := map[string]bool{}
	for _, r := range results {
		texts[r.GetText()] = true
	}
	switch len(texts) {
	case 0:
		return "", imageError(hcx.EInvalid, CodeNoQR, "no QR code was found in the image: photograph the whole code, flat and in focus")
	case 1:
		for t := range texts {
			return t, nil
		}
	}
	return "", several(len(texts))
}

func several(n int) *hcx.Error {
	return imageError(hcx.EInvalid, CodeSeveralQR, "the image holds %d different QR codes: photograph one code at a time", n)
}

// blanked returns bmp's black matrix (already computed by the first read)
// with the code located by pts (its finder patterns, and maybe an alignment
// pattern) made white: the box of the points, widened by half its size on
// each side, which covers the quiet zone of a code at any rotation.
func blanked(bmp *gozxing.BinaryBitmap, src gozxing.LuminanceSource, pts []gozxing.ResultPoint) (*gozxing.BinaryBitmap, error) {
	m, err := bmp.GetBlackMatrix()
	if err != nil {
		return nil, err
	}
	w, h := m.GetWidth(), m.GetHeight()
	out, err := gozxing.NewBitMatrix(w, h)
	if err != nil {
		return nil, err
	}
	if err := out.Xor(m); err != nil { // a copy
		return nil, err
	}
	if len(pts) > 0 {
		xs := make([]float64, 0, len(pts))
		ys := make([]float64, 0, len(pts))
		for _, p := range pts {
			xs = append(xs, p.GetX())
			ys = append(ys, p.GetY())
		}
		sort.Float64s(xs)
		sort.Float64s(ys)
		x0, x1, y0, y1 := xs[0], xs[len(xs)-1], ys[0], ys[len(ys)-1]
		mx, my := (x1-x0)/2+4, (y1-y0)/2+4
		ix0, ix1 := clamp(int(x0-mx), w), clamp(int(x1+mx)+1, w)
		iy0, iy1 := clamp(int(y0-my), h), clamp(int(y1+my)+1, h)
		for y := iy0; y < iy1; y++ {
			for x := ix0; x < ix1; x++ {
				out.Unset(x, y)
			}
		}
	}
	return gozxing.NewBinaryBitmap(matrixBinarizer{m: out, src: src})
}

// matrixBinarizer serves a black matrix already made.
type matrixBinarizer struct {
	m   *gozxing.BitMatrix
	src gozxing.LuminanceSource // the image's, for a reader that asks
}

func (b matrixBinarizer) GetLuminanceSource() gozxing.LuminanceSource { return b.src }
func (b matrixBinarizer) GetBlackRow(y int, row *gozxing.BitArray) (*gozxing.BitArray, error) {
	return b.m.GetRow(y, row), nil
}
func (b matrixBinarizer) GetBlackMatrix() (*gozxing.BitMatrix, error) { return b.m, nil }
func (b matrixBinarizer) CreateBinarizer(gozxing.LuminanceSource) gozxing.Binarizer {
	return b
}
func (b matrixBinarizer) GetWidth() int  { return b.m.GetWidth() }
func (b matrixBinarizer) GetHeight() int { return b.m.GetHeight() }

func clamp(v, n int) int { return max(0, min(v, n)) }
