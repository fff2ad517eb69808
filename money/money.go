// Package money holds Tally's one definition of an exact amount written as
// text: the decimal syntax accepted at every edge (FOCUS files, API pushes,
// stored events), its range, and its parsing into decimal.Decimal. No float
// ever touches an amount.
//
// It imports nothing of Tally's, so every layer may use it.
package money

import (
	"errors"

	"github.com/shopspring/decimal"
)

// MaxExponent bounds the scale of accepted numbers: shopspring/decimal
// accepts any exponent, and 1E-9000 is a denial of service, not an amount.
const MaxExponent = 64

// Errors of Parse; their text completes a sentence naming the value.
var (
	ErrSyntax = errors.New("is not a decimal")
	ErrRange  = errors.New("is out of range (scale beyond 1E±64)")
)

// Parse reads an exact decimal: [+-]digits[.digits][(e|E)[+-]digits], with
// at least one digit in the mantissa and at most 4 in the exponent. It
// refuses thousands separators, currency symbols, NaN and Inf, which
// decimal.NewFromString would partly accept or a float parser silently.
func Parse(s string) (decimal.Decimal, error) {
	if !Syntax(s) {
		return decimal.Decimal{}, ErrSyntax
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, ErrSyntax
	}
	if e := d.Exponent(); e < -MaxExponent || e > MaxExponent {
		return decimal.Decimal{}, ErrRange
	}
	return d, nil
}

// Syntax reports whether s is written as Parse accepts, without parsing.
func Syntax(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits, dot := 0, false
	for ; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			digits++
		} else if c == '.' && !dot {
			dot = true
		} else {
			break
		}
	}
	if digits == 0 {
		return false
	}
	if i == len(s) {
		return true
	}
	if s[i] != 'e' && s[i] != 'E' {
		return false
	}
	i++
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	n := len(s) - i
	if n < 1 || n > 4 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
