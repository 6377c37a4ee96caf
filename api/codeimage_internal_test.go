package api

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	qrcode "github.com/skip2/go-qrcode"
)

// numericForm is the SMART Health Card style numeric text of a code: the
// prefix, then each character of the token as two digits (its byte - 45).
// It is measured here only: the node serves byte mode (docs/decisions.md,
// "Issue 12").
func numericForm(qr string) string {
	var b strings.Builder
	b.WriteString("HCX1:/")
	for _, c := range []byte(strings.TrimPrefix(qr, exchange.CodePrefix)) {
		d := int(c) - 45
		b.WriteByte(byte('0' + d/10))
		b.WriteByte(byte('0' + d%10))
	}
	return b.String()
}

// TestCodeSymbolSizes measures the QR symbol of a real signed code in byte
// mode (what the node serves) and in numeric form, and holds the byte-mode
// symbol to a size phones read at arm's length.
func TestCodeSymbolSizes(t *testing.T) {
	now := time.Now()
	root, err := certs.NewRoot("t root", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gd, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: "440000", Name: "gd", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	qr, err := exchange.IssueCode(gd, &exchange.CodeClaims{Iss: "440000", Sub: "abcdefghijklmnopqrstuvwxyz234567", SKV: 1, Col: "green",
		Name: "张*丰", IDTail: "0021", Vaccinated: true, IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	num := numericForm(qr)
	for _, lvl := range []qrcode.RecoveryLevel{qrcode.Low, qrcode.Medium, qrcode.High} {
		b, err := qrcode.New(qr, lvl)
		if err != nil {
			t.Fatal(err)
		}
		n, err := qrcode.New(num, lvl)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("level %d: %d chars byte mode: version %d (%d modules); numeric form %d chars: version %d (%d modules)",
			lvl, len(qr), b.VersionNumber, 17+4*b.VersionNumber, len(num), n.VersionNumber, 17+4*n.VersionNumber)
		if n.VersionNumber > b.VersionNumber {
			t.Errorf("level %d: numeric form is bigger than byte mode", lvl)
		}
	}
	img, err := CodeImage(qr, "png")
	if err != nil {
		t.Fatal(err)
	}
	q, _ := qrcode.New(qr, CodeECLevel)
	if q.VersionNumber > 17 {
		t.Errorf("byte-mode symbol is version %d: too dense for a phone screen", q.VersionNumber)
	}
	p, err := png.Decode(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	svg, _ := CodeImage(qr, "svg")
	t.Logf("served: version %d at Medium, PNG %d×%d px %d bytes, SVG %d bytes", q.VersionNumber, p.Bounds().Dx(), p.Bounds().Dy(), len(img), len(svg))
}
