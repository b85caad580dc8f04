package record_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-alerts/herald/internal/record"
)

// TestActionsListsEveryAction holds record.Actions equal to the Action
// constants declared in record.go: an action added without joining the
// list would be refused by the audit queries and missing from the
// console's filter.
func TestActionsListsEveryAction(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "record.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Action") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				declared = append(declared, v)
			}
		}
	}
	if len(declared) < 15 {
		t.Fatalf("found only %d Action constants in record.go: the parse is wrong", len(declared))
	}
	got := slices.Clone(record.Actions)
	slices.Sort(got)
	slices.Sort(declared)
	if !slices.Equal(got, declared) {
		t.Fatalf("record.Actions = %v\nconstants      = %v", got, declared)
	}
	if len(slices.Compact(got)) != len(record.Actions) {
		t.Fatalf("record.Actions repeats an action: %v", record.Actions)
	}
}
