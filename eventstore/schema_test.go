package eventstore_test

// Schema fixture tests: stored events must stay readable forever.
//
// testdata/fixtures/v<N>/<kind>.binpb holds one fully populated envelope of
// each kind as written under schema version N (eventstore/testdata/fixtures/gen
// wrote them once; they are never regenerated). These tests decode them with
// the current schema and compare every field with values written out below.
// A schema change that removes, renumbers or retypes a field, or renames a
// kind, fails here. See docs/events.md, "Schema evolution".

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

const fixturesDir = "testdata/fixtures"

// schemaFixtures is, per schema version, the expected decoding of each
// fixture. Add a version here when a fixture directory is added; never edit
// an existing version's values to make a test pass.
var schemaFixtures = map[uint32]map[string]*tallyv1.Envelope{
	1: v1Fixtures(),
}

func TestSchemaFixturesDecode(t *testing.T) {
	for version, fixtures := range schemaFixtures {
		for _, kind := range eventstore.Kinds() {
			want, ok := fixtures[kind]
			if !ok {
				continue // a kind added after this version
			}
			t.Run(fmt.Sprintf("v%d/%s", version, kind), func(t *testing.T) {
				path := filepath.Join(fixturesDir, fmt.Sprintf("v%d", version), kind+".binpb")
				raw, err := os.ReadFile(path)
				require.NoError(t, err, "fixture of a past schema version is missing")
				got := &tallyv1.Envelope{}
				require.NoError(t, proto.Unmarshal(raw, got), "stored bytes no longer decode")

				require.Equal(t, kind, eventstore.Kind(got))
				require.Empty(t, unknownFields(got.ProtoReflect(), "Envelope"),
					"fields of a stored event are unknown to the current schema: removed, renumbered or retyped?")

				// The fields every reader relies on, spelled out.
				require.Equal(t, want.GetEventId(), got.GetEventId())
				require.Equal(t, want.GetTenantId(), got.GetTenantId())
				require.Equal(t, want.GetActor().GetKind(), got.GetActor().GetKind())
				require.Equal(t, want.GetActor().GetId(), got.GetActor().GetId())
				require.Equal(t, version, got.GetSchemaVersion())
				require.Equal(t, want.GetIdempotencyKey(), got.GetIdempotencyKey())
				// Deterministic ids must never change: a retry of an old fact
				// would otherwise get a new id and be appended twice.
				require.Equal(t, got.GetEventId(), eventstore.DeterministicID(got.GetTenantId(), got.GetIdempotencyKey()))

				// Then every field.
				requireProtoEqual(t, want, got)

				// The JSON twin still reads to the same event (JSON names are
				// part of the API: buf breaking checks WIRE_JSON).
				js, err := os.ReadFile(strings.TrimSuffix(path, ".binpb") + ".json")
				require.NoError(t, err)
				fromJSON := &tallyv1.Envelope{}
				require.NoError(t, protojson.Unmarshal(js, fromJSON))
				requireProtoEqual(t, got, fromJSON)
			})
		}
	}
}

// Adding a body kind without a fixture, or leaving a fixture no kind or
// expectation matches, fails.
func TestSchemaFixturesCoverEveryKind(t *testing.T) {
	for _, kind := range eventstore.Kinds() {
		found := false
		for version, fixtures := range schemaFixtures {
			_, err := os.Stat(filepath.Join(fixturesDir, fmt.Sprintf("v%d", version), kind+".binpb"))
			_, expected := fixtures[kind]
			if err == nil && expected {
				found = true
			}
		}
		require.True(t, found, "kind %q has no fixture with expected values: run go run eventstore/testdata/fixtures/gen/main.go and write its values into schemaFixtures", kind)
	}
	for version, fixtures := range schemaFixtures {
		dir := filepath.Join(fixturesDir, fmt.Sprintf("v%d", version))
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		bin := 0
		for _, e := range entries {
			name, ext, _ := strings.Cut(e.Name(), ".")
			require.Contains(t, []string{"binpb", "json"}, ext, "unexpected file %s in %s", e.Name(), dir)
			require.True(t, eventstore.IsKind(name), "%s/%s: no such kind in the current schema (renamed or removed?)", dir, e.Name())
			require.Contains(t, fixtures, name, "%s/%s has no expected values in schemaFixtures", dir, e.Name())
			if ext == "binpb" {
				bin++
			}
		}
		require.Len(t, fixtures, bin, "every expectation of v%d needs its fixture", version)
	}
}

