package allocation_test

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/ingest"
)

const samplePath = "../../testdata/focus/FOCUS-1.0/focus_sample.csv"

// sampleRules are the rules TestSampleCoverage allocates the real FOCUS 1.0 sample with:
// tag environment=dev to "dev" first, then AWS EC2 to "compute", then Azure storage 60/40 to
// "platform" and "data".
func sampleRules(tenant string) []*tallyv1.Envelope {
	dev := rule("dev", 1, 10, 1, direct, "dev", "")
	dev.Match.Tags = []*tallyv1.KeyValue{{Key: "environment", Value: "dev"}}
	ec2 := rule("ec2", 1, 20, 1, direct, "compute", "")
	ec2.Match.Provider, ec2.Match.ServiceName = "AWS", "Amazon Elastic Compute Cloud"
	storage := rule("azure-storage", 1, 30, 1, pct, "platform", "60", "data", "40")
	storage.Match.Provider, storage.Match.ServiceName = "Microsoft", "Storage Accounts"
	return []*tallyv1.Envelope{ruleSet(tenant, dev), ruleSet(tenant, ec2), ruleSet(tenant, storage)}
}

// sampleExpect classifies the sample's rows as sampleRules do, reading the CSV with
// encoding/csv and encoding/json only (not the FOCUS reader, not the projection), and sums
// EffectiveCost exactly: per rule ("dev", "ec2", "azure-storage") and per unallocated
// service. The same figures, from Python's csv, json and decimal modules:
//
//	python3 - <<'EOF'
//	import csv, decimal, json, collections
//	acc, un = collections.defaultdict(decimal.Decimal), collections.defaultdict(decimal.Decimal)
//	for r in csv.DictReader(open('testdata/focus/FOCUS-1.0/focus_sample.csv', newline='', encoding='utf-8-sig')):
//	    c = decimal.Decimal(r['EffectiveCost'])
//	    t = json.loads(r['Tags']) if r['Tags'] not in ('', 'NULL') else {}
//	    if t.get('environment') == 'dev': acc['dev'] += c
//	    elif (r['ProviderName'], r['ServiceName']) == ('AWS', 'Amazon Elastic Compute Cloud'): acc['ec2'] += c
//	    elif (r['ProviderName'], r['ServiceName']) == ('Microsoft', 'Storage Accounts'): acc['azure-storage'] += c
//	    else: un[r['ServiceName']] += c
//	print(acc, sum(un.values()), sorted(un.items(), key=lambda kv: -kv[1])[:3])
//	EOF
//
// gives dev 16, ec2 -3 (an untagged EC2 credit), azure-storage 0.0008829155, unallocated
// 1.97563127036 over 26 services, the largest Azure Kubernetes Service 1.58088, Azure DB for
// MySQL 0.37096774194 and Virtual Machines 0.17568072; the total is 14.97651418586, and
// coverage 13.0008829155 / 14.97651418586 = 86.8085% (4 places, half up).
func sampleExpect(t *testing.T) (rules, unallocated, unallocatedByProvider map[string]decimal.Decimal) {
	t.Helper()
	f, err := os.Open(samplePath)
	require.NoError(t, err)
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	rules, unallocated, unallocatedByProvider = map[string]decimal.Decimal{}, map[string]decimal.Decimal{}, map[string]decimal.Decimal{}
	for _, rec := range records[1:] {
		cost := decimal.RequireFromString(rec[col["EffectiveCost"]])
		tags := map[string]string{}
		if s := rec[col["Tags"]]; s != "" && s != "NULL" {
			require.NoError(t, json.Unmarshal([]byte(s), &tags))
		}
		provider, service := rec[col["ProviderName"]], rec[col["ServiceName"]]
		switch {
		case tags["environment"] == "dev":
			rules["dev"] = rules["dev"].Add(cost)
		case provider == "AWS" && service == "Amazon Elastic Compute Cloud":
			rules["ec2"] = rules["ec2"].Add(cost)
		case provider == "Microsoft" && service == "Storage Accounts":
			rules["azure-storage"] = rules["azure-storage"].Add(cost)
		default:
			unallocated[service] = unallocated[service].Add(cost)
			unallocatedByProvider[provider] = unallocatedByProvider[provider].Add(cost)
		}
	}
	return rules, unallocated, unallocatedByProvider
}

