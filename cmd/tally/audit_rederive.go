package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage"
)

// errPackageMismatch makes `tally audit verify --period` exit with status 1 once the report
// is printed.
var errPackageMismatch = errors.New("a close package does not re-derive to what was recorded")

// rederiveBatch is how many replayed events are folded into the scratch database a
// transaction.
const rederiveBatch = 5000

// scratchDB is a PostgreSQL database created for one re-derivation and dropped after it.
type scratchDB struct {
	pool    *pgxpool.Pool
	name    string
	admin   string // the database the scratch one was created beside, to drop it from
	stopPG  func() error
	dropped bool
}

// openScratch finds PostgreSQL as the other commands do (app.ResolveDatabase: databaseURL,
// else the local server, else the private cluster under dataDir) and creates a new, empty
// database beside the one found, named tally_verify_<random>.
func openScratch(ctx context.Context, log *slog.Logger, dataDir, databaseURL string) (*scratchDB, error) {
	url, stop, err := app.ResolveDatabase(ctx, log, dataDir, databaseURL)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	s := &scratchDB{name: "tally_verify_" + hex.EncodeToString(b), admin: url, stopPG: stop}
	scratchURL, err := storage.EnsureDatabase(ctx, url, s.name)
	if err != nil {
		_ = stop()
		return nil, fmt.Errorf("create the scratch database (the role needs CREATEDB): %w", err)
	}
	if s.pool, err = storage.Open(ctx, scratchURL); err != nil {
		s.close(ctx, log)
		return nil, err
	}
	return s, nil
}

// close drops the scratch database and stops a private cluster openScratch started.
func (s *scratchDB) close(ctx context.Context, log *slog.Logger) {
	if s.pool != nil {
		s.pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, s.admin); err != nil {
		log.Warn("drop the scratch database: connect", "database", s.name, "err", err)
	} else {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.name}.Sanitize()+" WITH (FORCE)"); err != nil {
			log.Warn("drop the scratch database", "database", s.name, "err", err)
		} else {
			s.dropped = true
		}
		_ = conn.Close(ctx)
	}
	if err := s.stopPG(); err != nil {
		log.Warn("stop private PostgreSQL", "err", err)
	}
}

// replayed is what the re-derivation took from the log.
type replayed struct {
	events  int
	lastSeq uint64
	closes  []*tallyv1.Envelope // PeriodClosed events of the period, in log order
}

// foldReplay replays tenant's close-package events through the AuditService into the
// closepkg tables of a fresh schema in pool: the projection's own Setup and Apply, with no
// runner, no checkpoints and nothing of the live read models.
func foldReplay(ctx context.Context, audit tallyv1connect.AuditServiceClient, pool *pgxpool.Pool, tenant, period string) (replayed, error) {
	var r replayed
	proj := closepkg.New()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{closepkg.Name}.Sanitize()); err != nil {
			return err
		}
		return proj.Setup(ctx, tx, closepkg.Name)
	}); err != nil {
		return r, fmt.Errorf("set up the scratch close tables: %w", err)
	}
	stream, err := audit.ReplayEvents(ctx, connect.NewRequest(&tallyv1.ReplayEventsRequest{TenantId: tenant, Kinds: proj.Kinds()}))
	if err != nil {
		return r, err
	}
	defer stream.Close()
	var batch []eventstore.Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return proj.Apply(ctx, tx, closepkg.Name, batch) })
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("fold the replayed events: %w", err)
		}
		return nil
	}
	for stream.Receive() {
		m := stream.Msg()
		h, err := hex.DecodeString(m.GetHash())
		if err != nil || len(h) != len(eventstore.Hash{}) {
			return r, fmt.Errorf("event %d: the server sent hash %q", m.GetTenantSeq(), m.GetHash())
		}
		ev := eventstore.Event{StreamSeq: m.GetStreamSeq(), Index: int(m.GetIndex()), Envelope: m.GetEnvelope(), Hash: eventstore.Hash(h)}
		r.events++
		r.lastSeq = max(r.lastSeq, m.GetTenantSeq())
		if pc := ev.Envelope.GetPeriodClosed(); pc != nil && pc.GetPeriod() == period {
			r.closes = append(r.closes, ev.Envelope)
		}
		if batch = append(batch, ev); len(batch) >= rederiveBatch {
			if err := flush(); err != nil {
				return r, err
			}
		}
	}
	if err := stream.Err(); err != nil {
		return r, err
	}
	return r, flush()
}

