package ingest

import (
	"bytes"
	"fmt"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// lineGroup is one line of the file: the rows with one scope and line key,
// in row order.
type lineGroup struct {
	key   []byte // scope key and line key, groupKeyLen bytes
	first []byte // the first row's record
	rows  int
	sums  [6]decimal.NullDecimal // of every row's amounts; set when rows > 1
}

func (g *lineGroup) scopeKey() []byte { return g.key[:scopeKeyLen] }
func (g *lineGroup) lineKey() []byte  { return g.key[scopeKeyLen:groupKeyLen] }

// line is the first row's encoded line; hash is its content hash.
func (g *lineGroup) line() []byte { return g.first[recHeadLen:] }
func (g *lineGroup) hash() []byte { return g.first[sortKeyLen:recHeadLen] }

// grouper reads the merged runs one line at a time.
type grouper struct {
	m   *merger
	cur []byte // the next group's first record, from m; nil before the first read
	eof bool
	g   lineGroup
	tmp tallyv1.CostLine
}

// next returns the next line of the file, valid until the next call, or nil
// at the end.
func (gr *grouper) next() (*lineGroup, error) {
	if gr.cur == nil && !gr.eof {
		rec, err := gr.m.next()
		if err != nil {
			return nil, err
		}
		gr.cur, gr.eof = rec, rec == nil
	}
	if gr.cur == nil {
		return nil, nil
	}
	g := &gr.g
	g.first = append(g.first[:0], gr.cur...)
	g.key = g.first[:groupKeyLen]
	g.rows = 1
	for {
		rec, err := gr.m.next()
		if err != nil {
			return nil, err
		}
		gr.cur, gr.eof = rec, rec == nil
		if rec == nil || !bytes.Equal(rec[:groupKeyLen], g.key) {
			return g, nil
		}
		if g.rows == 1 {
			g.sums = [6]decimal.NullDecimal{}
			if err := gr.add(g.line()); err != nil {
				return nil, err
			}
		}
		if err := gr.add(rec[recHeadLen:]); err != nil {
			return nil, err
		}
		g.rows++
	}
}

// add sums one more row's amounts into the group.
func (gr *grouper) add(enc []byte) error {
	l := &gr.tmp
	if err := proto.Unmarshal(enc, l); err != nil {
		return fmt.Errorf("decode a spilled line: %w", err)
	}
	g := &gr.g
	for i, s := range lineAmounts(l) {
		if s == "" {
			continue
		}
		d, err := decimal.NewFromString(s)
		if err != nil {
			return fmt.Errorf("line %s: amount %q: %w", l.GetLineKey(), s, err)
		}
		if g.sums[i].Valid {
			d = g.sums[i].Decimal.Add(d)
		}
		g.sums[i] = decimal.NullDecimal{Decimal: d, Valid: true}
	}
	return nil
}

// lineAmounts in the order of the state's columns: billed, effective, list,
// contracted, consumed, pricing. "" is absent.
func lineAmounts(l *tallyv1.CostLine) [6]string {
	return [6]string{l.GetBilledCost(), l.GetEffectiveCost(), l.GetListCost(), l.GetContractedCost(),
		l.GetConsumedQuantity(), l.GetPricingQuantity()}
}
