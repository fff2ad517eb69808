package allocation

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// CSVHeader is the first record WriteCSV writes.
var CSVHeader = []string{"record", "day", "cost_center", "currency", "rule_id", "rule_version", "service_name", "amount"}

// WriteCSV writes tenant's allocation of period ("YYYY-MM") as CSV (RFC 4180, "\n" line ends):
// the header CSVHeader, then one "allocated" record per day, cost center, currency and rule
// version, then one "unallocated" record per day, currency and service (cost_center, rule_id
// and rule_version empty). Records are ordered by those columns; amounts are exact decimals
// without trailing zeros, in the record's currency. Per day and currency, the amounts of both
// kinds sum exactly to the day's effective cost. The same read model gives the same bytes, so
// a compliance pack can hash it.
//
// Errors: *QueryError (bad tenant or period); database errors; write errors of w.
func (q *Queries) WriteCSV(ctx context.Context, w io.Writer, tenant, period string) error {
	from, to, err := PeriodDays(period)
	if err != nil {
		return err
	}
	if from, to, err = checkRange(tenant, from, to); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	err = q.read(ctx, tenant, func(tx pgx.Tx) error {
		write := func(sql string, record func(pgx.Rows) ([]string, error)) error {
			rows, err := tx.Query(ctx, q.sql(sql), tenant, from, to)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				rec, err := record(rows)
				if err != nil {
					return err
				}
				if err := cw.Write(rec); err != nil {
					return err
				}
			}
			return rows.Err()
		}
		err := write(`SELECT day, cost_center, currency, rule_id, rule_version, amount::text
FROM allocation_schema.allocated_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3
ORDER BY day, cost_center, currency, rule_id, rule_version`, func(rows pgx.Rows) ([]string, error) {
			var (
				day                   time.Time
				cc, cur, rule, amount string
				version               int64
			)
			if err := rows.Scan(&day, &cc, &cur, &rule, &version, &amount); err != nil {
				return nil, err
			}
			a, err := decimal.NewFromString(amount)
			if err != nil {
				return nil, err
			}
			return []string{"allocated", day.Format(time.DateOnly), cc, cur, rule, strconv.FormatInt(version, 10), "", a.String()}, nil
		})
		if err != nil {
			return err
		}
		return write(`SELECT day, currency, service_name, amount::text
FROM allocation_schema.unallocated_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3
ORDER BY day, currency, service_name`, func(rows pgx.Rows) ([]string, error) {
			var (
				day                  time.Time
				cur, service, amount string
			)
			if err := rows.Scan(&day, &cur, &service, &amount); err != nil {
				return nil, err
			}
			a, err := decimal.NewFromString(amount)
			if err != nil {
				return nil, err
			}
			return []string{"unallocated", day.Format(time.DateOnly), "", cur, "", "", service, a.String()}, nil
		})
	})
	if err != nil {
		return fmt.Errorf("allocation: csv: %w", err)
	}
	cw.Flush()
	return cw.Error()
}
