package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
)

// Options of one ingest.
type Options struct {
	// Final: the provider will not revise these bills any more; their lines
	// become final (a BillingPeriodFinalized event per scope).
	Final bool
	// Partial appends the good rows of a file that has bad ones and reports
	// the rejected rows. By default one bad row rejects the whole file and
	// nothing is appended.
	Partial bool
	// Actor recorded on every event.
	Actor *tallyv1.Actor
	// BatchEvents per Append (one durable log write or a few); default 10,000.
	BatchEvents int
	// Progress, when set, is called now and then while the file is read and
	// while events are appended.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Progress of a running ingest.
type Progress struct {
	Stage    string // "read", "append"
	Rows     int64
	Rejected int64
	Bytes    int64
	Size     int64 // file size, 0 when unknown
	Events   int64
}

// Summary of an ingest.
type Summary struct {
	File        string
	RunID       string
	RowsRead    int64             // good rows
	RowsBad     int64             // rejected rows
	Rejected    []*focus.RowError // the first rejected rows, at most 1,000
	Lines       int64             // distinct lines in the file
	Recorded    int64
	Restated    int64
	Retracted   int64
	Unchanged   int64
	PostClose   int64 // of the changes, those to closed periods
	Finalized   int64 // BillingPeriodFinalized events appended
	Appended    int64 // events appended
	Duplicates  int64 // events already in the log (a retried ingest)
	Scopes      int
	Totals      []CurrencyTotal // billed cost per currency, as in the file
	Conflicts   int             // times another writer got there first
	Duration    time.Duration
	FirstSeq    uint64
	LastSeq     uint64
	HeadSeq     uint64 // tenant's chain head after the ingest
	StreamSeq   uint64 // stream sequence of that head: wait for projections up to it
	FileVersion focus.Version
	// Timings of the phases, for operators and benchmarks.
	Timings Timings
}

// Timings of an ingest's phases.
type Timings struct {
	Stage   time.Duration // read, validate and copy the file into PostgreSQL
	CatchUp time.Duration // fold the log's new cost events into the state
	Diff    time.Duration // compute the differences and build events (excluding appends and folds)
	Append  time.Duration // durable appends to the log
	Fold    time.Duration // fold the appended changes into the state
}

// CurrencyTotal is an exact billed total in one currency.
type CurrencyTotal struct {
	Currency string
	Billed   decimal.Decimal
}

// ErrRejected: the file had bad rows and partial ingestion was not asked
// for; nothing was appended. The error text names the first bad rows.
var ErrRejected = errors.New("file rejected")

// maxConflictRetries bounds how often an ingest re-reads the log after
// another writer appended to the tenant first.
const maxConflictRetries = 5

// run is one ingest in progress.
type run struct {
	tenant, file, runID string
	opts                Options
	store               *eventstore.Store
	pool                *pgxpool.Pool
	conn                *pgx.Conn // holds the staging table
	scopes              map[string]*scope
	closed              map[string]bool
	sum                 Summary
	log                 *slog.Logger
}

// Ingest reads a FOCUS file and appends what differs from the tenant's log
// for the bills (scopes) it holds. See the package doc for how.
//
// Errors: eventstore.ErrInvalidTenant (the refusal is recorded on the system
// tenant); ErrRejected with the bad rows in the Summary (nothing appended);
// *focus.Error for an unreadable file; eventstore.ErrConflict when other
// writers kept winning; eventstore.ErrUnavailable and database errors, after
// which re-running the same ingest appends exactly what is missing.
func Ingest(ctx context.Context, store *eventstore.Store, pool *pgxpool.Pool, tenant string, r *focus.Reader, opts Options) (Summary, error) {
	start := time.Now()
	if opts.BatchEvents <= 0 {
		opts.BatchEvents = 10_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Actor == nil {
		opts.Actor = &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SYSTEM, Id: "ingest"}
	}
	in := &run{tenant: tenant, file: filepath.Base(r.Name()), runID: uuid.Must(uuid.NewV7()).String(), opts: opts,
		store: store, pool: pool, scopes: map[string]*scope{}, log: opts.Logger}
	in.sum.File, in.sum.RunID, in.sum.FileVersion = in.file, in.runID, r.Version()
	if err := eventstore.ValidateTenant(tenant); err != nil {
		in.audit(ctx, err)
		return in.sum, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return in.sum, fmt.Errorf("ingest %s: %w", in.file, err)
	}
	defer conn.Release()
	in.conn = conn.Conn()
	defer in.conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+stageTable) //nolint:errcheck // best effort; a temp table goes with its session anyway

	t0 := time.Now()
	err = in.stage(ctx, r)
	in.sum.Timings.Stage = time.Since(t0)
	if err != nil {
		in.sum.Duration = time.Since(start)
		return in.sum, err
	}
	for attempt := 0; ; attempt++ {
		err := in.apply(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, eventstore.ErrConflict) || attempt >= maxConflictRetries {
			in.sum.Duration = time.Since(start)
			return in.sum, err
		}
		in.sum.Conflicts++
		in.log.InfoContext(ctx, "another writer appended to the tenant first; diffing again", "tenant", tenant, "file", in.file, "attempt", attempt+1)
	}
	in.sum.Duration = time.Since(start)
	return in.sum, nil
}

