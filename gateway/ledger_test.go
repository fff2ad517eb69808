package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// sampleSums reads the independently computed billed totals of the sample
// (testdata/focus/focus_sample.sums.txt): "total" and per provider.
func sampleSums(t *testing.T) (total string, byProvider map[string]string) {
	t.Helper()
	f, err := os.Open("../testdata/focus/focus_sample.sums.txt")
	require.NoError(t, err)
	defer f.Close()
	byProvider = map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		switch {
		case len(fields) == 2 && fields[0] == "total":
			total = fields[1]
		case len(fields) == 3 && fields[0] == "provider":
			byProvider[fields[1]] = fields[2]
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, map[string]string{"AWS": "18.0066386184", "Microsoft": "1.97651418586", "Oracle": "0.53707392473"}, byProvider)
	return total, byProvider
}

// sampleRange covers every charge period of the sample (September 2024).
var sampleFrom, sampleTo = ts("2024-09-01T00:00:00Z"), ts("2024-11-01T00:00:00Z")

func byProviderRequest(tenant string, minSeq uint64) *tallyv1.GetCostRequest {
	return &tallyv1.GetCostRequest{TenantId: tenant, From: sampleFrom, To: sampleTo, GroupBy: []string{"provider"}, MinSeq: minSeq}
}

// billedBy maps a response's first group to its total billed cost (one
// currency is expected).
func billedBy(t *testing.T, resp *tallyv1.GetCostResponse) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range resp.GetRows() {
		require.Equal(t, "USD", r.GetCurrency())
		out[r.GetGroups()[0]] = r.GetTotal().GetBilled()
	}
	return out
}

// TestGetCostSampleByProvider: the sample uploaded through IngestService and
// read back grouped by provider (read-your-writes with min_seq) gives the
// independently computed sums exactly, through Connect and through a
// grpc-go client; another tenant's lines, in the same providers, never
// appear.
func TestGetCostSampleByProvider(t *testing.T) {
	e := newLedgerEnv(t, true)
	_, want := sampleSums(t)
	seq := e.uploadSample(t, "acme", false)
	// Another tenant, with lines in the same providers and period: were
	// tenants mixed, acme's sums would be off by 1000.
	month := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	otherSeq := e.appendLines(t, "globex", []costLine{
		{provider: "AWS", account: "999", service: "Amazon EC2", month: month, day: 3, billed: "1000"},
		{provider: "Oracle", account: "999", service: "COMPUTE", month: month, day: 4, billed: "1000"},
	})

	resp, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(byProviderRequest("acme", max(seq, otherSeq))))
	require.NoError(t, err)
	require.Equal(t, []string{"provider"}, resp.Msg.GetGroups())
	require.Equal(t, want, billedBy(t, resp.Msg))
	for _, r := range resp.Msg.GetRows() {
		require.Nil(t, r.GetPeriodStart(), "whole range: no period")
		require.Equal(t, r.GetTotal().GetBilled(), r.GetPreliminary().GetBilled(), "nothing is final yet")
		require.Equal(t, "0", r.GetFinal().GetBilled())
		require.Zero(t, r.GetFinal().GetLines())
		require.Positive(t, r.GetTotal().GetLines())
	}

	// The same through grpc-go.
	conn := grpcConn(t, e.env)
	var got tallyv1.GetCostResponse
	require.NoError(t, conn.Invoke(ctxT(t), "/tally.v1.LedgerService/GetCost", byProviderRequest("acme", seq), &got))
	require.True(t, proto.Equal(resp.Msg, &got), "grpc-go and Connect answer the same")

	// globex sees its own lines only.
	other, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(byProviderRequest("globex", otherSeq)))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"AWS": "1000", "Oracle": "1000"}, billedBy(t, other.Msg))
	// A tenant with nothing sees nothing.
	none, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(byProviderRequest("initech", 0)))
	require.NoError(t, err)
	require.Empty(t, none.Msg.GetRows())

	// Filtered to one provider, grouped by service: the sum is the provider's.
	req := byProviderRequest("acme", 0)
	req.GroupBy = []string{"service"}
	req.Dimensions = []*tallyv1.DimensionFilter{{Dimension: "provider", Values: []string{"Oracle"}}}
	oracle, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(req))
	require.NoError(t, err)
	require.Equal(t, []string{"service_name"}, oracle.Msg.GetGroups(), "short names answer with the canonical ones")
	require.Equal(t, map[string]string{"BLOCK_STORAGE": "0.00107392473", "COMPUTE": "0.536", "NETWORK": "0"}, billedBy(t, oracle.Msg))
}

