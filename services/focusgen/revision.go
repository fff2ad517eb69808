package focusgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/shopspring/decimal"
)

// Revision describes how a provider's revised bill differs from the
// original one generated with the same Params. Shares are fractions of the
// original row count (they choose rows; no amount is ever a float); the
// counts are rounded to the nearest row and then hit exactly.
type Revision struct {
	Seed     uint64  // chooses which rows change and how, independently of Params.Seed
	Restated float64 // share of original lines present with different costs
	Dropped  float64 // share of original lines missing from the revised bill
	Added    float64 // new lines, as a share of the original row count
}

// Diff is what the revision changed, computed with decimals from the lines
// written; Before and After are the summaries of the two bills.
type Diff struct {
	Restated, Dropped, Added, Unchanged int
	Before, After                       Summary
}

// Counts returns the exact number of restated, dropped and added lines for
// an original bill of rows lines.
func (r Revision) Counts(rows int) (restated, dropped, added int, err error) {
	for _, s := range []float64{r.Restated, r.Dropped, r.Added} {
		if math.IsNaN(s) || s < 0 || s > 1 {
			return 0, 0, 0, fmt.Errorf("focusgen: revision share %v not within [0, 1]", s)
		}
	}
	if r.Restated+r.Dropped > 1 {
		return 0, 0, 0, fmt.Errorf("focusgen: restated (%v) + dropped (%v) shares exceed the bill", r.Restated, r.Dropped)
	}
	n := float64(rows)
	restated, dropped, added = int(math.Round(r.Restated*n)), int(math.Round(r.Dropped*n)), int(math.Round(r.Added*n))
	if restated+dropped > rows { // both rounded up
		restated = rows - dropped
	}
	return restated, dropped, added, nil
}

// GenerateRevision writes the revised version of the bill Generate writes
// for p: every original line in order, except that a deterministic set of
// lines is restated (quantities and costs scaled by 70%-130%, never 98%-102%
// so the change is visible) and another is dropped; the added lines come
// last. The choice is exact (selection sampling: Knuth's algorithm S
// generalised to two picks), streaming, and depends only on (p, rev).
func GenerateRevision(ctx context.Context, w io.Writer, p Params, rev Revision) (Diff, error) {
	if err := p.validate(); err != nil {
		return Diff{}, err
	}
	nRestate, nDrop, nAdd, err := rev.Counts(p.Rows)
	if err != nil {
		return Diff{}, err
	}
	out, err := newCSVOut(w, p)
	if err != nil {
		return Diff{}, err
	}
	src := newLineSource(p.Seed, p.periodStart(), p.Rows)
	choose := newRNG(rev.Seed, streamRevision, 0)
	var diff Diff
	for i := range p.Rows {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return diff, fmt.Errorf("generate revised FOCUS bill: %w", err)
			}
		}
		l := src.next()
		diff.Before.add(&l)

		// Each remaining line is dropped with probability (drops left /
		// lines left) and restated with (restates left / lines left): the
		// counts come out exact whatever the draws.
		left := p.Rows - i
		k := choose.intn(left)
		switch {
		case k < nDrop-diff.Dropped:
			diff.Dropped++
			continue
		case k < nDrop-diff.Dropped+nRestate-diff.Restated:
			diff.Restated++
			l = l.scaled(restateFactor(rev.Seed, i))
		default:
			diff.Unchanged++
		}
		if err := out.write(&l); err != nil {
			return diff, err
		}
		diff.After.add(&l)
	}
	added := newAddedSource(p, rev, nAdd)
	for range nAdd {
		l := added.next()
		if err := out.write(&l); err != nil {
			return diff, err
		}
		diff.After.add(&l)
		diff.Added++
	}
	return diff, out.close()
}

// restateFactor is 0.70-0.98 or 1.02-1.30, by whole percents.
func restateFactor(seed uint64, i int) decimal.Decimal {
	r := newRNG(seed, streamRestate, uint64(i))
	pct := int64(r.intn(29) + 2) // 2..30
	if r.intn(2) == 0 {
		pct = -pct
	}
	return decimal.New(100+pct, -2)
}

// addedSource makes the late-arriving lines of a revision: usage of
// resources numbered after every resource of the original bill, so they can
// never collide with an original line.
type addedSource struct {
	seed      uint64
	start     time.Time
	first     int // first new resource number
	resources int
	cache     *resourceCache
	slot      int
}

func newAddedSource(p Params, rev Revision, n int) *addedSource {
	orig := newLineSource(p.Seed, p.periodStart(), p.Rows)
	resources := max((n+orig.hours-1)/orig.hours, min(n, 16), 1)
	// Resource attributes come from the revision seed: new resources, new
	// draws. Their numbers start after the original's.
	return &addedSource{
		seed: rev.Seed, start: orig.start, first: orig.resources,
		resources: resources, cache: newResourceCache(rev.Seed),
	}
}

func (a *addedSource) next() line {
	slot := a.slot
	a.slot++
	n, hour := a.first+slot%a.resources, slot/a.resources
	r := newRNG(a.seed, streamSlot, uint64(slot))
	return usageLine(a.cache.get(n), a.start.Add(time.Duration(hour)*time.Hour), r)
}