// An event written by a newer schema, with fields this one does not know,
// still decodes, and re-encoding it keeps those fields: a reader that
// re-emits or forwards an event loses nothing.
func TestSchemaUnknownFieldsSurvive(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixturesDir, "unknown", "fields.binpb"))
	require.NoError(t, err)
	check := func(t *testing.T, b []byte) {
		env := &tallyv1.Envelope{}
		require.NoError(t, proto.Unmarshal(b, env))
		require.Equal(t, "cost_line_recorded", eventstore.Kind(env))
		require.Equal(t, "e2d72686-942c-57dc-b566-27a806dac90a", env.GetEventId())
		require.Equal(t, "acme-fixtures", env.GetTenantId())
		line := env.GetCostLineRecorded().GetLine()
		require.Equal(t, "1234.5678", line.GetBilledCost())
		require.Equal(t, "12345678901234567890.123456789", line.GetListCost())
		require.Equal(t, "EUR", line.GetBillingCurrency())

		requireUnknown(t, env.ProtoReflect().GetUnknown(), 536870911, protowire.BytesType, []byte("added by a later schema"))
		requireUnknown(t, env.GetCostLineRecorded().ProtoReflect().GetUnknown(), 536870910, protowire.Fixed64Type, uint64(0x0123456789abcdef))
		requireUnknown(t, line.ProtoReflect().GetUnknown(), 536870909, protowire.VarintType, uint64(42))
	}
	check(t, raw)

	env := &tallyv1.Envelope{}
	require.NoError(t, proto.Unmarshal(raw, env))
	again, err := proto.Marshal(env)
	require.NoError(t, err)
	check(t, again)
}

// An event of a kind this schema does not know decodes with no body: a
// reader can see its id and tenant and skip it, and re-encoding keeps it.
func TestSchemaUnknownKindDecodes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixturesDir, "unknown", "kind.binpb"))
	require.NoError(t, err)
	env := &tallyv1.Envelope{}
	require.NoError(t, proto.Unmarshal(raw, env))
	require.Equal(t, "", eventstore.Kind(env))
	require.Equal(t, "9c444e4c-d08a-5e55-a347-170c99e03ac9", env.GetEventId())
	require.Equal(t, "acme-fixtures", env.GetTenantId())
	require.Equal(t, uint64(424242), env.GetTenantSeq())

	body := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "a body from the future")
	requireUnknown(t, env.ProtoReflect().GetUnknown(), 99, protowire.BytesType, body)
	again, err := proto.Marshal(env)
	require.NoError(t, err)
	back := &tallyv1.Envelope{}
	require.NoError(t, proto.Unmarshal(again, back))
	requireUnknown(t, back.ProtoReflect().GetUnknown(), 99, protowire.BytesType, body)
}

// The chain rule as docs/events.md tells an auditor to check it by hand:
// sha256sum over the 32 prev_hash bytes followed by the stored envelope bytes.
func TestSchemaChainHashByHand(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixturesDir, "v1", "cost_line_recorded.binpb"))
	require.NoError(t, err)
	env := &tallyv1.Envelope{}
	require.NoError(t, proto.Unmarshal(raw, env))
	var prev eventstore.Hash
	copy(prev[:], env.GetPrevHash())
	got := eventstore.ChainHash(prev, raw)
	// { printf '000102...1f' | xxd -r -p; cat v1/cost_line_recorded.binpb; } | sha256sum
	require.Equal(t, "9594e68316b4e9eff656794ecd50258c1823f3af74861699c35a319eeb266b11", fmt.Sprintf("%x", got))
}

func requireProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		text := prototext.MarshalOptions{Multiline: true}
		require.Equal(t, text.Format(want), text.Format(got))
		require.Fail(t, "messages differ (in unknown fields?)")
	}
}