// TestGetTotalsHTTPGet: GetTotals answers a plain HTTP GET in Connect's GET
// encoding, and the Connect client with WithHTTPGet. This gateway has no
// runner: min_seq polls the database.
func TestGetTotalsHTTPGet(t *testing.T) {
	e := newLedgerEnv(t, false)
	total, _ := sampleSums(t)
	seq := e.uploadSample(t, "acme", true)

	msg := `{"tenantId":"acme","from":"2024-09-01T00:00:00Z","to":"2024-11-01T00:00:00Z","minSeq":"` + strconv.FormatUint(seq, 10) + `"}`
	res, err := e.http1.Get(e.url + "/tally.v1.LedgerService/GetTotals?encoding=json&message=" + url.QueryEscape(msg))
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
	require.Contains(t, res.Header.Get("Content-Type"), "application/json")
	var got struct {
		Totals []struct {
			Currency                  string
			Total, Preliminary, Final struct {
				Billed string
				Lines  string
			}
		}
	}
	require.NoError(t, json.Unmarshal(body, &got), "%s", body)
	require.Len(t, got.Totals, 1)
	require.Equal(t, "USD", got.Totals[0].Currency)
	require.Equal(t, total, got.Totals[0].Total.Billed)
	require.Equal(t, total, got.Totals[0].Final.Billed, "uploaded as final")
	require.Equal(t, "0", got.Totals[0].Preliminary.Billed)

	// The Connect client, over GET.
	resp, err := e.ledgerGET.GetTotals(ctxT(t), connect.NewRequest(&tallyv1.GetTotalsRequest{TenantId: "acme", From: sampleFrom, To: sampleTo}))
	require.NoError(t, err)
	require.Equal(t, total, resp.Msg.GetTotals()[0].GetTotal().GetBilled())

	// A refused GET is a Connect error in JSON, naming the field.
	res, err = e.http1.Get(e.url + "/tally.v1.LedgerService/GetTotals?encoding=json&message=" + url.QueryEscape(`{"tenantId":"acme"}`))
	require.NoError(t, err)
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode, "%s", body)
	require.Contains(t, string(body), `"code":"invalid_argument"`)
	require.Contains(t, string(body), "from is required")
}