// verifyPeriod re-derives tenant's close packages of o.period in a scratch database from the
// replayed events and compares each with the hash its close recorded and with the live
// package (CloseService.GetClosePackage as of the same chain head). It prints one verdict per
// close (or, for a period not closed, for its current package) and returns
// errPackageMismatch when any differs.
func verifyPeriod(ctx context.Context, c *cli, o verifyOptions, audit tallyv1connect.AuditServiceClient, live tallyv1connect.CloseServiceClient) error {
	var tol *decimal.Decimal
	if o.tolerance != "" {
		d, err := decimal.NewFromString(o.tolerance)
		if err != nil {
			return fmt.Errorf("--tolerance %q: want a decimal percentage such as 1 or 0.5", o.tolerance)
		}
		tol = &d
	}
	scratch, err := openScratch(ctx, c.logger, o.auth.dataDir, o.databaseURL)
	if err != nil {
		return err
	}
	defer scratch.close(ctx, c.logger)
	r, err := foldReplay(ctx, audit, scratch.pool, o.tenant, o.period)
	if err != nil {
		return describeQueryError(o.server, err)
	}
	q := closepkg.NewQueries(scratch.pool)

	type check struct {
		what, provider string
		asOf           uint64
		recorded       string // "" when there is no close to compare with
		// tolerance the close recorded ("" for a close recorded before closes
		// carried it, and for a period not closed)
		tolerance string
	}
	var checks []check
	for _, env := range r.closes {
		pc := env.GetPeriodClosed()
		if o.provider != "" && pc.GetProvider() != o.provider {
			continue
		}
		checks = append(checks, check{what: fmt.Sprintf("close of %s (%s) at event %d", o.period, orAll(pc.GetProvider()), env.GetTenantSeq()),
			provider: pc.GetProvider(), asOf: pc.GetChainHeadSeq(), recorded: pc.GetPackageSha256(), tolerance: pc.GetTolerancePct()})
	}
	if len(checks) == 0 {
		fmt.Fprintf(c.stdout, "period %s (%s) of %s is not closed: comparing its current package, as of event %d\n",
			o.period, orAll(o.provider), o.tenant, r.lastSeq)
		checks = append(checks, check{what: fmt.Sprintf("package of %s (%s) as of event %d", o.period, orAll(o.provider), r.lastSeq),
			provider: o.provider, asOf: r.lastSeq})
	}
	bad := 0
	for _, ch := range checks {
		// The tolerance: --tolerance when given, else the one the close recorded, else the
		// default.
		chTol, chTolText := tol, o.tolerance
		if chTol == nil && ch.tolerance != "" {
			d, err := decimal.NewFromString(ch.tolerance)
			if err != nil {
				return fmt.Errorf("the %s recorded tolerance %q, which is not a decimal", ch.what, ch.tolerance)
			}
			chTol, chTolText = &d, ch.tolerance
		}
		derived, err := q.Package(ctx, o.tenant, o.period, ch.provider, closepkg.Options{TolerancePct: chTol, AsOfSeq: ch.asOf})
		if err != nil {
			return fmt.Errorf("re-derive the %s: %w", ch.what, err)
		}
		resp, err := live.GetClosePackage(ctx, connect.NewRequest(&tallyv1.GetClosePackageRequest{TenantId: o.tenant, Period: o.period,
			Provider: ch.provider, TolerancePct: chTolText, AsOfSeq: ch.asOf}))
		if err != nil {
			return describeQueryError(o.server, err)
		}
		livePkg, err := packageOf(resp.Msg)
		if err != nil {
			return err
		}
		var problems []string
		if ch.recorded != "" && derived.SHA256 != ch.recorded {
			problems = append(problems, fmt.Sprintf("the close recorded sha256 %s, the events re-derive to %s (was it made with another --tolerance than %s%%?)",
				ch.recorded, derived.SHA256, derived.TolerancePct))
		}
		if livePkg.SHA256 != derived.SHA256 {
			path, want, got, err := firstDifference(derived, livePkg)
			if err != nil {
				return err
			}
			problems = append(problems, fmt.Sprintf("the live package (sha256 %s) differs from the re-derived one (sha256 %s); first difference at %s: re-derived %s, live %s",
				livePkg.SHA256, derived.SHA256, path, want, got))
		}
		if len(problems) == 0 {
			fmt.Fprintf(c.stdout, "MATCH %s: sha256 %s re-derived from %d replayed events in a scratch database; the live package agrees\n",
				ch.what, derived.SHA256, r.events)
			continue
		}
		bad++
		fmt.Fprintf(c.stdout, "DIFFERENT %s:\n", ch.what)
		for _, p := range problems {
			fmt.Fprintf(c.stdout, "  %s\n", p)
		}
	}
	if bad > 0 {
		return fmt.Errorf("tenant %s period %s: %w (%d of %d)", o.tenant, o.period, errPackageMismatch, bad, len(checks))
	}
	return nil
}

// firstDifference walks the canonical JSON of two packages in key order and names the first
// field where they differ ("reconciliation[1].invoice"), with both values as JSON.
func firstDifference(a, b *closepkg.Package) (path, av, bv string, err error) {
	var x, y any
	for i, p := range []*closepkg.Package{a, b} {
		canon, err := closepkg.Canonical(p)
		if err != nil {
			return "", "", "", err
		}
		d := json.NewDecoder(bytes.NewReader(canon))
		d.UseNumber()
		v := &x
		if i == 1 {
			v = &y
		}
		if err := d.Decode(v); err != nil {
			return "", "", "", err
		}
	}
	path, av, bv, _ = diffJSON("", x, y)
	return path, av, bv, nil
}

func diffJSON(path string, x, y any) (string, string, string, bool) {
	show := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	xm, xok := x.(map[string]any)
	ym, yok := y.(map[string]any)
	if xok && yok {
		keys := map[string]bool{}
		for k := range xm {
			keys[k] = true
		}
		for k := range ym {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if a, b, c, ok := diffJSON(p, xm[k], ym[k]); ok {
				return a, b, c, true
			}
		}
		return "", "", "", false
	}
	xs, xok := x.([]any)
	ys, yok := y.([]any)
	if xok && yok {
		for i := range max(len(xs), len(ys)) {
			var a, b any
			if i < len(xs) {
				a = xs[i]
			}
			if i < len(ys) {
				b = ys[i]
			}
			if p, s, t, ok := diffJSON(path+"["+strconv.Itoa(i)+"]", a, b); ok {
				return p, s, t, true
			}
		}
		return "", "", "", false
	}
	if show(x) != show(y) {
		return path, show(x), show(y), true
	}
	return "", "", "", false
}
