package linmodel

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

func TestTheModelRejectsALostWriteAMovedIndexAndADuplicate(t *testing.T) {
	m := Model.ToModel()
	lost := []porcupine.Operation{
		{ClientId: 0, Input: Input{Key: "a"}, Output: Output{Index: 0}, Call: 0, Return: 10},
		{ClientId: 1, Input: Input{Read: true}, Output: Output{}, Call: 20, Return: 30},
	}
	if porcupine.CheckOperations(m, lost) {
		t.Fatal("a read that misses an acknowledged write passed")
	}
	moved := []porcupine.Operation{
		{ClientId: 0, Input: Input{Key: "a"}, Output: Output{Index: 0}, Call: 0, Return: 10},
		{ClientId: 0, Input: Input{Key: "a"}, Output: Output{Index: 1}, Call: 20, Return: 30},
	}
	if porcupine.CheckOperations(m, moved) {
		t.Fatal("a resubmission answered with another index passed")
	}
	unknown := []porcupine.Operation{
		{ClientId: 0, Input: Input{Key: "a"}, Output: Output{Unknown: true}, Call: 0, Return: 1 << 62},
		{ClientId: 1, Input: Input{Read: true}, Output: Output{}, Call: 20, Return: 30},
		{ClientId: 1, Input: Input{Read: true}, Output: Output{Log: []string{"a"}}, Call: 40, Return: 50},
	}
	if !porcupine.CheckOperations(m, unknown) {
		t.Fatal("a write of unknown outcome that lands late was refused")
	}
	twice := []porcupine.Operation{
		{ClientId: 0, Input: Input{Key: "a"}, Output: Output{Unknown: true}, Call: 0, Return: 1 << 62},
		{ClientId: 1, Input: Input{Read: true}, Output: Output{Log: []string{"a", "a"}}, Call: 20, Return: 30},
	}
	if porcupine.CheckOperations(m, twice) {
		t.Fatal("a write of unknown outcome that shows up twice passed")
	}
}
