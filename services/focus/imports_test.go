package focus_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImportBoundary enforces the package doc: services/focus and
// services/focusgen parse and generate files and nothing else, so they must
// not depend on the event log, the event schema, storage or read models.
func TestImportBoundary(t *testing.T) {
	forbidden := []string{"eventstore", "proto", "projections", "gateway", "storage", "migrations", "cmd"}
	for _, dir := range []string{".", filepath.Join("..", "focusgen")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			require.NoError(t, err)
			for _, imp := range ast.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					require.False(t, strings.HasPrefix(path, "github.com/tally-ledger/tally/"+bad),
						"%s imports %s", f, path)
				}
			}
		}
	}
}