// requireUnknown finds field num in raw unknown-field bytes and checks its
// value: []byte for BytesType, uint64 for varint and fixed64.
func requireUnknown(t *testing.T, raw []byte, num protowire.Number, typ protowire.Type, want any) {
	t.Helper()
	for len(raw) > 0 {
		n, ty, l := protowire.ConsumeTag(raw)
		require.GreaterOrEqual(t, l, 0, "bad unknown-field bytes")
		raw = raw[l:]
		if n != num {
			l = protowire.ConsumeFieldValue(n, ty, raw)
			require.GreaterOrEqual(t, l, 0)
			raw = raw[l:]
			continue
		}
		require.Equal(t, typ, ty, "unknown field %d: wire type", num)
		var got any
		switch ty {
		case protowire.BytesType:
			v, l := protowire.ConsumeBytes(raw)
			require.GreaterOrEqual(t, l, 0)
			got = bytes.Clone(v)
		case protowire.VarintType:
			v, l := protowire.ConsumeVarint(raw)
			require.GreaterOrEqual(t, l, 0)
			got = v
		case protowire.Fixed64Type:
			v, l := protowire.ConsumeFixed64(raw)
			require.GreaterOrEqual(t, l, 0)
			got = v
		default:
			require.Failf(t, "unexpected wire type", "%v", ty)
		}
		require.Equal(t, want, got, "unknown field %d", num)
		return
	}
	require.Failf(t, "unknown field lost", "field %d is not among the unknown fields", num)
}

// unknownFields lists the messages (by path) holding fields the current
// schema does not know.
func unknownFields(m protoreflect.Message, path string) []string {
	var out []string
	if u := m.GetUnknown(); len(u) > 0 {
		var nums []protowire.Number
		for len(u) > 0 {
			n, typ, l := protowire.ConsumeTag(u)
			if l < 0 {
				return append(out, path+": malformed")
			}
			v := protowire.ConsumeFieldValue(n, typ, u[l:])
			if v < 0 {
				return append(out, path+": malformed")
			}
			nums = append(nums, n)
			u = u[l+v:]
		}
		out = append(out, fmt.Sprintf("%s: field numbers %v", path, nums))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				out = append(out, unknownFields(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))...)
			}
		case fd.Message() != nil && !fd.IsMap():
			out = append(out, unknownFields(v.Message(), p)...)
		}
		return true
	})
	return out
}

// ---- Expected values of the v1 fixtures, written out. ----

func at(s string) *timestamppb.Timestamp {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(tm)
}

func v1Envelope(tenant, eventID, key string, actor *tallyv1.Actor) *tallyv1.Envelope {
	return &tallyv1.Envelope{
		EventId:    eventID,
		TenantId:   tenant,
		OccurredAt: at("2026-02-14T00:00:00.123456789Z"),
		RecordedAt: at("2026-03-14T15:09:26.535897932Z"),
		Actor:      actor,
		Source: &tallyv1.Source{
			Adapter: "focus-file",
			File:    "acme-2026-02.csv.gz",
			Line:    4242,
			BatchId: "batch-2026-03-14-0001",
		},
		CorrelationId:  "corr-7f3a9c",
		CausationId:    "cause-19c2e4",
		SchemaVersion:  1,
		IdempotencyKey: key,
		TenantSeq:      424242,
		PrevHash: []byte{
			0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
			0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
		},
	}
}

func v1Scope() *tallyv1.BillScope {
	return &tallyv1.BillScope{
		Provider:           "AWS",
		BillingAccountId:   "123456789012",
		BillingPeriodStart: at("2026-02-01T00:00:00Z"),
		BillingPeriodEnd:   at("2026-03-01T00:00:00Z"),
	}
}

