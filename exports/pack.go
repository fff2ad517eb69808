package exports

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/closepkg"
)

// PackFormat names the layout of a compliance pack's manifest.
const PackFormat = "tally.compliance-pack.v1"

// Files of a compliance pack, in the order they are written.
const (
	FileChainHead       = "chain-head.json"
	FileCheckpoints     = "checkpoints.json"
	FileClosePackage    = "close-package.json"
	FileClosePackageCSV = "close-package.csv"
	FileFOCUS           = "focus.csv"
	FileRules           = "rules.json"
	FileManifest        = "manifest.json"
)

// Section is one more file of a compliance pack, written by its owner (a read model's CSV:
// savings.csv, allocation.csv, changelog.csv). Write gets the file's writer; the pack hashes
// what it writes.
type Section struct {
	Name  string
	Write func(ctx context.Context, w io.Writer) error
}

// Pack describes a compliance pack to write.
type Pack struct {
	Tenant string
	// Period is the month, "YYYY-MM".
	Period string
	// CreatedBy names who asked for it (an actor such as "user:alice").
	CreatedBy string
	// TolerancePct of the close package's reconciliation; nil is closepkg's default.
	TolerancePct *decimal.Decimal
	// Sections are written after the built-in files, in this order. Names must be unique and
	// must not be a built-in file's.
	Sections []Section
	// Now is the creation time (manifest and ZIP entry times); zero means time.Now().
	Now time.Time
}

// TxBeginner is a pool or a connection.
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// ChainHead is the tenant's chain head a pack was built at.
type ChainHead struct {
	Tenant    string `json:"tenant"`
	TenantSeq uint64 `json:"tenant_seq"`
	// Hash is the head event's chain hash, lower-case hex (64 zeros for an empty chain).
	Hash      string `json:"hash"`
	StreamSeq uint64 `json:"stream_seq"`
}

// FileDigest is one file of a pack.
type FileDigest struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest is manifest.json, the last file of a pack: the SHA-256 and size of every other
// file, and what the pack is.
type Manifest struct {
	Format    string       `json:"format"`
	Tenant    string       `json:"tenant"`
	Period    string       `json:"period"`
	CreatedAt time.Time    `json:"created_at"`
	CreatedBy string       `json:"created_by"`
	ChainHead ChainHead    `json:"chain_head"`
	Files     []FileDigest `json:"files"`
}

// Checkpoint is a row of projection_checkpoints: how far a read model had folded the log.
type Checkpoint struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	LastSeq   uint64    `json:"last_seq"`
	State     string    `json:"state"`
	UpdatedAt time.Time `json:"updated_at"`
}

