package app

import (
	"log/slog"

	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/allocation"
	"github.com/tally-ledger/tally/projections/changelog"
	"github.com/tally-ledger/tally/projections/closepkg"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/projections/savings"
)

// Projections are the read models Tally folds: the one list `tally serve` runs and
// `tally projections status|rebuild` knows, so that the two never disagree. log receives the
// projections' own warnings (nil: slog.Default()).
func Projections(log *slog.Logger) []projections.Projection {
	alloc := allocation.New()
	alloc.Log = log
	return []projections.Projection{ledger.New(), closepkg.New(), alloc, savings.New(), changelog.New()}
}