func v1Line(billed, effective string) *tallyv1.CostLine {
	return &tallyv1.CostLine{
		LineKey:                    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Scope:                      v1Scope(),
		BillingAccountName:         "Acme Payer",
		SubAccountId:               "210987654321",
		SubAccountName:             "acme-prod",
		PublisherName:              "Amazon Web Services, Inc.",
		InvoiceIssuerName:          "AWS EMEA SARL",
		HostProviderName:           "AWS Host",
		ChargePeriodStart:          at("2026-02-14T00:00:00Z"),
		ChargePeriodEnd:            at("2026-02-14T01:00:00Z"),
		ChargeCategory:             "Usage",
		ChargeClass:                "Correction",
		ChargeDescription:          "$0.0416 per On Demand Linux t3.medium Instance Hour",
		ChargeFrequency:            "Usage-Based",
		ServiceName:                "Amazon Elastic Compute Cloud",
		ServiceCategory:            "Compute",
		ServiceSubcategory:         "Virtual Machines",
		RegionId:                   "eu-west-1",
		RegionName:                 "Europe (Ireland)",
		AvailabilityZone:           "eu-west-1b",
		ResourceId:                 "arn:aws:ec2:eu-west-1:210987654321:instance/i-0abc123def4567890",
		ResourceName:               "web-1",
		ResourceType:               "Virtual Machine",
		SkuId:                      "ABCD1234EFGH5678",
		SkuPriceId:                 "ABCD1234EFGH5678.JRTCKXETXF.6YS6EN2CT7",
		SkuMeter:                   "BoxUsage:t3.medium",
		PricingCategory:            "Standard",
		PricingUnit:                "Hours",
		PricingQuantity:            "1.0000",
		ConsumedQuantity:           "0.99999999",
		ConsumedUnit:               "Hours",
		BilledCost:                 billed,
		EffectiveCost:              effective,
		ListCost:                   "12345678901234567890.123456789",
		ContractedCost:             "-0.00000015",
		BillingCurrency:            "EUR",
		CommitmentDiscountId:       "arn:aws:savingsplans::210987654321:savingsplan/sp-0fixture",
		CommitmentDiscountCategory: "Spend",
		CommitmentDiscountType:     "Compute Savings Plan",
		CommitmentDiscountStatus:   "Used",
		CapacityReservationId:      "cr-0fixture1234",
		CapacityReservationStatus:  "Used",
		Tags: []*tallyv1.KeyValue{
			{Key: "cost-center", Value: "cc-4711"},
			{Key: "env", Value: "prod"},
		},
		Extensions: []*tallyv1.KeyValue{
			{Key: "x_Operation", Value: "RunInstances"},
			{Key: "x_UsageType", Value: "EU-BoxUsage:t3.medium"},
		},
		FocusVersion: "1.2",
		RowCount:     3,
	}
}

func v1Match() *tallyv1.AllocationMatch {
	return &tallyv1.AllocationMatch{
		Provider:          "AWS",
		BillingAccountId:  "123456789012",
		ServiceName:       "Amazon Elastic Kubernetes Service",
		RegionId:          "eu-west-1",
		ResourceIdPattern: "arn:aws:eks:*:cluster/prod-?",
		Tags:              []*tallyv1.KeyValue{{Key: "team", Value: "platform"}},
	}
}