// TestGetCostGranularity: days and months of charge period start, tags as
// groups and filters, and the preliminary/final split.
func TestGetCostGranularity(t *testing.T) {
	e := newLedgerEnv(t, true)
	oct, nov := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	octBill := costLine{provider: "AWS", account: "111", month: oct}
	seq := e.appendLines(t, "acme", []costLine{
		{provider: "AWS", account: "111", service: "EC2", region: "us-east-1", month: oct, day: 1, billed: "1.10", tags: map[string]string{"team": "web"}},
		{provider: "AWS", account: "111", service: "EC2", region: "eu-west-1", month: oct, day: 1, billed: "2.20", tags: map[string]string{"team": "data"}},
		{provider: "AWS", account: "111", service: "S3", region: "us-east-1", month: oct, day: 2, billed: "0.30"},
		{provider: "AWS", account: "111", service: "EC2", region: "us-east-1", month: nov, day: 5, billed: "4.00", tags: map[string]string{"team": "web"}},
	}, octBill)
	base := func() *tallyv1.GetCostRequest {
		return &tallyv1.GetCostRequest{TenantId: "acme", From: ts("2026-10-01T00:00:00Z"), To: ts("2026-12-01T00:00:00Z"), MinSeq: seq}
	}
	type row struct{ period, groups, billed, prelim, final string }
	rowsOf := func(r *tallyv1.GetCostResponse) []row {
		var out []row
		for _, x := range r.GetRows() {
			p := ""
			if x.GetPeriodStart() != nil {
				p = x.GetPeriodStart().AsTime().Format(time.DateOnly)
			}
			out = append(out, row{p, strings.Join(x.GetGroups(), "|"), x.GetTotal().GetBilled(), x.GetPreliminary().GetBilled(), x.GetFinal().GetBilled()})
		}
		return out
	}

	req := base()
	req.Granularity = tallyv1.Granularity_GRANULARITY_MONTH
	resp, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(req))
	require.NoError(t, err)
	require.Equal(t, []row{{"2026-10-01", "", "3.6", "0", "3.6"}, {"2026-11-01", "", "4", "4", "0"}}, rowsOf(resp.Msg))

	req = base()
	req.Granularity = tallyv1.Granularity_GRANULARITY_DAY
	req.GroupBy = []string{"service", "region"}
	resp, err = e.ledger.GetCost(ctxT(t), connect.NewRequest(req))
	require.NoError(t, err)
	require.Equal(t, []string{"service_name", "region_id"}, resp.Msg.GetGroups())
	require.Equal(t, []row{
		{"2026-10-01", "EC2|eu-west-1", "2.2", "0", "2.2"},
		{"2026-10-01", "EC2|us-east-1", "1.1", "0", "1.1"},
		{"2026-10-02", "S3|us-east-1", "0.3", "0", "0.3"},
		{"2026-11-05", "EC2|us-east-1", "4", "4", "0"},
	}, rowsOf(resp.Msg))

	req = base()
	req.GroupByTags = []string{"team"}
	req.Tags = []*tallyv1.TagFilter{{Key: "team", Values: []string{"web", "data"}}}
	req.Finality = tallyv1.Finality_FINALITY_FINAL
	resp, err = e.ledger.GetCost(ctxT(t), connect.NewRequest(req))
	require.NoError(t, err)
	require.Equal(t, []string{"tag:team"}, resp.Msg.GetGroups())
	require.Equal(t, []row{{"", "data", "2.2", "0", "2.2"}, {"", "web", "1.1", "0", "1.1"}}, rowsOf(resp.Msg))

	totals, err := e.ledger.GetTotals(ctxT(t), connect.NewRequest(&tallyv1.GetTotalsRequest{TenantId: "acme",
		From: ts("2026-10-01T00:00:00Z"), To: ts("2026-12-01T00:00:00Z")}))
	require.NoError(t, err)
	require.Len(t, totals.Msg.GetTotals(), 1)
	tot := totals.Msg.GetTotals()[0]
	require.Equal(t, []string{"7.6", "4", "3.6"}, []string{tot.GetTotal().GetBilled(), tot.GetPreliminary().GetBilled(), tot.GetFinal().GetBilled()})
	require.Equal(t, []int64{4, 1, 3}, []int64{tot.GetTotal().GetLines(), tot.GetPreliminary().GetLines(), tot.GetFinal().GetLines()})
}

