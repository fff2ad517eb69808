package allocation

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// ruleKey names one version of a rule.
type ruleKey struct {
	id      string
	version uint32
}

// ruleMeta is the event that set a rule version.
type ruleMeta struct {
	eventID    string
	tenantSeq  uint64
	recordedAt time.Time
}

// tenantBook is a tenant's book of rules, rebuilt from the rules table in log order, with the
// event behind each version it holds.
type tenantBook struct {
	book *Book
	meta map[ruleKey]ruleMeta
}

type books map[string]*tenantBook

// get is tenant's book; a tenant with no rule events has an empty one.
func (b books) get(tenant string) *tenantBook {
	if tb, ok := b[tenant]; ok {
		return tb
	}
	tb := &tenantBook{book: NewBook(), meta: map[ruleKey]ruleMeta{}}
	b[tenant] = tb
	return tb
}

// loadBooks rebuilds the books of tenants from the rules in schema, replaying their valid
// set and retired events in log order, as the Book's semantics require.
func loadBooks(ctx context.Context, tx pgx.Tx, schema string, tenants []string) (books, error) {
	rows, err := tx.Query(ctx, inSchema(`
SELECT tenant_id, tenant_seq, op, rule_id, body, event_id, recorded_at FROM allocation_schema.rules
WHERE tenant_id = ANY($1) AND invalid = '' ORDER BY tenant_id, tenant_seq`, schema), tenants)
	if err != nil {
		return nil, fmt.Errorf("allocation: load rules: %w", err)
	}
	defer rows.Close()
	out := books{}
	for rows.Next() {
		var (
			tenant, op, ruleID string
			seq                int64
			body               []byte
			eventID            uuid.UUID
			recorded           *time.Time
		)
		if err := rows.Scan(&tenant, &seq, &op, &ruleID, &body, &eventID, &recorded); err != nil {
			return nil, fmt.Errorf("allocation: load rules: %w", err)
		}
		tb := out.get(tenant)
		switch op {
		case "set":
			var ev tallyv1.AllocationRuleSet
			if err := proto.Unmarshal(body, &ev); err != nil {
				return nil, fmt.Errorf("allocation: rule %s of tenant %s (seq %d): %w", ruleID, tenant, seq, err)
			}
			r, err := NewRule(&ev)
			if err != nil { // invalid = '' says it was valid when folded: the code changed.
				return nil, fmt.Errorf("allocation: rule %s of tenant %s (seq %d): %w", ruleID, tenant, seq, err)
			}
			tb.book.Set(r)
			m := ruleMeta{eventID: eventID.String(), tenantSeq: uint64(seq)}
			if recorded != nil {
				m.recordedAt = recorded.UTC()
			}
			tb.meta[ruleKey{r.ID, r.Version}] = m
		case "retired":
			var ev tallyv1.AllocationRuleRetired
			if err := proto.Unmarshal(body, &ev); err != nil {
				return nil, fmt.Errorf("allocation: retirement of %s of tenant %s (seq %d): %w", ruleID, tenant, seq, err)
			}
			tb.book.Retire(ev.GetRuleId(), ev.GetEffectiveTo().AsTime())
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("allocation: load rules: %w", err)
	}
	return out, nil
}
