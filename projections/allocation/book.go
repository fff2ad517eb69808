package allocation

import (
	"sort"
	"time"
)

// Book holds every version of every rule of one tenant and the retirements, in the order the
// log delivered them, and answers which rule applies to a line on a day. It is not safe for
// concurrent use.
//
// Selection on a day D (a UTC date; its start, 00:00 UTC, is the instant compared):
//  1. a version is in force when effective_from <= D < effective_to (an open end never ends)
//     and no retirement covers it;
//  2. of each rule id, the highest version in force applies; lower versions are superseded
//     even where they would match a line the highest does not;
//  3. the applying rules are tried in priority order, lowest number first, ties broken by
//     rule id ascending; the first that matches the line wins, and a line no rule matches is
//     unallocated.
//
// A retirement (AllocationRuleRetired) stops every version of the rule that the book holds
// when the retirement arrives, from its effective_to on. A version set after the retirement
// (a higher version, in log order) is not retired by it: that is how a retired rule is brought
// back. Setting a (rule id, version) that is already held replaces it (last in log order wins).
type Book struct {
	versions    map[string][]*Rule // by rule id, sorted by version
	retirements map[string][]retirement
}

type retirement struct {
	from        time.Time // the rule stops applying on days starting at or after this
	upToVersion uint32    // versions up to this one (the highest held at retirement)
}

// NewBook returns an empty book.
func NewBook() *Book {
	return &Book{versions: map[string][]*Rule{}, retirements: map[string][]retirement{}}
}

// Set adds a rule version (or replaces the same version).
func (b *Book) Set(r *Rule) {
	vs := b.versions[r.ID]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].Version >= r.Version })
	if i < len(vs) && vs[i].Version == r.Version {
		vs[i] = r
		return
	}
	vs = append(vs, nil)
	copy(vs[i+1:], vs[i:])
	vs[i] = r
	b.versions[r.ID] = vs
}

// Retire stops the rule's versions held now from the day starting at effectiveTo on. It
// reports false, and records nothing, if the book holds no version of the rule.
func (b *Book) Retire(ruleID string, effectiveTo time.Time) bool {
	vs := b.versions[ruleID]
	if len(vs) == 0 {
		return false
	}
	b.retirements[ruleID] = append(b.retirements[ruleID],
		retirement{from: effectiveTo, upToVersion: vs[len(vs)-1].Version})
	return true
}

// Day is the UTC date of t, as the instant 00:00 UTC that starts it.
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// InForce is the rules that apply on day, one version per rule id, in the order they are
// tried: priority ascending, then rule id.
func (b *Book) InForce(day time.Time) []*Rule {
	day = Day(day)
	var out []*Rule
	for id, vs := range b.versions {
		for i := len(vs) - 1; i >= 0; i-- {
			if b.inForce(id, vs[i], day) {
				out = append(out, vs[i])
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority < out[j].Priority
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (b *Book) inForce(id string, r *Rule, day time.Time) bool {
	if day.Before(r.EffectiveFrom) {
		return false
	}
	if !r.EffectiveTo.IsZero() && !day.Before(r.EffectiveTo) {
		return false
	}
	for _, ret := range b.retirements[id] {
		if r.Version <= ret.upToVersion && !day.Before(ret.from) {
			return false
		}
	}
	return true
}

// Select is the rule that allocates line on day, or nil if none matches.
func (b *Book) Select(day time.Time, line Line) *Rule {
	return SelectFrom(b.InForce(day), line)
}

// SelectFrom is the first rule of inForce (as InForce orders them) that matches line, or nil.
func SelectFrom(inForce []*Rule, line Line) *Rule {
	for _, r := range inForce {
		if r.Matches(line) {
			return r
		}
	}
	return nil
}

// Clone is a copy of the book that can be changed without changing b (the rules themselves
// are immutable and shared): a dry run applies a proposed change to a clone.
func (b *Book) Clone() *Book {
	c := NewBook()
	for id, vs := range b.versions {
		c.versions[id] = append([]*Rule(nil), vs...)
	}
	for id, rs := range b.retirements {
		c.retirements[id] = append([]retirement(nil), rs...)
	}
	return c
}