// stage reads the whole file into the staging table.
func (in *run) stage(ctx context.Context, r *focus.Reader) error {
	src := &stageSource{ctx: ctx, r: r, partial: in.opts.Partial, progress: in.opts.Progress,
		scopes: in.scopes, totals: map[string]decimal.Decimal{}}
	_, err := stageFile(ctx, in.conn, src)
	in.sum.RowsRead, in.sum.RowsBad, in.sum.Rejected = src.rows, src.nRejects, src.rejected
	in.sum.Scopes = len(in.scopes)
	for cur, total := range src.totals {
		in.sum.Totals = append(in.sum.Totals, CurrencyTotal{Currency: cur, Billed: total})
	}
	sort.Slice(in.sum.Totals, func(i, j int) bool { return in.sum.Totals[i].Currency < in.sum.Totals[j].Currency })
	if err != nil {
		return err
	}
	if src.nRejects > 0 && !in.opts.Partial {
		first := src.rejected[0]
		return fmt.Errorf("%w: %d of %d rows of %s are invalid, nothing was appended (use partial ingestion to append the %d good rows); first: %w",
			ErrRejected, src.nRejects, src.nRejects+src.rows, in.file, src.rows, first)
	}
	if src.rows == 0 {
		// An empty bill would retract every line of scopes it cannot even
		// name: refuse rather than guess.
		return fmt.Errorf("%w: %s has no rows to ingest", ErrRejected, in.file)
	}
	return nil
}