func v1Fixtures() map[string]*tallyv1.Envelope {
	service := func(id string) *tallyv1.Actor {
		return &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: id}
	}
	user := func(id string) *tallyv1.Actor {
		return &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: id}
	}
	system := func(id string) *tallyv1.Actor {
		return &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SYSTEM, Id: id}
	}
	const tenant = "acme-fixtures"
	out := map[string]*tallyv1.Envelope{}

	e := v1Envelope(tenant, "5bac1f20-8918-5b6d-8d95-010ab6f3204a", "fixture:v1:cost_line_recorded", service("focus-ingest"))
	e.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{
		Line:      v1Line("1234.5678", "1111.1111"),
		PostClose: true,
	}}
	out["cost_line_recorded"] = e

	e = v1Envelope(tenant, "90154491-404b-591c-8cda-0959e9e64121", "fixture:v1:cost_line_restated", service("focus-ingest"))
	e.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: &tallyv1.CostLineRestated{
		Line: v1Line("1300.0000", "1170.5000"),
		Delta: &tallyv1.CostDelta{
			BilledCost:       "65.4322",
			EffectiveCost:    "59.3889",
			ListCost:         "0.000000001",
			ContractedCost:   "-0.00000001",
			ConsumedQuantity: "0.00000001",
			PricingQuantity:  "-1.5",
			BillingCurrency:  "EUR",
		},
		PreviousEventId: "5bac1f20-8918-5b6d-8d95-010ab6f3204a",
		PostClose:       true,
	}}
	out["cost_line_restated"] = e

	e = v1Envelope(tenant, "b85293b3-022c-5fbd-b5b8-460d53b7c136", "fixture:v1:cost_line_retracted", service("focus-ingest"))
	e.Body = &tallyv1.Envelope_CostLineRetracted{CostLineRetracted: &tallyv1.CostLineRetracted{
		Scope:   v1Scope(),
		LineKey: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Delta: &tallyv1.CostDelta{
			BilledCost:       "-1300.0000",
			EffectiveCost:    "-1170.5000",
			ListCost:         "-12345678901234567890.123456789",
			ContractedCost:   "0.00000015",
			ConsumedQuantity: "-0.99999999",
			PricingQuantity:  "-1.0000",
			BillingCurrency:  "EUR",
		},
		PreviousEventId: "90154491-404b-591c-8cda-0959e9e64121",
		PostClose:       true,
	}}
	out["cost_line_retracted"] = e

	e = v1Envelope(tenant, "7d1969e0-f4ef-53aa-a4e1-1e8b764f02a5", "fixture:v1:billing_period_finalized", service("focus-ingest"))
	e.Body = &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{
		Scope:     v1Scope(),
		LineCount: 987654,
		BilledTotals: []*tallyv1.CurrencyAmount{
			{Currency: "EUR", Amount: "98765.4321"},
			{Currency: "USD", Amount: "0.01"},
		},
	}}
	out["billing_period_finalized"] = e

	e = v1Envelope(tenant, "4ace0cc6-b8f7-5a84-9016-900eb86e9019", "fixture:v1:usage_recorded", service("usage-agent"))
	e.Body = &tallyv1.Envelope_UsageRecorded{UsageRecorded: &tallyv1.UsageRecorded{
		Provider:         "AWS",
		BillingAccountId: "123456789012",
		ResourceId:       "i-0abc123def4567890",
		Metric:           "cpu_utilization",
		Quantity:         "42.4242",
		Unit:             "Percent",
		PeriodStart:      at("2026-02-14T00:00:00Z"),
		PeriodEnd:        at("2026-02-14T00:05:00Z"),
		Attributes: []*tallyv1.KeyValue{
			{Key: "host", Value: "web-1"},
			{Key: "pool", Value: "blue"},
		},
	}}
	out["usage_recorded"] = e

	e = v1Envelope(tenant, "a362f78f-6316-5a5e-8fb8-926f31ad229a", "fixture:v1:remediation_executed", service("cloud-custodian"))
	e.Body = &tallyv1.Envelope_RemediationExecuted{RemediationExecuted: &tallyv1.RemediationExecuted{
		ActionId:             "act-2026-0314-001",
		Provider:             "AWS",
		BillingAccountId:     "123456789012",
		ResourceId:           "i-0abc123def4567890",
		Kind:                 tallyv1.RemediationKind_REMEDIATION_KIND_RESIZE,
		ExpectedDailySavings: "12.3456",
		Currency:             "EUR",
		ExecutedAt:           at("2026-02-14T09:30:00Z"),
		Tool:                 "cloud-custodian",
		BaselineDays:         14,
		GapDays:              2,
		MeasurementDays:      28,
		Description:          "t3.large -> t3.medium",
	}}
	out["remediation_executed"] = e

	e = v1Envelope(tenant, "3b354670-f764-57e3-8e04-d58077973854", "fixture:v1:resource_tagged", service("cmdb-sync"))
	e.Body = &tallyv1.Envelope_ResourceTagged{ResourceTagged: &tallyv1.ResourceTagged{
		Provider:   "AWS",
		ResourceId: "i-0abc123def4567890",
		Tags: []*tallyv1.KeyValue{
			{Key: "cost-center", Value: "cc-4711"},
			{Key: "owner", Value: "team-payments"},
		},
		EffectiveFrom: at("2026-02-01T00:00:00Z"),
	}}
	out["resource_tagged"] = e

	e = v1Envelope(tenant, "74ef5787-7c6d-5ec4-b456-89ba910126fc", "fixture:v1:allocation_rule_set", user("ada@example.com"))
	e.Body = &tallyv1.Envelope_AllocationRuleSet{AllocationRuleSet: &tallyv1.AllocationRuleSet{
		RuleId:        "rule-shared-k8s",
		Version:       3,
		Priority:      -5,
		EffectiveFrom: at("2026-02-01T00:00:00Z"),
		EffectiveTo:   at("2027-01-01T00:00:00Z"),
		Match:         v1Match(),
		Split:         tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE,
		Shares: []*tallyv1.CostCenterShare{
			{CostCenter: "cc-4711", Value: "62.5"},
			{CostCenter: "cc-0815", Value: "37.5"},
		},
		RemainderCostCenter: "cc-0000",
		Description:         "shared EKS cluster, split by namespace requests",
		Approver:            user("grace@example.com"),
	}}
	out["allocation_rule_set"] = e

	e = v1Envelope(tenant, "a962f463-4856-5b24-a2c3-512e4067cf86", "fixture:v1:allocation_rule_retired", user("ada@example.com"))
	e.Body = &tallyv1.Envelope_AllocationRuleRetired{AllocationRuleRetired: &tallyv1.AllocationRuleRetired{
		RuleId:      "rule-shared-k8s",
		EffectiveTo: at("2026-06-01T00:00:00Z"),
		Reason:      "cluster decommissioned",
	}}
	out["allocation_rule_retired"] = e

	e = v1Envelope(tenant, "11caf6ac-9275-5825-9af7-6b9361036ca6", "fixture:v1:invoice_recorded", user("ada@example.com"))
	e.Body = &tallyv1.Envelope_InvoiceRecorded{InvoiceRecorded: &tallyv1.InvoiceRecorded{
		InvoiceId: "EUINGB26-123456",
		Scope:     v1Scope(),
		Amount:    "98765.4321",
		Currency:  "EUR",
		IssuedAt:  at("2026-03-02T06:00:00Z"),
	}}
	out["invoice_recorded"] = e

	e = v1Envelope(tenant, "5e3557f7-6bff-5bbf-bb0b-1f4b24437e5f", "fixture:v1:period_closed", user("ada@example.com"))
	e.Body = &tallyv1.Envelope_PeriodClosed{PeriodClosed: &tallyv1.PeriodClosed{
		Period:        "2026-02",
		Provider:      "AWS",
		Approver:      user("grace@example.com"),
		PackageSha256: "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
		ChainHead:     "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
		ChainHeadSeq:  424241,
		Note:          "February close, invoice variance 0.02%",
	}}
	out["period_closed"] = e

	e = v1Envelope(tenant, "a4f3e6ab-fe20-5fcd-94dd-6302dade5590", "fixture:v1:fx_rate_recorded", system("fx-import"))
	e.Body = &tallyv1.Envelope_FxRateRecorded{FxRateRecorded: &tallyv1.FxRateRecorded{
		FromCurrency: "EUR",
		ToCurrency:   "USD",
		Rate:         "1.08456789",
		Date:         "2026-02-27",
		Source:       "ECB",
	}}
	out["fx_rate_recorded"] = e

	e = v1Envelope(tenant, "da8d96f2-1fcd-5570-ba4d-5c07493c6a0a", "fixture:v1:budget_set", user("ada@example.com"))
	e.Body = &tallyv1.Envelope_BudgetSet{BudgetSet: &tallyv1.BudgetSet{
		BudgetId:        "budget-platform-2026",
		Name:            "Platform EKS",
		Scope:           v1Match(),
		CostCenter:      "cc-4711",
		Amount:          "50000.00",
		Currency:        "EUR",
		AlertThresholds: []string{"80", "100", "120.5"},
		EffectiveFrom:   at("2026-01-01T00:00:00Z"),
	}}
	out["budget_set"] = e

	e = v1Envelope("_system", "e9f805e9-05be-59b0-bc75-0313dd1cec4f", "fixture:v1:request_rejected", system("gateway"))
	e.Body = &tallyv1.Envelope_RequestRejected{RequestRejected: &tallyv1.RequestRejected{
		Procedure:     "/tally.v1.IngestService/PushUsage",
		Code:          "invalid_argument",
		Reason:        `tenant_id: "Acme Prod!" is not a valid tenant id`,
		Field:         "tenant_id",
		ClaimedTenant: "Acme Prod!",
		RequestId:     "req-01hzx9k2m4",
		RemoteAddr:    "203.0.113.7:51234",
	}}
	out["request_rejected"] = e

	return out
}
