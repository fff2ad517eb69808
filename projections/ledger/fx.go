package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// FX rates are folded into fx_rates, keyed by (tenant, from, to, day). A later event for the
// same key replaces the rate: a restated rate is a new fx_rate_recorded event, and every
// normalized figure computed afterwards (or on a replay of the same log) uses it. Within a
// batch the last event of a key wins, across batches the upsert only moves forward in the log,
// so the table is the same however the log is cut into batches.

type fxKey struct{ tenant, from, to, day string }

// fxRow is one fx_rates row; rows keeps the batch's last event per key.
type fxRow struct {
	key     fxKey
	rate    pgtype.Numeric
	source  string
	eventID uuid.UUID
	seq     int64
	index   int32
}

type fxRows struct {
	keys []fxKey
	rows map[fxKey]fxRow
}

// add reads one fx_rate_recorded event. The gateway validated it before appending; an event
// that is not a rate (no pair, a day not YYYY-MM-DD, a rate that is not a positive decimal)
// stops the fold with an error, as a bad amount does, rather than be dropped silently.
func (f *fxRows) add(ev eventstore.Event, r *tallyv1.FxRateRecorded) error {
	id, err := uuid.Parse(ev.Envelope.GetEventId())
	if err != nil {
		return fmt.Errorf("event id: %w", err)
	}
	from, to := r.GetFromCurrency(), r.GetToCurrency()
	if from == "" || to == "" || from == to {
		return fmt.Errorf("fx rate %s→%s: not a currency pair", from, to)
	}
	if _, err := time.Parse(time.DateOnly, r.GetDate()); err != nil {
		return fmt.Errorf("fx rate %s→%s: date %q is not YYYY-MM-DD", from, to, r.GetDate())
	}
	v, err := numeric(r.GetRate(), false)
	if err != nil {
		return fmt.Errorf("fx rate %s→%s: %w", from, to, err)
	}
	rate := v.(pgtype.Numeric)
	if rate.Int.Sign() <= 0 {
		return fmt.Errorf("fx rate %s→%s: rate %q is not positive", from, to, r.GetRate())
	}
	k := fxKey{ev.Envelope.GetTenantId(), from, to, r.GetDate()}
	if f.rows == nil {
		f.rows = map[fxKey]fxRow{}
	}
	if _, ok := f.rows[k]; !ok {
		f.keys = append(f.keys, k)
	}
	f.rows[k] = fxRow{key: k, rate: rate, source: r.GetSource(), eventID: id, seq: int64(ev.StreamSeq), index: int32(ev.Index)}
	return nil
}

const fxUpsert = `
INSERT INTO ledger_schema.fx_rates AS f (tenant_id, from_currency, to_currency, day, rate, source, event_id, stream_seq, event_index)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::numeric[], $6::text[], $7::uuid[], $8::bigint[], $9::int[])
ON CONFLICT (tenant_id, from_currency, to_currency, day) DO UPDATE SET
    rate = excluded.rate, source = excluded.source, event_id = excluded.event_id,
    stream_seq = excluded.stream_seq, event_index = excluded.event_index
WHERE (excluded.stream_seq, excluded.event_index) > (f.stream_seq, f.event_index)`

// apply upserts the batch's rates in one statement.
func (f *fxRows) apply(ctx context.Context, tx pgx.Tx, schema string) error {
	n := len(f.keys)
	if n == 0 {
		return nil
	}
	var (
		tenants, froms, tos, days, sources = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rates                              = make([]pgtype.Numeric, n)
		ids                                = make([]string, n)
		seqs                               = make([]int64, n)
		indexes                            = make([]int32, n)
	)
	for i, k := range f.keys {
		r := f.rows[k]
		tenants[i], froms[i], tos[i], days[i], sources[i] = k.tenant, k.from, k.to, k.day, r.source
		rates[i], ids[i], seqs[i], indexes[i] = r.rate, r.eventID.String(), r.seq, r.index
	}
	if _, err := tx.Exec(ctx, inSchema(fxUpsert, schema), tenants, froms, tos, days, rates, sources, ids, seqs, indexes); err != nil {
		return fmt.Errorf("upsert fx rates: %w", err)
	}
	return nil
}
