package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-ledger/tally/services/focusgen"
)

type generateOptions struct {
	rows   int
	month  string
	seed   uint64
	gzip   bool
	output string
}

// newGenerateCmd writes a realistic, deterministic FOCUS 1.3 bill: for
// demos (make run), tests and benchmarks.
func newGenerateCmd(c *cli) *cobra.Command {
	o := generateOptions{rows: 10_000, month: time.Now().UTC().AddDate(0, -1, 0).Format("2006-01"), seed: 1}
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write a realistic, deterministic FOCUS 1.3 bill (several providers, accounts, services, tags)",
		Long: `Write a FOCUS 1.3 cost-and-usage CSV of --rows rows for the billing month
--month: AWS, Microsoft, Google Cloud and Oracle accounts, services, regions,
SKUs, tags, credits, tax and commitment discounts. The same seed always
writes the same bytes.

Example:
  tally generate --rows 50000 --month 2026-10 --output october.csv
  tally ingest october.csv --tenant demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			month, err := time.Parse("2006-01", o.month)
			if err != nil {
				return fmt.Errorf("--month %q: use YYYY-MM", o.month)
			}
			if o.rows < 1 {
				return fmt.Errorf("--rows %d: give at least 1", o.rows)
			}
			var w io.Writer = c.stdout
			if o.output != "" && o.output != "-" {
				f, err := os.Create(o.output)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			sum, err := focusgen.Generate(cmd.Context(), w, focusgen.Params{Seed: o.seed, Period: month, Rows: o.rows, Gzip: o.gzip})
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			if o.output != "" && o.output != "-" {
				fmt.Fprintf(c.stderr, "wrote %d rows for %s to %s\n", sum.Rows, o.month, o.output)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.rows, "rows", o.rows, "data `rows` to write")
	fs.StringVar(&o.month, "month", o.month, "billing `month` (YYYY-MM)")
	fs.Uint64Var(&o.seed, "seed", o.seed, "`seed`: the same seed writes the same bill")
	fs.BoolVar(&o.gzip, "gzip", false, "gzip the output")
	fs.StringVarP(&o.output, "output", "o", "", "`file` to write; - or empty for standard output")
	return cmd
}
