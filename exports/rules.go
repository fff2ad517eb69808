package exports

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// RuleVersion is an allocation rule version in force during a pack's period.
type RuleVersion struct {
	RuleID  string `json:"rule_id"`
	Version uint32 `json:"version"`
	// InForceFrom and InForceTo bound when the version applies: its effective_from, and the
	// earlier of its effective_to and the effective_to of a retirement that stopped it (nil:
	// open-ended). Among versions of one rule in force on a day, the highest applies.
	InForceFrom time.Time  `json:"in_force_from"`
	InForceTo   *time.Time `json:"in_force_to"`
	EventID     string     `json:"event_id"`
	TenantSeq   uint64     `json:"tenant_seq"`
	RecordedAt  time.Time  `json:"recorded_at"`
	Actor       string     `json:"actor"`
	// Rule is the allocation_rule_set event's body as protobuf JSON.
	Rule json.RawMessage `json:"rule"`
}

// RuleRetirement is an allocation_rule_retired event of a rule in the pack.
type RuleRetirement struct {
	RuleID      string    `json:"rule_id"`
	EffectiveTo time.Time `json:"effective_to"`
	// UpToVersion: the retirement stops the versions recorded before it, up to this one.
	UpToVersion uint32    `json:"up_to_version"`
	Reason      string    `json:"reason"`
	Approver    string    `json:"approver"`
	EventID     string    `json:"event_id"`
	TenantSeq   uint64    `json:"tenant_seq"`
	RecordedAt  time.Time `json:"recorded_at"`
	Actor       string    `json:"actor"`
}

// Rules is rules.json: the allocation rule versions in force during a period, derived from the
// log (allocation_rule_set and allocation_rule_retired events up to a chain position), so that
// it depends on no read model.
type Rules struct {
	Tenant        string           `json:"tenant"`
	Period        string           `json:"period"`
	AsOfTenantSeq uint64           `json:"as_of_tenant_seq"`
	Rules         []RuleVersion    `json:"rules"`
	Retirements   []RuleRetirement `json:"retirements"`
}

func actorName(a *tallyv1.Actor) string {
	if a == nil {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(a.GetKind().String(), "ACTOR_KIND_")) + ":" + a.GetId()
}

// RulesInForce reads tenant's rule events up to tenant sequence asOf (0: all) and returns the
// versions whose time in force overlaps [from, to), by rule id and version, with the
// retirements of those rules. The semantics are allocation's (projections/allocation.Book): a
// retirement stops every version of the rule recorded before it, from its effective_to on.
func RulesInForce(ctx context.Context, log *eventstore.Store, tenant, period string, asOf uint64) (*Rules, error) {
	from, err := ParseMonth("period", period)
	if err != nil {
		return nil, err
	}
	to := from.AddDate(0, 1, 0)
	if err := eventstore.ValidateTenant(tenant); err != nil {
		return nil, fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	type version struct {
		RuleVersion
		until *time.Time
	}
	var versions []*version
	var retirements []RuleRetirement
	err = log.Read(ctx, eventstore.ReadFilter{Tenant: tenant, Kinds: []string{"allocation_rule_set", "allocation_rule_retired"}},
		func(ev eventstore.Event) error {
			env := ev.Envelope
			if asOf > 0 && env.GetTenantSeq() > asOf {
				return nil
			}
			switch b := env.GetBody().(type) {
			case *tallyv1.Envelope_AllocationRuleSet:
				r := b.AllocationRuleSet
				body, err := canonicalJSON(r)
				if err != nil {
					return err
				}
				v := &version{RuleVersion: RuleVersion{RuleID: r.GetRuleId(), Version: r.GetVersion(),
					InForceFrom: r.GetEffectiveFrom().AsTime().UTC(), EventID: env.GetEventId(), TenantSeq: env.GetTenantSeq(),
					RecordedAt: env.GetRecordedAt().AsTime().UTC(), Actor: actorName(env.GetActor()), Rule: body}}
				if r.EffectiveTo != nil {
					t := r.GetEffectiveTo().AsTime().UTC()
					v.until = &t
				}
				versions = append(versions, v)
			case *tallyv1.Envelope_AllocationRuleRetired:
				r := b.AllocationRuleRetired
				end := r.GetEffectiveTo().AsTime().UTC()
				ret := RuleRetirement{RuleID: r.GetRuleId(), EffectiveTo: end, Reason: r.GetReason(), Approver: actorName(r.GetApprover()),
					EventID: env.GetEventId(), TenantSeq: env.GetTenantSeq(), RecordedAt: env.GetRecordedAt().AsTime().UTC(),
					Actor: actorName(env.GetActor())}
				for _, v := range versions {
					if v.RuleID != r.GetRuleId() {
						continue
					}
					ret.UpToVersion = max(ret.UpToVersion, v.Version)
					if v.until == nil || end.Before(*v.until) {
						v.until = &end
					}
				}
				retirements = append(retirements, ret)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("exports: read allocation rules: %w", err)
	}
	out := &Rules{Tenant: tenant, Period: period, AsOfTenantSeq: asOf, Rules: []RuleVersion{}, Retirements: []RuleRetirement{}}
	ids := map[string]bool{}
	for _, v := range versions {
		if !v.InForceFrom.Before(to) || (v.until != nil && !v.until.After(from)) {
			continue
		}
		v.InForceTo = v.until
		out.Rules = append(out.Rules, v.RuleVersion)
		ids[v.RuleID] = true
	}
	slices.SortStableFunc(out.Rules, func(a, b RuleVersion) int {
		if c := strings.Compare(a.RuleID, b.RuleID); c != 0 {
			return c
		}
		return int(a.Version) - int(b.Version)
	})
	for _, r := range retirements {
		if ids[r.RuleID] {
			out.Retirements = append(out.Retirements, r)
		}
	}
	return out, nil
}

// canonicalJSON is m as protobuf JSON with keys sorted and no insignificant white space
// (protojson's own output varies its spacing on purpose).
func canonicalJSON(m proto.Message) (json.RawMessage, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// writeJSON writes v indented, keys in struct order, no HTML escaping.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
