package focus

import "strings"

// iso4217 holds the active ISO 4217 alphabetic codes of national currencies
// (ISO 4217 list one, as published by SIX in 2025), because FOCUS requires
// BillingCurrency to be a national currency. A regex would accept "ABC" or
// a withdrawn code such as HRK (Croatia adopted the euro in 2023).
//
// Left out on purpose: fund codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI,
// UYW), precious metals and special codes (XAG, XAU, XBA-XBD, XDR, XPD, XPT,
// XSU, XTS, XUA, XXX), none of which a provider bills in. Kept during their
// transitions: ANG (replaced by XCG in 2025) and BGN (euro from 2026), since
// bills from before the switch still arrive as restatements.
var iso4217 = func() map[string]struct{} {
	const codes = "" +
		"AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL " +
		"BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP " +
		"ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR " +
		"IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL " +
		"LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR " +
		"NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD " +
		"SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX " +
		"USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG"
	m := make(map[string]struct{}, 160)
	for _, c := range strings.Fields(codes) {
		m[c] = struct{}{}
	}
	return m
}()

// IsCurrency reports whether code is an active ISO 4217 national currency
// code. It is exact: callers normalise case first.
func IsCurrency(code string) bool {
	_, ok := iso4217[code]
	return ok
}

// normalizeCurrency upper-cases an ASCII currency code ("usd" is an obvious
// spelling of USD) and reports whether it is an active ISO 4217 code.
func normalizeCurrency(v string) (string, bool) {
	if len(v) != 3 {
		return "", false
	}
	if _, ok := iso4217[v]; ok {
		return v, true
	}
	up := strings.ToUpper(v)
	_, ok := iso4217[up]
	return up, ok
}
