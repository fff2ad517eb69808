package allocation

import (
	"errors"
	"unicode/utf8"
)

// Resource id patterns are globs with two wildcards: "*" matches any run of characters,
// including none and including "/" and ":", and "?" matches exactly one character (a Unicode
// code point). A backslash makes the next character literal ("\*" matches a star). Every other
// character, "[" included, matches itself. path.Match is not used: its "*" stops at "/", and
// cloud resource ids are ARNs and Azure paths full of slashes
// ("arn:aws:ec2:us-east-1:1:instance/i-0abc", "/subscriptions/.../virtualMachines/vm1"), so
// "arn:aws:ec2:*" would not match them.

var errBadGlob = errors.New("pattern ends with an unfinished escape")

// validGlob reports whether pattern is a well-formed glob: the only malformed one ends in a
// lone backslash.
func validGlob(pattern string) error {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '\\' {
			if i+1 == len(pattern) {
				return errBadGlob
			}
			i++
		}
	}
	return nil
}

// globMatch reports whether s matches the whole of pattern, which must be valid. It is the
// linear-time greedy matcher with one backtrack point (the last "*"), so a pattern with many
// stars cannot blow up on a long id.
func globMatch(pattern, s string) bool {
	p, n := 0, 0
	starP, starN := -1, -1
	for n < len(s) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				_, w := utf8.DecodeRuneInString(s[n:])
				p++
				n += w
				continue
			default:
				lit, lw := literalAt(pattern, p)
				sr, sw := utf8.DecodeRuneInString(s[n:])
				if lit == sr {
					p += lw
					n += sw
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last star swallow one more character and try again from there.
		_, w := utf8.DecodeRuneInString(s[starN:])
		starN += w
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// literalAt is the literal character at pattern[p] (after an escaping backslash, if any) and
// the number of pattern bytes it takes.
func literalAt(pattern string, p int) (rune, int) {
	if pattern[p] == '\\' && p+1 < len(pattern) {
		r, w := utf8.DecodeRuneInString(pattern[p+1:])
		return r, w + 1
	}
	r, w := utf8.DecodeRuneInString(pattern[p:])
	return r, w
}