// WritePack writes p's compliance pack to w as a ZIP, streamed (the ZIP needs no seeking, and
// each file is hashed as it is written), and returns its manifest:
//
//	chain-head.json     the tenant's chain head in the log when the pack began
//	checkpoints.json    every projection's checkpoint (projection_checkpoints)
//	close-package.json  the close package of the period for all providers (closepkg.WriteJSON)
//	close-package.csv   the same as CSV (closepkg.WriteCSV)
//	focus.csv           the ledger's lines of the period as FOCUS 1.3 (WriteFOCUSCSV)
//	rules.json          the allocation rule versions in force in the period (RulesInForce, up
//	                    to the chain head)
//	<p.Sections>        savings, allocation, change log... as the caller gives them
//	manifest.json       Manifest
//
// The checkpoints, close package and FOCUS lines are read in one repeatable-read, read-only
// transaction, so they are one state of the read models; the chain head is read before it, so
// every read model's checkpoint in the pack can be compared with the head's stream_seq.
//
// Errors: ErrInvalid (tenant, period, section names); database, log and write errors. On
// error, what was written is not a complete ZIP.
func WritePack(ctx context.Context, w io.Writer, db TxBeginner, log *eventstore.Store, p Pack) (*Manifest, error) {
	if err := eventstore.ValidateTenant(p.Tenant); err != nil {
		return nil, fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	rng, err := MonthRange(p.Tenant, p.Period, "")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{FileChainHead: true, FileCheckpoints: true, FileClosePackage: true,
		FileClosePackageCSV: true, FileFOCUS: true, FileRules: true, FileManifest: true}
	for i, s := range p.Sections {
		if s.Name == "" || strings.ContainsAny(s.Name, `/\`) || seen[s.Name] || s.Write == nil {
			return nil, fmt.Errorf("%w: sections[%d]: name %q is empty, a path, taken, or has no writer", ErrInvalid, i, s.Name)
		}
		seen[s.Name] = true
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)

	head, err := log.Head(ctx, p.Tenant)
	if err != nil {
		return nil, fmt.Errorf("exports: chain head: %w", err)
	}
	m := &Manifest{Format: PackFormat, Tenant: p.Tenant, Period: p.Period, CreatedAt: now, CreatedBy: p.CreatedBy,
		ChainHead: ChainHead{Tenant: p.Tenant, TenantSeq: head.Seq, Hash: hex.EncodeToString(head.Hash[:]), StreamSeq: head.StreamSeq},
		Files:     []FileDigest{}}

	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("exports: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	zw := zip.NewWriter(w)
	add := func(name string, write func(w io.Writer) error) error {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: now})
		if err != nil {
			return err
		}
		d := &digestWriter{w: f, h: sha256.New()}
		if err := write(d); err != nil {
			return fmt.Errorf("exports: pack file %s: %w", name, err)
		}
		m.Files = append(m.Files, FileDigest{Name: name, SHA256: hex.EncodeToString(d.h.Sum(nil)), Size: d.n})
		return nil
	}

	if err := add(FileChainHead, func(w io.Writer) error { return writeJSON(w, m.ChainHead) }); err != nil {
		return nil, err
	}
	if err := add(FileCheckpoints, func(w io.Writer) error {
		cps, err := checkpoints(ctx, tx)
		if err != nil {
			return err
		}
		return writeJSON(w, cps)
	}); err != nil {
		return nil, err
	}
	pkg, err := closepkg.NewQueries(snapshot{tx}).Package(ctx, p.Tenant, p.Period, "", closepkg.Options{TolerancePct: p.TolerancePct})
	if err != nil {
		return nil, fmt.Errorf("exports: close package: %w", err)
	}
	if err := add(FileClosePackage, func(w io.Writer) error { return closepkg.WriteJSON(w, pkg) }); err != nil {
		return nil, err
	}
	if err := add(FileClosePackageCSV, func(w io.Writer) error { return closepkg.WriteCSV(w, pkg) }); err != nil {
		return nil, err
	}
	if err := add(FileFOCUS, func(w io.Writer) error {
		_, err := WriteFOCUSCSV(ctx, w, Source{DB: tx, Log: log}, rng)
		return err
	}); err != nil {
		return nil, err
	}
	if err := add(FileRules, func(w io.Writer) error {
		rules, err := RulesInForce(ctx, log, p.Tenant, p.Period, head.Seq)
		if err != nil {
			return err
		}
		return writeJSON(w, rules)
	}); err != nil {
		return nil, err
	}
	for _, s := range p.Sections {
		if err := add(s.Name, func(w io.Writer) error { return s.Write(ctx, w) }); err != nil {
			return nil, err
		}
	}
	f, err := zw.CreateHeader(&zip.FileHeader{Name: FileManifest, Method: zip.Deflate, Modified: now})
	if err != nil {
		return nil, err
	}
	if err := writeJSON(f, m); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("exports: finish pack: %w", err)
	}
	return m, nil
}

// checkpoints reads every projection checkpoint, by name.
func checkpoints(ctx context.Context, q pgx.Tx) ([]Checkpoint, error) {
	rows, err := q.Query(ctx, `SELECT name, version, last_seq, state, updated_at FROM projection_checkpoints ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Checkpoint, error) {
		var c Checkpoint
		var seq int64
		err := row.Scan(&c.Name, &c.Version, &seq, &c.State, &c.UpdatedAt)
		c.LastSeq, c.UpdatedAt = uint64(seq), c.UpdatedAt.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	if out == nil {
		out = []Checkpoint{}
	}
	return out, nil
}

// snapshot lets closepkg's queries run inside the pack's transaction: its "transaction" is a
// savepoint of the pack's, which sees the same snapshot.
type snapshot struct{ tx pgx.Tx }

func (s snapshot) BeginTx(ctx context.Context, _ pgx.TxOptions) (pgx.Tx, error) {
	return s.tx.Begin(ctx)
}

// digestWriter hashes and counts what it passes on.
type digestWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (d *digestWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

// ErrPackMismatch: a pack's files do not match its manifest.
var ErrPackMismatch = errors.New("compliance pack does not match its manifest")

// PackError lists every way a pack differs from its manifest.
type PackError struct{ Problems []string }

func (e *PackError) Error() string {
	return ErrPackMismatch.Error() + ": " + strings.Join(e.Problems, "; ")
}

func (e *PackError) Unwrap() error { return ErrPackMismatch }

// VerifyPack reads the ZIP of a compliance pack and checks that every file its manifest lists
// is there once with that SHA-256 and size, and that there is no file the manifest does not
// list. It returns the manifest; a *PackError (errors.Is ErrPackMismatch) names every
// problem. A pack without a readable manifest.json is an error too.
//
// The manifest vouches for the other files; to trust the manifest itself, compare its chain
// head with the log's (AuditService.VerifyChain), or its SHA-256 with one recorded elsewhere.
func VerifyPack(ra io.ReaderAt, size int64) (*Manifest, error) {
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return nil, fmt.Errorf("%w: not a ZIP: %w", ErrPackMismatch, err)
	}
	files := map[string][]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = append(files[f.Name], f)
	}
	mf := files[FileManifest]
	if len(mf) != 1 {
		return nil, &PackError{Problems: []string{fmt.Sprintf("%d %s files, want 1", len(mf), FileManifest)}}
	}
	var m Manifest
	rc, err := mf[0].Open()
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrPackMismatch, FileManifest, err)
	}
	err = json.NewDecoder(rc).Decode(&m)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrPackMismatch, FileManifest, err)
	}
	var problems []string
	listed := map[string]bool{FileManifest: true}
	for _, d := range m.Files {
		if listed[d.Name] {
			problems = append(problems, fmt.Sprintf("%s is listed twice", d.Name))
			continue
		}
		listed[d.Name] = true
		fs := files[d.Name]
		if len(fs) != 1 {
			problems = append(problems, fmt.Sprintf("%s: %d copies in the ZIP, want 1", d.Name, len(fs)))
			continue
		}
		sum, n, err := digestOf(fs[0])
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", d.Name, err))
		case sum != d.SHA256:
			problems = append(problems, fmt.Sprintf("%s: sha256 %s, the manifest says %s", d.Name, sum, d.SHA256))
		case n != d.Size:
			problems = append(problems, fmt.Sprintf("%s: %d bytes, the manifest says %d", d.Name, n, d.Size))
		}
	}
	var extra []string
	for name := range files {
		if !listed[name] {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		problems = append(problems, fmt.Sprintf("%s is not in the manifest", name))
	}
	if len(problems) > 0 {
		return &m, &PackError{Problems: problems}
	}
	return &m, nil
}

func digestOf(f *zip.File) (string, int64, error) {
	rc, err := f.Open()
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
