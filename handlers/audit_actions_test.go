package handlers

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The audit log's Action filter offers every action the code can write:
// each string constant named Action… whose value reads "thing.what",
// wherever it is declared. A new action that is not added to auditActions
// fails here instead of being unfindable in the filter.
func TestAuditFilterOffersEveryAction(t *testing.T) {
	declared := map[string]string{} // action → where
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, "_templ.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if !strings.HasPrefix(name.Name, "Action") || i >= len(spec.Values) {
					continue
				}
				lit, ok := spec.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				if strings.Contains(v, ".") {
					declared[v] = path + ": " + name.Name
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(declared) < 40 {
		t.Fatalf("found %d audit actions in the source; the walk missed packages", len(declared))
	}
	for action, where := range declared {
		if !slices.Contains(auditActions, action) {
			t.Errorf("the audit filter does not offer %q (%s): add it to auditActions", action, where)
		}
	}
	seen := map[string]bool{}
	for _, a := range auditActions {
		if seen[a] {
			t.Errorf("auditActions lists %q twice", a)
		}
		seen[a] = true
	}
}
