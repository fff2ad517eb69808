package focus

import (
	"time"

	"github.com/shopspring/decimal"
)

// Row is one validated FOCUS cost-and-usage row.
//
// Field names follow the FOCUS Column IDs, with Go's ID initialism
// (BillingAccountId -> BillingAccountID). Conventions:
//   - Strings: "" is null. FOCUS forbids empty strings as values, and CSV
//     exports write null as an empty field or a literal NULL, so the two
//     cannot be told apart anyway.
//   - Amounts, prices and quantities are decimal.Decimal, exact to the digit
//     of the file; nullable ones are decimal.NullDecimal (Valid false = null).
//   - Timestamps are UTC. All four period bounds are required, so they are
//     plain time.Time values.
//   - Enumerations hold the canonical spelling whatever case the file used.
//   - Tags, AllocatedTags and SkuPriceDetails are sorted key/value lists; nil
//     means null, an empty non-nil slice means "{}".
//   - Columns this package does not know (x_ prefixed or not) are kept in
//     Extensions with their raw text.
//
// A column absent from the file reads as null.
type Row struct {
	// Where the row came from.
	Line   int // physical line where the row starts in a CSV file; 0 for Parquet
	Number int // data row number, 1-based, header excluded

	// Billing account, sub account and invoice.
	BillingAccountID   string
	BillingAccountName string
	BillingAccountType string // 1.2
	SubAccountID       string
	SubAccountName     string
	SubAccountType     string // 1.2
	InvoiceID          string // 1.2
	InvoiceIssuerName  string

	// Who provides the service. ServiceProviderName and HostProviderName
	// (1.3) replace the deprecated ProviderName and PublisherName, which are
	// still read because every file before 1.3 has only them.
	ServiceProviderName string // 1.3
	HostProviderName    string // 1.3
	ProviderName        string // deprecated in 1.3
	PublisherName       string // deprecated in 1.3

	// Periods: start inclusive, end exclusive.
	BillingPeriodStart time.Time
	BillingPeriodEnd   time.Time
	ChargePeriodStart  time.Time
	ChargePeriodEnd    time.Time

	// The charge.
	ChargeCategory    ChargeCategory
	ChargeClass       ChargeClass // "" = not a correction
	ChargeDescription string
	ChargeFrequency   ChargeFrequency

	// Money in the billing currency.
	BillingCurrency     string // ISO 4217, upper case
	BilledCost          decimal.Decimal
	EffectiveCost       decimal.NullDecimal
	ListCost            decimal.NullDecimal
	ContractedCost      decimal.NullDecimal
	ListUnitPrice       decimal.NullDecimal
	ContractedUnitPrice decimal.NullDecimal

	// Pricing and consumption.
	PricingCategory  PricingCategory
	PricingQuantity  decimal.NullDecimal
	PricingUnit      string
	ConsumedQuantity decimal.NullDecimal
	ConsumedUnit     string

	// Pricing currency (1.2): a national currency or a consumption currency
	// such as "Token", so it is not checked against ISO 4217.
	PricingCurrency                    string
	PricingCurrencyContractedUnitPrice decimal.NullDecimal
	PricingCurrencyEffectiveCost       decimal.NullDecimal
	PricingCurrencyListUnitPrice       decimal.NullDecimal

	// Service and SKU.
	ServiceName        string
	ServiceCategory    string
	ServiceSubcategory string // 1.1
	SkuID              string
	SkuMeter           string // 1.1
	SkuPriceID         string
	SkuPriceDetails    []KeyValue // 1.1

	// Resource and location.
	ResourceID       string
	ResourceName     string
	ResourceType     string
	RegionID         string
	RegionName       string
	AvailabilityZone string

	// Commitment discount.
	CommitmentDiscountID       string
	CommitmentDiscountName     string
	CommitmentDiscountCategory CommitmentDiscountCategory
	CommitmentDiscountType     string
	CommitmentDiscountStatus   Status
	CommitmentDiscountQuantity decimal.NullDecimal // 1.1
	CommitmentDiscountUnit     string              // 1.1

	// Capacity reservation (1.1).
	CapacityReservationID     string
	CapacityReservationStatus Status

	// Contract commitments applied to this charge (1.3), as JSON text.
	ContractApplied string

	// Allocation (1.3): the row is a share of a shared resource's cost.
	AllocatedMethodID      string
	AllocatedMethodDetails string // JSON text
	AllocatedResourceID    string
	AllocatedResourceName  string
	AllocatedTags          []KeyValue

	Tags []KeyValue

	// Extensions are the columns FOCUS does not define, sorted by name.
	Extensions []Extension
}

// ProviderOrServiceProvider returns ServiceProviderName, falling back to the
// deprecated ProviderName for files older than FOCUS 1.3.
func (r *Row) ProviderOrServiceProvider() string {
	if r.ServiceProviderName != "" {
		return r.ServiceProviderName
	}
	return r.ProviderName
}

// ValueKind is the JSON type of a key/value entry's value.
type ValueKind uint8

// Value kinds. Real tag data mixes them (numbers and booleans next to
// strings), and a boolean true is how FOCUS writes a key without a value.
const (
	KindString ValueKind = iota
	KindNumber
	KindBool
	KindNull
	KindJSON // object or array, kept as compact JSON text
)

// KeyValue is one entry of a key/value JSON column such as Tags.
type KeyValue struct {
	Key string
	// Value is the value's text: the string itself for KindString, the
	// literal as written for KindNumber ("1.5E-7" stays exact), "true" or
	// "false" for KindBool, "" for KindNull, compact JSON for KindJSON.
	Value string
	Kind  ValueKind
}

// Extension is a column FOCUS does not define (x_ columns and any other
// unknown column, such as the sample data's "Id").
type Extension struct {
	Name  string // as in the header
	Value string // raw text, null markers included
}
