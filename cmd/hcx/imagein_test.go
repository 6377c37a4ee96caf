package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hcxfed/hcx/qrimg"
	"github.com/hcxfed/hcx/qrimg/qrimgtest"
)

// postImage sends body to /v1/verify as who with Content-Type ct and
// returns the status and the body as /v1/verify's comparable text.
func (x *batchFixture) postImage(t *testing.T, who caller, ct string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", x.url+"/v1/verify", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	who.sign(t, req, body)
	resp, err := x.f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, bytes.TrimSpace(b)
}

// Photos of real codes (green, red, expired, forged, revoked), rotated,
// noisy, low in contrast, JPEG-compressed and small in a 1024 px photo,
// posted by a checkpoint device to /v1/verify as image/jpeg or image/png,
// are answered exactly as the code's text is. zbarimg, when installed,
// reads the same text from the same photos.
func TestVerifyImage(t *testing.T) {
	x := newBatchFixture(t, 3)
	zbar, zerr := exec.LookPath("zbarimg")
	if zerr != nil {
		t.Logf("zbarimg is not on PATH (Debian zbar-tools, scripts/apt-packages.sh): the independent oracle comparison is skipped")
	}
	dir := t.TempDir()
	codes := map[string]string{}
	resident := map[string]int{} // kind -> index in x.residents
	for i, r := range x.residents {
		kind := "resident" + string(rune('0'+i)) + "-" + string(r.colour)
		codes[kind], resident[kind] = r.code, i
	}
	for _, kind := range []string{"expired", "forged", "revoked"} {
		codes[kind] = x.bad[kind]
	}
	shots := []qrimgtest.Photo{
		{Size: 700, Module: 6},                                   // a screenshot (PNG)
		{Angle: 7, Noise: 5, Quality: 60},                        // a phone photo
		{Angle: 90, Contrast: 0.4, Noise: 3, Quality: 70},        // sideways, grey
		{Angle: 180, Noise: 12, Quality: 50},                     // upside down, noisy
		{Module: 4, Angle: -6, Quality: 65, AtX: 0.35, AtY: 0.6}, // small, off centre
	}
	n, zbarRead := 0, 0
	for kind, code := range codes {
		// A code lives 60 s and the photos of all codes take longer under
		// -race: each resident's is fetched again before its photos.
		if i, ok := resident[kind]; ok {
			code = x.freshCode(t, i)
		}
		want, wantBody := x.single(t, code)
		for j, p := range shots {
			n++
			p.Seed = uint64(n)
			img, err := p.Code(code)
			if err != nil {
				t.Fatal(err)
			}
			ct := "image/jpeg"
			if p.Quality == 0 {
				ct = "image/png"
			}
			st, body := x.postImage(t, x.gate, ct, img)
			if st != want || withoutCheckedAt(t, body) != wantBody {
				t.Fatalf("%s photo %d: %d %s, want %d %s", kind, j, st, body, want, wantBody)
			}
			if zbar == "" {
				continue
			}
			file := filepath.Join(dir, kind+string(rune('a'+j)))
			if err := os.WriteFile(file, img, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(zbar, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", file).Output()
			if err != nil {
				// zbar reads fewer hard photos than gozxing; where it reads
				// nothing it cannot speak either way.
				t.Logf("zbarimg could not read %s photo %d (%v): the oracle is silent on it", kind, j, err)
				continue
			}
			if z := strings.TrimRight(string(out), "\n"); z != code {
				t.Fatalf("zbarimg on %s photo %d read %q, want %q", kind, j, z, code)
			}
			zbarRead++
		}
	}
	if zbar != "" && zbarRead < n/2 {
		t.Errorf("zbarimg read only %d of %d photos: the oracle comparison is too thin", zbarRead, n)
	}
	t.Logf("%d photos of %d codes answered as their text", n, len(codes))
	// The operator may post a photo too; a resident may not verify.
	img, _ := qrimgtest.Photo{Angle: 4, Quality: 70}.Code(x.freshCode(t, 0))
	if st, body := x.postImage(t, x.f.asOperator(t, "440000"), "image/jpeg", img); st != http.StatusOK {
		t.Fatalf("operator: %d %s", st, body)
	}
	if st, _ := x.postImage(t, x.residents[0].who, "image/jpeg", img); st != http.StatusForbidden {
		t.Fatalf("resident: %d, want 403", st)
	}
}

// Each bad image is a 4xx naming the field image (or Content-Type), and
// the JSON form still works after them.
func TestVerifyImageBadInputs(t *testing.T) {
	x := newBatchFixture(t, 1)
	code := x.residents[0].code
	wantErr := func(name string, st int, body []byte, wantSt int, wantCode, wantField string) {
		t.Helper()
		var e struct {
			Error struct{ Code, Field, Message string } `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: %d %q: %v", name, st, body, err)
		}
		if st != wantSt || e.Error.Code != wantCode || e.Error.Field != wantField {
			t.Fatalf("%s: %d %s/%s (%s), want %d %s/%s", name, st, e.Error.Code, e.Error.Field, e.Error.Message, wantSt, wantCode, wantField)
		}
		t.Logf("%s: %d %s: %s", name, st, e.Error.Code, e.Error.Message)
	}
	st, body := x.postImage(t, x.gate, "image/png", []byte(code))
	wantErr("not an image", st, body, http.StatusBadRequest, qrimg.CodeNotAnImage, "image")
	st, body = x.postImage(t, x.gate, "image/gif", []byte("GIF89a"))
	wantErr("a GIF", st, body, http.StatusBadRequest, "invalid_content_type", "Content-Type")

	// 50 MB: refused before decoding (the device's request token covers
	// at most 8 MiB of body, so the gate refuses it first).
	big := make([]byte, 50<<20)
	copy(big, []byte{0xff, 0xd8, 0xff, 0xe0})
	st, body = x.postImage(t, x.gate, "image/jpeg", big)
	if st != http.StatusRequestEntityTooLarge {
		t.Fatalf("50 MB: %d %s, want 413", st, clipTest(body))
	}
	t.Logf("50 MB: %d %s", st, clipTest(body))
	// (The image limit equals the token's body limit, 8 MiB, so any body
	// over it is the gate's refusal; qrimg's own byte bound is tested in
	// package qrimg.)

	// A decompression bomb: a 100-byte PNG whose header claims 100,000²
	// pixels, and a real 8192×8192 PNG of some 80 KB.
	var small bytes.Buffer
	_ = png.Encode(&small, image.NewGray(image.Rect(0, 0, 8, 8)))
	st, body = x.postImage(t, x.gate, "image/png", claimSize(small.Bytes(), 100_000, 100_000))
	wantErr("bomb header", st, body, http.StatusRequestEntityTooLarge, qrimg.CodeTooLarge, "image")
	var bomb bytes.Buffer
	_ = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&bomb, image.NewGray(image.Rect(0, 0, 8192, 8192)))
	st, body = x.postImage(t, x.gate, "image/png", bomb.Bytes())
	wantErr("bomb 8192²", st, body, http.StatusRequestEntityTooLarge, qrimg.CodeTooLarge, "image")

	// No code; two different codes.
	empty, _ := qrimgtest.Photo{Noise: 4, Quality: 70}.Codes(nil, nil)
	st, body = x.postImage(t, x.gate, "image/jpeg", empty)
	wantErr("no QR", st, body, http.StatusBadRequest, qrimg.CodeNoQR, "image")
	other := x.bad["expired"]
	two, _ := qrimgtest.Photo{Module: 4.5, Noise: 3, Quality: 80}.Codes([]string{code, other}, [][2]float64{{0.25, 0.25}, {0.75, 0.75}})
	st, body = x.postImage(t, x.gate, "image/jpeg", two)
	wantErr("two QR", st, body, http.StatusBadRequest, qrimg.CodeSeveralQR, "image")

	// Nothing changed: the code still verifies, as text and as a photo.
	if st, _ := x.single(t, code); st != http.StatusOK {
		t.Fatalf("the code after the bad images: %d", st)
	}
	img, _ := qrimgtest.Photo{Angle: 3, Quality: 70}.Code(code)
	if st, body := x.postImage(t, x.gate, "image/jpeg", img); st != http.StatusOK {
		t.Fatalf("a good photo after the bad images: %d %s", st, body)
	}
}

// claimSize rewrites a PNG's header to claim w×h pixels (CRC fixed).
func claimSize(p []byte, w, h uint32) []byte {
	out := bytes.Clone(p)
	ihdr := out[12 : 12+4+13]
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	binary.BigEndian.PutUint32(out[12+4+13:], crc32.ChecksumIEEE(ihdr))
	return out
}
