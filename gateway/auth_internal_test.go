package gateway

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// TestEveryProcedureHasAPermission: a new RPC cannot be served without a
// line in the role matrix (it would be refused to every token).
func TestEveryProcedureHasAPermission(t *testing.T) {
	var procs []string
	for _, fd := range []protoreflect.FileDescriptor{tallyv1.File_tally_v1_ingest_service_proto, tallyv1.File_tally_v1_ledger_service_proto, tallyv1.File_tally_v1_audit_service_proto, tallyv1.File_tally_v1_export_service_proto, tallyv1.File_tally_v1_savings_service_proto, tallyv1.File_tally_v1_allocation_service_proto, tallyv1.File_tally_v1_close_service_proto} {
		for i := range fd.Services().Len() {
			s := fd.Services().Get(i)
			for j := range s.Methods().Len() {
				procs = append(procs, "/"+string(s.FullName())+"/"+string(s.Methods().Get(j).Name()))
			}
		}
	}
	require.Len(t, procedurePermissions, len(procs))
	for _, p := range procs {
		require.Contains(t, procedurePermissions, p)
	}
}

// TestRoleMatrixDocumented: the table in doc.go is the code's matrix.
func TestRoleMatrixDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	row := regexp.MustCompile(`(?m)^//\t(\w+Service/\w+)\s+(.*)$`)
	header := regexp.MustCompile(`(?m)^//\tprocedure\s+(.*)$`).FindSubmatch(doc)
	require.NotNil(t, header)
	roles := strings.Fields(string(header[1]))
	require.Len(t, roles, len(tokens.Roles))
	seen := 0
	for _, m := range row.FindAllSubmatch(doc, -1) {
		proc := "/tally.v1." + string(m[1])
		perm, ok := procedurePermissions[proc]
		require.True(t, ok, "%s is documented but not served", proc)
		cells := strings.Fields(string(m[2]))
		require.Len(t, cells, len(roles), proc)
		for i, r := range roles {
			require.Equal(t, may(tokens.Role(r), perm), cells[i] == "yes", "%s for %s", proc, r)
		}
		seen++
	}
	require.Equal(t, len(procedurePermissions), seen, "every procedure is documented")
}