// TestLedgerBadInput: a bad request is refused with InvalidArgument naming
// the field (in the message and in a BadRequest detail), through Connect
// and gRPC alike, and the refusal is audited.
func TestLedgerBadInput(t *testing.T) {
	e := newLedgerEnv(t, true)
	valid := func() *tallyv1.GetCostRequest {
		return &tallyv1.GetCostRequest{TenantId: "acme", From: ts("2026-10-01T00:00:00Z"), To: ts("2026-11-01T00:00:00Z")}
	}
	for _, tc := range []struct {
		name, field, msg string
		edit             func(*tallyv1.GetCostRequest)
	}{
		{"no tenant", "tenant_id", "tenant_id is required", func(r *tallyv1.GetCostRequest) { r.TenantId = "" }},
		{"bad tenant", "tenant_id", "is not a valid tenant id", func(r *tallyv1.GetCostRequest) { r.TenantId = "Acme Corp" }},
		{"no from", "from", "from is required", func(r *tallyv1.GetCostRequest) { r.From = nil }},
		{"no to", "to", "to is required", func(r *tallyv1.GetCostRequest) { r.To = nil }},
		{"to before from", "to", "must be after from", func(r *tallyv1.GetCostRequest) { r.From, r.To = r.To, r.From }},
		{"empty range", "to", "must be after from", func(r *tallyv1.GetCostRequest) { r.To = r.From }},
		{"unknown group", "group_by[1]", `"colour" is not a dimension`, func(r *tallyv1.GetCostRequest) { r.GroupBy = []string{"provider", "colour"} }},
		{"group twice", "group_by[1]", "grouped by twice", func(r *tallyv1.GetCostRequest) { r.GroupBy = []string{"service", "service_name"} }},
		{"empty tag group", "group_by_tags[0]", "is required", func(r *tallyv1.GetCostRequest) { r.GroupByTags = []string{""} }},
		{"unknown filter", "dimensions[0].dimension", `"owner" is not a dimension`, func(r *tallyv1.GetCostRequest) {
			r.Dimensions = []*tallyv1.DimensionFilter{{Dimension: "owner", Values: []string{"x"}}}
		}},
		{"filter without values", "dimensions[0].values", "at least one value", func(r *tallyv1.GetCostRequest) {
			r.Dimensions = []*tallyv1.DimensionFilter{{Dimension: "provider"}}
		}},
		{"tag filter without key", "tags[0].key", "is required", func(r *tallyv1.GetCostRequest) {
			r.Tags = []*tallyv1.TagFilter{{Values: []string{"web"}}}
		}},
		{"bad granularity", "granularity", "is not a granularity", func(r *tallyv1.GetCostRequest) { r.Granularity = 42 }},
		{"bad finality", "finality", "is not a finality", func(r *tallyv1.GetCostRequest) { r.Finality = 7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := valid()
			tc.edit(req)
			_, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(req))
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
			var ce *connect.Error
			require.ErrorAs(t, err, &ce)
			require.True(t, strings.HasPrefix(ce.Message(), tc.field+" "), "message %q names %s first", ce.Message(), tc.field)
			require.Contains(t, ce.Message(), tc.msg)
			var fields []string
			for _, d := range ce.Details() {
				if v, derr := d.Value(); derr == nil {
					if br, ok := v.(*errdetails.BadRequest); ok {
						for _, fv := range br.GetFieldViolations() {
							fields = append(fields, fv.GetField())
						}
					}
				}
			}
			require.Equal(t, []string{tc.field}, fields)
		})
	}

	// GetTotals validates the same way, and gRPC clients get the same code.
	conn := grpcConn(t, e.env)
	var out tallyv1.GetTotalsResponse
	err := conn.Invoke(ctxT(t), "/tally.v1.LedgerService/GetTotals", &tallyv1.GetTotalsRequest{TenantId: "acme", From: ts("2026-10-01T00:00:00Z"), To: ts("2026-11-01T00:00:00Z"),
		Dimensions: []*tallyv1.DimensionFilter{{Dimension: "region", Values: []string{"us-east-1"}}, {Dimension: "region_id", Values: []string{"eu-west-1"}}}}, &out)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "dimensions[1].dimension")

	// Every refusal is audited on the system tenant, with its field.
	rej := e.rejections(t)
	require.Len(t, rej, 15)
	require.Equal(t, "/tally.v1.LedgerService/GetCost", rej[0].GetProcedure())
	require.Equal(t, "tenant_id", rej[0].GetField())
	require.Equal(t, "invalid_argument", rej[0].GetCode())
	require.Equal(t, "/tally.v1.LedgerService/GetTotals", rej[14].GetProcedure())
	require.Equal(t, "dimensions[1].dimension", rej[14].GetField())
	require.Equal(t, "acme", rej[14].GetClaimedTenant())
}

