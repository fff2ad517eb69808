package gateway_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
)

// goToolBuf runs the buf pinned in tools/ from the repository root.
func goToolBuf(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "buf"}, args...)...)
	cmd.Dir = ".."
	return cmd
}

// TestBufCurl calls pushes with `buf curl`: over Connect JSON with the
// schema from proto/, and over gRPC (HTTP/2 without TLS) with the schema
// from server reflection.
func TestBufCurl(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := goToolBuf(ctx, "--version").CombinedOutput(); err != nil {
		t.Skipf("the pinned buf (go tool buf) cannot be built here: %v\n%s", err, out)
	}
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		key  string
	}{
		{"connect with schema", []string{"--schema", "proto"}, "fx-1"},
		{"grpc with reflection", []string{"--protocol", "grpc", "--http2-prior-knowledge"}, "fx-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := `{"tenantId":"acme","idempotencyKey":"` + tc.key + `","fxRate":{"fromCurrency":"EUR","toCurrency":"USD","rate":"1.0825","date":"2024-09-01","source":"ECB"}}`
			args := append(append([]string{"curl", "-H", "Authorization: Bearer " + e.token}, tc.args...), "--data", data, e.url+"/tally.v1.IngestService/RecordFxRate")
			out, err := goToolBuf(ctx, args...).CombinedOutput()
			require.NoError(t, err, "%s", out)
			var resp struct {
				EventID   string `json:"eventId"`
				TenantSeq string `json:"tenantSeq"`
			}
			require.NoError(t, json.Unmarshal(out, &resp), "%s", out)
			require.Equal(t, eventstore.DeterministicID("acme", tc.key), resp.EventID)
		})
	}
	// A refusal reaches buf curl as an error with the code and the field.
	out, err := goToolBuf(ctx, "curl", "-H", "Authorization: Bearer "+e.token, "--schema", "proto", "--data", `{"tenantId":"acme","fxRate":{"fromCurrency":"EUR","toCurrency":"USD","rate":"abc","date":"2024-09-01"}}`,
		e.url+"/tally.v1.IngestService/RecordFxRate").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "invalid_argument")
	require.True(t, strings.Contains(string(out), `fx_rate.rate \"abc\" is not a decimal`) || strings.Contains(string(out), `fx_rate.rate "abc" is not a decimal`), "%s", out)
	require.Len(t, e.events(t, "acme"), 2)
}
