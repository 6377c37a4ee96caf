package api

import (
	"encoding/json"
	"testing"

	"github.com/hcxfed/hcx/node"
)

var benchRegister = []byte(`{"doc_type":"CN-ID","doc_number":"440106199003070028","name":"张三","phone":"13800138000"}`)

// BenchmarkDecodeRegister compares the strict decoder with encoding/json's
// plain Unmarshal (the baseline) on a registration body:
// go test ./api -run '^$' -bench DecodeRegister -benchtime 20000x
func BenchmarkDecodeRegister(b *testing.B) {
	b.Run("baseline-json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v node.RegisterRequest
			if err := json.Unmarshal(benchRegister, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v node.RegisterRequest
			if err := decodeObject(benchRegister, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
