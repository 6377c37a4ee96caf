package qrimg_test

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/qrimg"
	"github.com/hcxfed/hcx/qrimg/qrimgtest"
)

// FuzzDecode: any bytes are an answer or an *hcx.Error naming the field
// image, never a panic, and nothing over the bounds is decoded.
func FuzzDecode(f *testing.F) {
	var small bytes.Buffer
	_ = png.Encode(&small, image.NewGray(image.Rect(0, 0, 8, 8)))
	f.Add(small.Bytes())
	f.Add(rewriteIHDR(small.Bytes(), 100_000, 3))
	code, _ := qrimgtest.Photo{Size: 200, Module: 2}.Code("HCX1:a.b.c")
	f.Add(code)
	jpg, _ := qrimgtest.Photo{Size: 120, Quality: 60}.Codes(nil, nil)
	f.Add(jpg)
	f.Add([]byte("\xff\xd8\xff"))
	f.Add([]byte("not an image"))
	f.Fuzz(func(t *testing.T, b []byte) {
		text, err := qrimg.Decode(bytes.NewReader(b), 1<<20)
		if err == nil {
			if text == "" {
				t.Fatal("no error and no text")
			}
			return
		}
		var e *hcx.Error
		if !errors.As(err, &e) || e.Field != qrimg.Field || e.Code == "" {
			t.Fatalf("%v: want an *hcx.Error naming image", err)
		}
	})
}