// TestGetCostMinSeqDeadline: a min_seq the ledger does not reach fails
// with DeadlineExceeded when the request's deadline passes, saying where
// the ledger stands; it is not audited (the request was not refused).
func TestGetCostMinSeqDeadline(t *testing.T) {
	e := newLedgerEnv(t, true)
	seq := e.appendLines(t, "acme", []costLine{{provider: "AWS", account: "1", month: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), day: 1, billed: "1"}})
	// The deadline as a Connect client sends it, without a client-side
	// deadline, so that the server's answer arrives.
	body := `{"tenantId":"acme","from":"2026-10-01T00:00:00Z","to":"2026-11-01T00:00:00Z","minSeq":"` + strconv.FormatUint(seq+1000, 10) + `"}`
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, e.url+"/tally.v1.LedgerService/GetCost", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Timeout-Ms", "300")
	began := time.Now()
	res, err := e.http1.Do(req)
	require.NoError(t, err)
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Less(t, time.Since(began), 5*time.Second)
	require.Contains(t, string(out), `"code":"deadline_exceeded"`)
	require.Contains(t, string(out), "had not folded stream sequence "+strconv.FormatUint(seq+1000, 10))
	require.Empty(t, e.rejections(t))

	// The Connect client's own deadline.
	ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	_, err = e.ledger.GetCost(ctx, connect.NewRequest(&tallyv1.GetCostRequest{TenantId: "acme",
		From: ts("2026-10-01T00:00:00Z"), To: ts("2026-11-01T00:00:00Z"), MinSeq: seq + 1000}))
	require.Equal(t, connect.CodeDeadlineExceeded, connect.CodeOf(err), "%v", err)

	// Reached: answered.
	resp, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(&tallyv1.GetCostRequest{TenantId: "acme",
		From: ts("2026-10-01T00:00:00Z"), To: ts("2026-11-01T00:00:00Z"), MinSeq: seq}))
	require.NoError(t, err)
	require.Len(t, resp.Msg.GetRows(), 1)
}

// TestGetTotalsNormalized: normalize_to converts at the recorded FX rate of
// each line's day (or the most recent before), and a missing rate fails the
// call with FailedPrecondition instead of a silent 1.0 or a partial total.
func TestGetTotalsNormalized(t *testing.T) {
	e := newLedgerEnv(t, true)
	oct := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	seq := e.appendLines(t, "acme", []costLine{
		{provider: "AWS", account: "111", service: "EC2", month: oct, day: 1, billed: "100.00"},
		{provider: "AWS", account: "222", service: "EC2", month: oct, day: 1, billed: "10.00", currency: "EUR"},
		{provider: "AWS", account: "222", service: "S3", month: oct, day: 2, billed: "20.00", currency: "EUR"},
	})
	req := func(seq uint64) *tallyv1.GetTotalsRequest {
		return &tallyv1.GetTotalsRequest{TenantId: "acme", From: ts("2026-10-01T00:00:00Z"), To: ts("2026-11-01T00:00:00Z"),
			NormalizeTo: "usd", MinSeq: seq}
	}
	_, err := e.ledger.GetTotals(ctxT(t), connect.NewRequest(req(seq)))
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "EUR")
	require.ErrorContains(t, err, "2026-10-01")

	_, err = e.connect.RecordFxRate(ctxT(t), connect.NewRequest(&tallyv1.RecordFxRateRequest{TenantId: "acme",
		FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD", Rate: "1.10", Date: "2026-10-01"}}))
	require.NoError(t, err)
	head, err := e.store.LastSeq(ctxT(t))
	require.NoError(t, err)
	resp, err := e.ledger.GetTotals(ctxT(t), connect.NewRequest(req(head)))
	require.NoError(t, err)
	// 100.00 USD + (10.00 + 20.00) EUR x 1.10 (Oct 2 has no rate: Oct 1's) = 133.00 USD.
	n := resp.Msg.GetNormalized()
	require.Equal(t, "USD", n.GetCurrency())
	require.Equal(t, "133", n.GetTotal().GetBilled())
	require.Equal(t, int64(3), n.GetTotal().GetLines())
	require.Len(t, resp.Msg.GetTotals(), 2, "the per-currency totals are still there")

	bad := req(head)
	bad.NormalizeTo = "dollars"
	_, err = e.ledger.GetTotals(ctxT(t), connect.NewRequest(bad))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	require.ErrorContains(t, err, "normalize_to")
}
