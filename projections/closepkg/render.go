package closepkg

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Canonical is the canonical JSON of p, the bytes its SHA256 is computed over: p without its
// sha256 field, as one JSON object with every object's keys sorted bytewise, no whitespace
// between tokens, no HTML escaping (<, > and & as themselves), amounts as decimal strings
// (see amount) and counts as JSON integers, empty lists as [] and absent values as null.
func Canonical(p *Package) ([]byte, error) {
	c := *p
	c.SHA256 = ""
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("closepkg: encode package: %w", err)
	}
	// Re-encode through generic values: encoding/json writes map keys sorted, and UseNumber
	// keeps integers exactly as written.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("closepkg: canonical package: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("closepkg: canonical package: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Hash is the hex SHA-256 of p's canonical JSON.
func Hash(p *Package) (string, error) {
	b, err := Canonical(p)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// WriteJSON writes p's canonical JSON with its sha256 field added (keys still sorted): the
// export. Removing "sha256" from it gives back the hashed bytes.
func WriteJSON(w io.Writer, p *Package) error {
	c, err := Canonical(p)
	if err != nil {
		return err
	}
	sum, err := Hash(p)
	if err != nil {
		return err
	}
	if p.SHA256 != "" && p.SHA256 != sum {
		return fmt.Errorf("closepkg: package sha256 %s does not match its content (%s)", p.SHA256, sum)
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(c, &v); err != nil {
		return err
	}
	v["sha256"] = json.RawMessage(strconv.Quote(sum))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// CSVHeader is the header of the CSV rendering: one fact a row, in long form so that every
// section fits one table a spreadsheet can filter.
var CSVHeader = []string{"section", "provider", "billing_account_id", "currency", "field", "value"}

// WriteCSV writes p as CSV (CSVHeader, then package, lines, totals, restatements,
// post_close_adjustments, reconciliation and close rows). The hash is that of the JSON.
func WriteCSV(w io.Writer, p *Package) error {
	cw := csv.NewWriter(w)
	row := func(section, provider, account, currency, field, value string) {
		_ = cw.Write([]string{section, provider, account, currency, field, value})
	}
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	opt := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	_ = cw.Write(CSVHeader)
	for _, kv := range [][2]string{{"tenant", p.Tenant}, {"period", p.Period}, {"provider", p.Provider},
		{"tolerance_pct", p.TolerancePct}, {"status", p.Status}, {"reasons", strings.Join(p.Reasons, "; ")},
		{"closed", strconv.FormatBool(p.Closed)}, {"chain_head_seq", strconv.FormatUint(p.ChainHead.Seq, 10)},
		{"chain_head", p.ChainHead.Hash}, {"sha256", p.SHA256}} {
		row("package", "", "", "", kv[0], kv[1])
	}
	row("lines", "", "", "", "final", i(p.Lines.Final))
	row("lines", "", "", "", "preliminary", i(p.Lines.Preliminary))
	row("lines", "", "", "", "total", i(p.Lines.Total))
	for _, t := range p.Totals {
		row("totals", "", "", t.Currency, "final", t.Final)
		row("totals", "", "", t.Currency, "preliminary", t.Preliminary)
		row("totals", "", "", t.Currency, "total", t.Total)
		row("totals", "", "", t.Currency, "final_lines", i(t.FinalLines))
		row("totals", "", "", t.Currency, "preliminary_lines", i(t.PreliminaryLines))
	}
	for _, ch := range []struct {
		section string
		c       Changes
	}{{"restatements", p.Restatements}, {"post_close_adjustments", p.PostClose}} {
		row(ch.section, "", "", "", "count", i(ch.c.Count))
		for _, d := range ch.c.ByCurrency {
			row(ch.section, "", "", d.Currency, "net", d.Net)
			row(ch.section, "", "", d.Currency, "absolute", d.Absolute)
		}
		for _, it := range ch.c.Items {
			row(ch.section, it.Provider, it.BillingAccountID, it.Currency, it.Op+"_count", i(it.Count))
			row(ch.section, it.Provider, it.BillingAccountID, it.Currency, it.Op+"_net", it.Net)
			row(ch.section, it.Provider, it.BillingAccountID, it.Currency, it.Op+"_absolute", it.Absolute)
		}
	}
	for _, r := range p.Reconciliation {
		for _, kv := range [][2]string{{"ledger_final", r.LedgerFinal}, {"ledger_preliminary", r.LedgerPrelim},
			{"invoice", opt(r.Invoice)}, {"invoice_ids", strings.Join(r.InvoiceIDs, " ")}, {"variance", opt(r.Variance)},
			{"variance_pct", opt(r.VariancePct)}, {"status", r.Status}} {
			row("reconciliation", r.Provider, r.BillingAccountID, r.Currency, kv[0], kv[1])
		}
	}
	for _, c := range p.Closes {
		row("close", c.Provider, "", "", "seq "+strconv.FormatUint(c.Seq, 10),
			fmt.Sprintf("actor=%s approver=%s package_sha256=%s chain_head_seq=%d note=%s", c.Actor, c.Approver, c.PackageSHA256, c.ChainHeadSeq, c.Note))
	}
	cw.Flush()
	return cw.Error()
}