// apply catches the state up, diffs and appends; an eventstore.ErrConflict
// means it should be called again. Whatever it appended is folded into the
// ingest state before it returns.
func (in *run) apply(ctx context.Context) (err error) {
	head, err := in.store.Head(ctx, in.tenant)
	if err != nil {
		return err
	}
	t0 := time.Now()
	base, err := catchUp(ctx, in.conn, in.store, in.tenant)
	if err != nil {
		return err
	}
	in.sum.Timings.CatchUp += time.Since(t0)
	t0 = time.Now()
	appendBefore, foldBefore := in.sum.Timings.Append, in.sum.Timings.Fold
	defer func() {
		in.sum.Timings.Diff += time.Since(t0) - (in.sum.Timings.Append - appendBefore) - (in.sum.Timings.Fold - foldBefore)
	}()
	if err := in.loadClosed(ctx); err != nil {
		return err
	}
	ap := &appender{in: in, expect: head.Seq, base: base}
	defer func() {
		if merr := ap.merge(ctx); merr != nil && err == nil {
			err = merr
		}
	}()
	in.sum.HeadSeq, in.sum.StreamSeq = head.Seq, head.StreamSeq
	in.sum.Recorded, in.sum.Restated, in.sum.Retracted, in.sum.PostClose, in.sum.Unchanged = 0, 0, 0, 0, 0

	var lines int64
	if err := in.conn.QueryRow(ctx, "SELECT count(*) FROM (SELECT DISTINCT scope_key, line_key FROM "+stageTable+") d").Scan(&lines); err != nil {
		return fmt.Errorf("count staged lines: %w", err)
	}
	in.sum.Lines = lines
	changed := int64(0)
	rows, err := in.conn.Query(ctx, changedLines, in.tenant)
	if err != nil {
		return fmt.Errorf("diff %s against the log: %w", in.file, err)
	}
	for rows.Next() {
		c, err := in.lineChange(rows)
		if err != nil {
			rows.Close()
			return err
		}
		if c == nil {
			continue
		}
		changed++
		if err := ap.add(ctx, c); err != nil {
			rows.Close()
			return err
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("diff %s against the log: %w", in.file, err)
	}
	in.sum.Unchanged = lines - changed

	keys := sortedKeys(in.scopes)
	rows, err = in.conn.Query(ctx, removedLines, in.tenant, keys)
	if err != nil {
		return fmt.Errorf("find lines removed from %s: %w", in.file, err)
	}
	for rows.Next() {
		c, err := in.removedChange(rows)
		if err != nil {
			rows.Close()
			return err
		}
		if err := ap.add(ctx, c); err != nil {
			rows.Close()
			return err
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("find lines removed from %s: %w", in.file, err)
	}
	if in.opts.Final {
		if err := in.finalize(ctx, ap, keys); err != nil {
			return err
		}
	}
	return ap.flush(ctx)
}

func (in *run) loadClosed(ctx context.Context) error {
	in.closed = map[string]bool{}
	rows, err := in.conn.Query(ctx, `SELECT period, provider FROM ingest_closed_periods WHERE tenant_id = $1`, in.tenant)
	if err != nil {
		return fmt.Errorf("read closed periods: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p, prov string
		if err := rows.Scan(&p, &prov); err != nil {
			return err
		}
		in.closed[p+"/"+prov] = true
	}
	return rows.Err()
}

// finalize appends a BillingPeriodFinalized event per scope of the file,
// with the scope's line count and billed totals. Its id covers those, so
// finalizing an unchanged bill again appends nothing.
func (in *run) finalize(ctx context.Context, ap *appender, keys []string) error {
	if err := ap.flush(ctx); err != nil {
		return err
	}
	for _, k := range keys {
		sc := in.scopes[k]
		rows, err := in.conn.Query(ctx, `SELECT billing_currency, sum(billed_cost), count(DISTINCT line_key)
FROM `+stageTable+` WHERE scope_key = $1 GROUP BY billing_currency ORDER BY billing_currency`, k)
		if err != nil {
			return fmt.Errorf("totals of scope %s: %w", k, err)
		}
		var totals []*tallyv1.CurrencyAmount
		var lines int64
		digest := ""
		for rows.Next() {
			var cur string
			var total decimal.Decimal
			var n int64
			if err := rows.Scan(&cur, &total, &n); err != nil {
				rows.Close()
				return err
			}
			totals = append(totals, &tallyv1.CurrencyAmount{Currency: cur, Amount: total.String()})
			lines += n
			digest += cur + "=" + total.String() + ";"
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		bs := &tallyv1.BillScope{Provider: sc.Provider, BillingAccountId: sc.Account,
			BillingPeriodStart: timestamppb.New(sc.Start), BillingPeriodEnd: timestamppb.New(sc.End)}
		env := in.envelope(bs.GetBillingPeriodEnd())
		env.EventId = eventstore.DeterministicID(in.tenant, fmt.Sprintf("billing_period_finalized/%s/%d/%s", k, lines, digest))
		env.Body = &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{
			Scope: bs, LineCount: uint64(lines), BilledTotals: totals}}
		if err := ap.add(ctx, &change{env: env, kind: "finalized"}); err != nil {
			return err
		}
	}
	return nil
}

// audit records a refused ingest on the system tenant; the refusal itself
// is what the caller gets back, so a failure to audit is only logged.
func (in *run) audit(ctx context.Context, cause error) {
	env := &tallyv1.Envelope{
		Actor: in.opts.Actor,
		Body: &tallyv1.Envelope_RequestRejected{RequestRejected: &tallyv1.RequestRejected{
			Procedure: "ingest " + in.file, Code: "invalid_argument", Reason: cause.Error(), Field: "tenant_id",
			ClaimedTenant: in.tenant, RequestId: in.runID,
		}},
	}
	if _, err := in.store.AppendSystem(ctx, []*tallyv1.Envelope{env}); err != nil {
		in.log.WarnContext(ctx, "could not record the refused ingest", "err", err)
	}
}
