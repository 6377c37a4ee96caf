// Package qrimgtest makes simulated phone photos of QR codes for tests and
// benchmarks: a code drawn with go-qrcode, rotated, set on a textured
// background, with lowered contrast, noise and JPEG compression.
package qrimgtest

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"

	qrcode "github.com/skip2/go-qrcode"
)

// Photo describes one simulated photo.
type Photo struct {
	Size     int     // the photo's side in pixels (square); 0 is 1024
	Module   float64 // pixels per module; 0 fits the code in 55 % of the photo
	Angle    float64 // rotation in degrees
	Contrast float64 // 1 is black on white; 0.4 is grey on grey; 0 is 1
	Noise    float64 // standard deviation of Gaussian noise, in grey levels
	Quality  int     // JPEG quality; 0 is a PNG
	Seed     uint64
	// At places the code's centre as fractions of the photo; zero is the
	// middle.
	AtX, AtY float64
}

// Codes draws several codes into one photo; texts and positions pair up.
func (p Photo) Codes(texts []string, at [][2]float64) ([]byte, error) {
	size := p.Size
	if size == 0 {
		size = 1024
	}
	contrast := p.Contrast
	if contrast == 0 {
		contrast = 1
	}
	rng := rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15))
	// background: a soft gradient with a few blotches, like a table or a hand
	bg := func(x, y int) float64 {
		fx, fy := float64(x)/float64(size), float64(y)/float64(size)
		return 150 + 60*fx - 40*fy + 20*math.Sin(fx*9+fy*5)
	}
	pix := make([]float64, size*size)
	for y := range size {
		for x := range size {
			pix[y*size+x] = bg(x, y)
		}
	}
	for i, text := range texts {
		q, err := qrcode.New(text, qrcode.Medium)
		if err != nil {
			return nil, err
		}
		bm := q.Bitmap() // quiet zone included
		n := len(bm)
		mod := p.Module
		if mod == 0 {
			mod = 0.55 * float64(size) / float64(n)
		}
		cx, cy := float64(size)/2, float64(size)/2
		if i < len(at) {
			cx, cy = at[i][0]*float64(size), at[i][1]*float64(size)
		}
		th := p.Angle * math.Pi / 180
		cos, sin := math.Cos(th), math.Sin(th)
		half := float64(n) * mod / 2
		r := int(half*math.Sqrt2) + 2
		lo, hi := 255*(0.5+contrast/2), 255*(0.5-contrast/2)
		for y := max(0, int(cy)-r); y < min(size, int(cy)+r); y++ {
			for x := max(0, int(cx)-r); x < min(size, int(cx)+r); x++ {
				// supersample 2×2 so that edges are grey, as a lens makes them
				var acc float64
				inside := 0
				for _, d := range [4][2]float64{{.25, .25}, {.75, .25}, {.25, .75}, {.75, .75}} {
					dx, dy := float64(x)+d[0]-cx, float64(y)+d[1]-cy
					u := (cos*dx+sin*dy)/mod + float64(n)/2
					v := (-sin*dx+cos*dy)/mod + float64(n)/2
					if u < 0 || v < 0 || u >= float64(n) || v >= float64(n) {
						acc += pix[y*size+x]
						continue
					}
					inside++
					if bm[int(v)][int(u)] {
						acc += hi
					} else {
						acc += lo
					}
				}
				if inside > 0 {
					pix[y*size+x] = acc / 4
				}
			}
		}
	}
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i, v := range pix {
		v += rng.NormFloat64() * p.Noise
		img.Pix[i] = uint8(max(0, min(255, math.Round(v))))
	}
	var buf bytes.Buffer
	var err error
	if p.Quality > 0 {
		// a colour JPEG, as a phone writes it
		rgb := image.NewRGBA(img.Rect)
		for i, v := range img.Pix {
			rgb.Pix[4*i], rgb.Pix[4*i+1], rgb.Pix[4*i+2], rgb.Pix[4*i+3] = v, v, uint8(min(255, int(v)+6)), 255
		}
		err = jpeg.Encode(&buf, rgb, &jpeg.Options{Quality: p.Quality})
	} else {
		err = png.Encode(&buf, img)
	}
	return buf.Bytes(), err
}

// Code draws one code at (AtX, AtY), the middle by default.
func (p Photo) Code(text string) ([]byte, error) {
	var at [][2]float64
	if p.AtX != 0 || p.AtY != 0 {
		at = [][2]float64{{p.AtX, p.AtY}}
	}
	return p.Codes([]string{text}, at)
}
