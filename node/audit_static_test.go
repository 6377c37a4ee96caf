package node

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// backgroundWriters are the functions allowed to write the store other than
// through the committer, and why none of them acts for a caller. A method
// that writes for a caller must hand a write carrying callerEntry's entry
// to n.write, so that the trail entry is in the same transaction.
var backgroundWriters = map[string]string{
	"Node.commitOnce":       "the committer itself: it writes the trail entries",
	"Node.applyChecked":     "the follower applies the hub's log",
	"migrateEvents":         "folds a store of an earlier version at open",
	"Node.publishOnce":      "the publisher's bookkeeping of the pending batch",
	"Node.recordAck":        "the publisher records the hub's acknowledgement",
	"Node.nextBatch":        "the publisher seals the next batch from the outbox",
	"Node.publishPolicy":    "the publisher records the policy version the hub acknowledged",
	"Node.planRedecide":     "plans the re-decision after a rule change (the change is in the trail)",
	"Node.runRedecide":      "the re-decision's cursor",
	"Node.FileEnrolment":    "a device files its certificate request, anonymously and bounded; the operator's decision on it is in the trail",
	"Node.publishVax":       "the publisher seals vaccination envelopes from their outbox and records the hub's acknowledgement",
	"followTxn.commit":      "the follower's transaction, split when it grows (set, setTTL, setEntry) or committed early under subjects' locks (applyVax)",
	"Node.updateAside":      "sessions and passkeys: a resident's own login credentials, not an operator or feed action, and no resident state",
	"Node.storeChecks":      "the check history's background writer: receipts of verifications (a read; the resident's own data), batched off the verify path",
	"Node.pruneWhere":       "deletes checks and statistics past their retention (PruneChecks, PruneStats)",
	"Node.flushStats":       "the province's check statistics: anonymous hourly counts, added by the check writer off the verify path",
	"Node.loadBoxKeys":      "the node's first box key, generated at New before the committer runs (receipts.go); no caller",
	"Node.refreshWitnessed": "the follower records a newer witnessed checkpoint for the tree it applied (witness.go)",
}

// TestOnlyTheCommitterAndBackgroundWorkWriteTheStore reads the node's source
// and fails on any function outside backgroundWriters that opens a writing
// transaction: a new write path must go through the committer with an audit
// entry, or be added above with the reason it acts for no caller.
func TestOnlyTheCommitterAndBackgroundWorkWriteTheStore(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			fname := fn.Name.Name
			if fn.Recv != nil && len(fn.Recv.List) == 1 {
				typ := fn.Recv.List[0].Type
				if st, ok := typ.(*ast.StarExpr); ok {
					typ = st.X
				}
				if id, ok := typ.(*ast.Ident); ok {
					fname = id.Name + "." + fname
				}
			}
			ast.Inspect(fn.Body, func(nd ast.Node) bool {
				call, ok := nd.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				switch sel.Sel.Name {
				case "Update", "NewWriteBatch", "NewManagedWriteBatch", "NewStreamWriter", "DropPrefix", "DropAll", "NewTransactionAt":
				case "NewTransaction":
					if id, ok := call.Args[0].(*ast.Ident); ok && id.Name == "false" {
						return true
					}
				default:
					return true
				}
				if _, ok := backgroundWriters[fname]; !ok {
					t.Errorf("%s: %s writes the store with %s outside the committer; go through n.write with an audit entry (callerEntry), or list it in backgroundWriters with the reason it acts for no caller",
						fset.Position(call.Pos()), fname, sel.Sel.Name)
				}
				found[fname] = true
				return true
			})
		}
	}
	var stale []string
	for name := range backgroundWriters {
		if !found[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("backgroundWriters lists functions that no longer write: %v", stale)
	}
}
