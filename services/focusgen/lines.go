package focusgen

import (
	"time"

	"github.com/shopspring/decimal"
)

// lineSource yields the lines of an original bill in order. Row i of the
// bill depends only on (seed, period, rows): purchases first, then
// resource-hour slots, each giving a usage line and sometimes a credit, a
// tax line or an unused-commitment line.
type lineSource struct {
	seed      uint64
	start     time.Time
	hours     int // hours in the billing month
	resources int // R: slot s is resource s%R at hour s/R
	cache     *resourceCache
	all       []purchase // every commitment, for unused lines
	purchases []purchase // purchase lines still to emit
	slot      int
	queue     []line
}

type purchase struct {
	acct *account
	c    *commitment
}

// allPurchases lists every commitment of the catalogue with its account.
func allPurchases() []purchase {
	var ps []purchase
	for _, a := range accounts {
		for i := range a.commitments {
			ps = append(ps, purchase{a, &a.commitments[i]})
		}
	}
	return ps
}

func newLineSource(seed uint64, start time.Time, rows int) *lineSource {
	hours := int(start.AddDate(0, 1, 0).Sub(start) / time.Hour)
	// Enough resources that hours never run past the month (slots < rows),
	// and at least 64 for variety in small files.
	resources := max((rows+hours-1)/hours, min(rows, 64), 1)
	ps := allPurchases()
	return &lineSource{
		seed: seed, start: start, hours: hours, resources: resources,
		cache:     newResourceCache(seed),
		all:       ps,
		purchases: ps[:min(len(ps), rows)],
	}
}

func (s *lineSource) next() line {
	if len(s.purchases) > 0 {
		p := s.purchases[0]
		s.purchases = s.purchases[1:]
		return s.purchaseLine(p)
	}
	for len(s.queue) == 0 {
		s.fillSlot(s.slot)
		s.slot++
	}
	l := s.queue[0]
	s.queue = s.queue[1:]
	return l
}

func (s *lineSource) fillSlot(slot int) {
	n, hour := slot%s.resources, slot/s.resources
	r := newRNG(s.seed, streamSlot, uint64(slot))
	start := s.start.Add(time.Duration(hour) * time.Hour)
	u := usageLine(s.cache.get(n), start, r)
	s.queue = append(s.queue[:0], u)
	if u.cd == nil {
		if r.chance(40) {
			s.queue = append(s.queue, creditLine(u, r))
		}
		if !u.acct.taxRate.IsZero() && r.chance(60) {
			s.queue = append(s.queue, taxLine(u))
		}
	}
	// Commitment k reports its unused share at the hours of resource k's
	// slots: one line per commitment-hour at most, so lines stay unique.
	if n < len(s.all) && r.chance(300) {
		s.queue = append(s.queue, unusedLine(s.all[n], start, r))
	}
}

func quantity(k qtyKind, r *rng) decimal.Decimal {
	switch k {
	case qtyHours:
		if r.chance(900) {
			return decimal.NewFromInt(1)
		}
		return decimal.New(int64(r.intn(9000)+1000), -4) // a partial hour
	case qtyGBMonth:
		return decimal.New(int64(r.intn(5_000_000)+1000), -6)
	case qtyRequests:
		return decimal.NewFromInt(int64(r.intn(2_000_000) + 1))
	default: // GB-seconds
		return decimal.New(int64(r.intn(10_000_000)+100), -2)
	}
}

var (
	one             = decimal.NewFromInt(1)
	commitmentPrice = decimal.RequireFromString("0.72") // effective rate of covered usage
)

func usageLine(res *resource, start time.Time, r *rng) line {
	q := quantity(res.sku.qty, r)
	listPrice := res.sku.listPrice
	contractedPrice := listPrice.Mul(one.Sub(res.acct.discount))
	l := line{
		acct: res.acct, sub: res.sub, svc: &res.svc,
		category: "Usage", frequency: "Usage-Based",
		description: res.sku.meter + " - " + res.reg.name,
		start:       start, end: start.Add(time.Hour),
		resourceID: res.id, resourceName: res.name, resourceType: res.svc.resourceType,
		region: &res.reg, zone: res.zone,
		sku: &res.sku, skuID: res.sku.id, skuPriceID: res.sku.priceID,
		pricingCategory: "Standard",
		pricingUnit:     res.sku.unit, consumedUnit: res.sku.unit,
		tags:       res.tags,
		pricingQty: nd(q), consumedQty: nd(q),
		listUnitPrice: nd(listPrice), contractedUnitPrice: nd(contractedPrice),
		list:       roundCost(q.Mul(listPrice)),
		contracted: roundCost(q.Mul(contractedPrice)),
	}
	l.billed, l.effective = l.contracted, l.contracted
	if c := res.commitment; c != nil {
		// Covered usage: paid by the purchase line, amortised here.
		l.cd, l.cdStatus, l.pricingCategory = c, "Used", "Committed"
		l.billed = decimal.Zero
		l.effective = roundCost(l.contracted.Mul(commitmentPrice))
		if c.category == "Spend" {
			l.cdQty = nd(l.effective)
		} else {
			l.cdQty = nd(q)
		}
	}
	return l
}