func TestSampleCoverage(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	appendAll(t, e.store, tenant, sampleRules(tenant)...)
	r, err := focus.Open(samplePath)
	require.NoError(t, err)
	defer r.Close()
	_, err = ingest.Ingest(ctxT(t), e.store, e.pool, tenant, r, ingest.Options{})
	require.NoError(t, err)
	catchUp(t, e.store, e.pool, 100)

	wantRules, wantUn, wantUnByProvider := sampleExpect(t)
	// The independent figures are the ones written in sampleExpect's comment.
	require.Equal(t, "16", wantRules["dev"].String())
	require.Equal(t, "-3", wantRules["ec2"].String())
	require.Equal(t, "0.0008829155", wantRules["azure-storage"].String())
	wantUnTotal := decimal.Zero
	for _, v := range wantUn {
		wantUnTotal = wantUnTotal.Add(v)
	}
	require.Equal(t, "1.97563127036", wantUnTotal.String())
	require.Len(t, wantUn, 26)
	wantAlloc := wantRules["dev"].Add(wantRules["ec2"]).Add(wantRules["azure-storage"])

	q := allocation.NewQueries(e.pool)
	cov, err := q.Coverage(ctxT(t), tenant, "2024-09")
	require.NoError(t, err)
	require.Len(t, cov.Currencies, 1)
	c := cov.Currencies[0]
	require.Equal(t, "USD", c.Currency)
	require.True(t, c.Allocated.Equal(wantAlloc), "allocated %s, want %s", c.Allocated, wantAlloc)
	require.True(t, c.Unallocated.Equal(wantUnTotal), "unallocated %s, want %s", c.Unallocated, wantUnTotal)
	require.Equal(t, "14.97651418586", c.Total.String())
	require.True(t, c.Defined)
	require.Equal(t, "86.8085", c.Percent.String())

	rows, err := q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	got := map[string]decimal.Decimal{}
	for _, r := range rows {
		got[r.CostCenter] = r.Amount
	}
	require.True(t, got["dev"].Equal(wantRules["dev"]))
	require.True(t, got["compute"].Equal(wantRules["ec2"]))
	// The 60/40 split is per day, each day's pool split exactly: the parts sum to the pool.
	require.True(t, got["platform"].Add(got["data"]).Equal(wantRules["azure-storage"]))
	require.True(t, got["platform"].IsPositive() && got["data"].IsPositive())

	un, err := q.Unallocated(ctxT(t), tenant, sep(1), sep(31), 3)
	require.NoError(t, err)
	require.Len(t, un, 1)
	var top []string
	for _, s := range un[0].Top {
		top = append(top, s.Service+"="+s.Amount.String())
	}
	require.Equal(t, []string{
		"Azure Kubernetes Service=" + wantUn["Azure Kubernetes Service"].String(),
		"Azure DB for MySQL=" + wantUn["Azure DB for MySQL"].String(),
		"Virtual Machines=" + wantUn["Virtual Machines"].String(),
	}, top)
	require.Equal(t, "Azure Kubernetes Service=1.58088", top[0])
	require.Equal(t, 23, un[0].OtherServices)
	require.True(t, un[0].Top[0].Amount.Add(un[0].Top[1].Amount).Add(un[0].Top[2].Amount).Add(un[0].Other).Equal(wantUnTotal))

	// A dry run of a catch-all Azure rule moves exactly the Azure cost still unallocated, and
	// writes nothing.
	before := dump(t, e.pool, "allocation")
	azure := rule("azure", 1, 40, 1, direct, "azure", "")
	azure.Match.Provider = "Microsoft"
	moves, err := q.DryRun(ctxT(t), tenant, "2024-09", allocation.Change{Set: azure})
	require.NoError(t, err)
	wantAzure := wantUnByProvider["Microsoft"]
	require.True(t, wantAzure.IsPositive())
	byCC := map[string]allocation.Movement{}
	for _, m := range moves {
		byCC[m.CostCenter] = m
	}
	require.True(t, byCC["azure"].Delta.Equal(wantAzure), "azure +%s, want %s", byCC["azure"].Delta, wantAzure)
	require.True(t, byCC[""].Delta.Equal(wantAzure.Neg()))
	require.True(t, byCC[""].Before.Equal(wantUnTotal))
	require.True(t, byCC["dev"].Delta.IsZero())
	require.Equal(t, before, dump(t, e.pool, "allocation"), "a dry run writes nothing")
}
