package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	// BatchEvents per Append (a durable log write per MiB of events and
	// per kind); default 5,000. A batch is in each stage of the pipeline at
	// once, so it sets most of the ingest's memory: measured at 1M rows with
	// an external nats-server, peak RSS was 231-252 MiB with 10,000, 182-205
	// MiB with 5,000 and 171-179 MiB with 2,500, for the same rows/s with
	// 5,000 as with 10,000 and about 3% less with 2,500.
	BatchEvents int
	// Progress, when set, is called now and then while the file is read and
	// while events are appended.
	Progress func(Progress)
	Logger   *slog.Logger
	// TempDir holds the sorted runs of the file while it is ingested (about
	// its encoded size; removed at the end whatever happens); default
	// os.TempDir().
	TempDir string
	// RunBytes is the memory the file's rows take before they are sorted
	// and spilled to TempDir; default 32 MiB. It bounds the ingest's memory
	// whatever the file size.
	RunBytes int
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
	Messages    int64 // log messages the appended events took (one durable write each)
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
	Stage   time.Duration // read, validate, encode, sort and spill the file
	CatchUp time.Duration // fold the log's new cost events into the state
	Diff    time.Duration // merge the runs, diff them with the state and build events (excluding appends and folds)
	Append  time.Duration // durable appends to the log (overlaps with Diff and Fold)
	Fold    time.Duration // fold the appended changes into the state (overlaps with Diff and Append)
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
	conn                *pgx.Conn // catches the state up and reads it
	runs                []string  // the file's sorted runs
	scopes              map[string]*scope
	closed              map[string]bool
	source              *tallyv1.Source // of every event of the run
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
		opts.BatchEvents = 5_000
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
	dir, err := os.MkdirTemp(opts.TempDir, "tally-ingest-")
	if err != nil {
		return in.sum, fmt.Errorf("ingest %s: %w", in.file, err)
	}
	defer os.RemoveAll(dir)

	t0 := time.Now()
	err = in.stage(ctx, r, dir)
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

// stage reads the whole file into sorted runs under dir.
func (in *run) stage(ctx context.Context, r *focus.Reader, dir string) error {
	src := &stageSource{r: r, progress: in.opts.Progress}
	st := &stager{name: r.Name(), version: r.Version(), runs: newRunWriter(dir, in.opts.RunBytes),
		scopes: in.scopes, totals: map[string]decimal.Decimal{}}
	err := stageFile(ctx, src, st)
	in.runs = st.runs.files
	in.sum.RowsRead, in.sum.RowsBad, in.sum.Rejected = src.rows, src.nRejects, src.rejected
	in.sum.Scopes = len(in.scopes)
	for cur, total := range st.totals {
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
	runs, err := reduceRuns(ctx, dir, in.runs, maxFanIn, in.log)
	if err != nil {
		return fmt.Errorf("ingest %s: %w", in.file, err)
	}
	in.runs = runs
	return nil
}

// diff merges the runs into the file's lines and joins them, scope by
// scope, with the state read in one snapshot; the differences go to ap.
func (in *run) diff(ctx context.Context, keys []string, ap *appender) error {
	m, err := openMerger(in.runs)
	if err != nil {
		return err
	}
	defer m.close()
	gr := &grouper{m: m}
	g, err := gr.next()
	if err != nil {
		return err
	}
	tx, err := in.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("read the ingest state: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	emit := func(c *change) error { return ap.add(ctx, c) }
	for _, k := range keys {
		if g != nil && string(g.scopeKey()) < k {
			return fmt.Errorf("the sorted runs hold scope %s, which the file does not", g.scopeKey())
		}
		if g, err = in.diffScope(ctx, tx, gr, g, in.scopes[k], emit); err != nil {
			return fmt.Errorf("diff %s against the log: %w", in.file, err)
		}
	}
	if g != nil {
		return fmt.Errorf("the sorted runs hold scope %s, which the file does not", g.scopeKey())
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
	if err := in.loadClosed(ctx); err != nil {
		return err
	}
	ap := &appender{in: in, expect: head.Seq, base: base}
	defer func() {
		// The diff's own time: appends and folds overlap with it.
		in.sum.Timings.Diff += time.Since(t0) - ap.blocked
		if werr := ap.wait(); werr != nil && err == nil {
			err = werr
		}
		if merr := ap.merge(ctx); merr != nil && err == nil {
			err = merr
		}
	}()
	in.sum.HeadSeq, in.sum.StreamSeq = head.Seq, head.StreamSeq
	in.sum.Recorded, in.sum.Restated, in.sum.Retracted, in.sum.PostClose, in.sum.Unchanged = 0, 0, 0, 0, 0

	in.sum.Lines = 0
	keys := sortedKeys(in.scopes)
	if err := in.diff(ctx, keys, ap); err != nil {
		return err
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
	for _, k := range keys {
		sc := in.scopes[k]
		var totals []*tallyv1.CurrencyAmount
		lines := sc.lines
		digest := ""
		for _, cur := range sortedKeys(sc.totals) {
			total := sc.totals[cur]
			totals = append(totals, &tallyv1.CurrencyAmount{Currency: cur, Amount: total.String()})
			digest += cur + "=" + total.String() + ";"
		}
		bs := &tallyv1.BillScope{Provider: sc.Provider, BillingAccountId: sc.Account,
			BillingPeriodStart: timestamppb.New(sc.Start), BillingPeriodEnd: timestamppb.New(sc.End)}
		env := in.envelope(bs.GetBillingPeriodEnd())
		env.EventId = eventstore.DeterministicID(in.tenant, fmt.Sprintf("billing_period_finalized/%s/%d/%s", k, lines, digest))
		env.Body = &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{
			Scope: bs, LineCount: uint64(lines), BilledTotals: totals}}
		if err := ap.add(ctx, &change{env: env, kind: kindFinalized}); err != nil {
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