var creditShares = []decimal.Decimal{
	decimal.RequireFromString("0.1"), decimal.RequireFromString("0.25"),
	decimal.RequireFromString("0.5"), decimal.NewFromInt(1),
}

// creditLine is a promotional credit against a usage line: negative.
func creditLine(u line, r *rng) line {
	c := u
	c.category, c.description = "Credit", "Promotional credit - "+u.svc.name
	c.sku, c.skuID, c.skuPriceID, c.pricingCategory = nil, "", "", ""
	c.pricingUnit, c.consumedUnit = "", ""
	c.pricingQty, c.consumedQty = decimal.NullDecimal{}, decimal.NullDecimal{}
	c.listUnitPrice, c.contractedUnitPrice = decimal.NullDecimal{}, decimal.NullDecimal{}
	c.billed = roundCost(u.billed.Mul(pick(r, creditShares))).Neg()
	c.effective, c.list, c.contracted = c.billed, c.billed, c.billed
	return c
}

// taxLine is the tax on a usage line, at the billing account's rate.
func taxLine(u line) line {
	t := u
	t.category, t.frequency = "Tax", "One-Time"
	t.description = "Sales tax"
	if u.acct.currency == "EUR" {
		t.description = "VAT"
	}
	t.sku, t.skuID, t.skuPriceID, t.pricingCategory = nil, "", "", ""
	t.pricingUnit, t.consumedUnit = "", ""
	t.pricingQty, t.consumedQty = decimal.NullDecimal{}, decimal.NullDecimal{}
	t.listUnitPrice, t.contractedUnitPrice = decimal.NullDecimal{}, decimal.NullDecimal{}
	t.billed = roundCost(u.billed.Mul(u.acct.taxRate))
	t.effective, t.list, t.contracted = t.billed, t.billed, t.billed
	return t
}

func commitmentService(p purchase) *service {
	for i := range p.acct.provider.services {
		if s := &p.acct.provider.services[i]; s.name == p.c.covers {
			return s
		}
	}
	return &p.acct.provider.services[0]
}

// purchaseLine is the monthly fee of a commitment, billed in full and
// amortised to zero effective cost (the usage lines carry it).
func (s *lineSource) purchaseLine(p purchase) line {
	c := p.c
	hours := decimal.NewFromInt(int64(s.hours))
	fee := c.hourly.Mul(hours)
	l := line{
		acct: p.acct, sub: p.acct.subAccounts[0], svc: commitmentService(p),
		category: "Purchase", frequency: "Recurring",
		description: "Monthly fee - " + c.name,
		start:       s.start, end: s.start.AddDate(0, 1, 0),
		resourceID: c.id, resourceName: c.name, resourceType: c.typ,
		skuID: c.skuID, skuPriceID: c.skuID + "-hourly",
		pricingCategory: "Standard", pricingUnit: "Hours",
		cd:   c,
		tags: `{"team":"finops"}`,

		pricingQty:    nd(hours),
		listUnitPrice: nd(c.hourly), contractedUnitPrice: nd(c.hourly),
		billed: fee, list: fee, contracted: fee,
		effective: decimal.Zero,
	}
	if c.category == "Spend" {
		l.cdQty = nd(fee)
	} else {
		l.cdQty = nd(hours)
	}
	return l
}

// unusedLine is the share of a commitment-hour nothing used: billed by the
// purchase, so it costs nothing on the invoice but is effective cost.
func unusedLine(p purchase, start time.Time, r *rng) line {
	c := p.c
	share := decimal.New(int64(r.intn(46)+5), -2) // 5% to 50% of the hour
	l := line{
		acct: p.acct, sub: p.acct.subAccounts[0], svc: commitmentService(p),
		category: "Usage", frequency: "Usage-Based",
		description: "Unused commitment - " + c.name,
		start:       start, end: start.Add(time.Hour),
		resourceID: c.id, resourceName: c.name, resourceType: c.typ,
		skuID: c.skuID, skuPriceID: c.skuID + "-hourly",
		pricingCategory: "Committed", pricingUnit: "Hours",
		cd: c, cdStatus: "Unused",
		tags: `{"team":"finops"}`,

		pricingQty:    nd(share),
		listUnitPrice: nd(c.hourly), contractedUnitPrice: nd(c.hourly),
		billed: decimal.Zero, list: decimal.Zero, contracted: decimal.Zero,
		effective: roundCost(c.hourly.Mul(share)),
	}
	if c.category == "Spend" {
		l.cdQty = nd(l.effective)
	} else {
		l.cdQty = nd(share)
	}
	return l
}
