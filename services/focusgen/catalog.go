package focusgen

import (
	"fmt"

	"github.com/shopspring/decimal"
)

// The catalogue is invented but shaped like real exports: account and
// resource id formats, service names, categories, units and list prices in
// the range each provider publishes.

type provider struct {
	name      string // ServiceProviderName, and the deprecated ProviderName
	host      string // HostProviderName
	publisher string // deprecated PublisherName
	services  []service
	regions   []region
	// resourceID renders the id of resource n of a service.
	resourceID func(svc service, reg region, zone, sub string, n int, h uint64) string
}

type account struct {
	provider    *provider
	id, name    string
	typ         string
	currency    string
	issuer      string          // InvoiceIssuerName
	discount    decimal.Decimal // negotiated discount off list price
	taxRate     decimal.Decimal
	subAccounts []subAccount
	commitments []commitment
	weight      int // share of resources
}

type subAccount struct{ id, name, typ string }

type service struct {
	name, category, subcategory string
	resourceType                string
	kind                        string // resource kind used in ids
	skus                        []sku
	zonal                       bool
	committable                 bool // covered by the account's commitments
}

type sku struct {
	id, meter, priceID string
	unit               string // PricingUnit and ConsumedUnit
	listPrice          decimal.Decimal
	qty                qtyKind
	details            string // SkuPriceDetails JSON
}

type qtyKind int

const (
	qtyHours    qtyKind = iota // instance-hours: mostly a full hour
	qtyGBMonth                 // storage, prorated per hour
	qtyRequests                // counts
	qtyGBSecond                // serverless duration
)

type region struct {
	id, name string
	zones    []string
}

type commitment struct {
	id, name string
	category string // Spend or Usage
	typ      string // CommitmentDiscountType
	hourly   decimal.Decimal
	unit     string // CommitmentDiscountUnit
	skuID    string
	covers   string // the service whose usage it discounts
}

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

var aws = &provider{
	name: "AWS", host: "AWS", publisher: "Amazon Web Services, Inc.",
	regions: []region{
		{"us-east-1", "US East (N. Virginia)", []string{"us-east-1a", "us-east-1b", "us-east-1c"}},
		{"us-west-2", "US West (Oregon)", []string{"us-west-2a", "us-west-2b"}},
		{"eu-west-1", "Europe (Ireland)", []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}},
	},
	services: []service{
		{name: "Amazon Elastic Compute Cloud", category: "Compute", subcategory: "Virtual Machines", resourceType: "Instance", kind: "instance", zonal: true, committable: true, skus: []sku{
			{"8KTD2R5WZQ7BQ6S9", "Compute", "8KTD2R5WZQ7BQ6S9.JRTCKXETXF.6YS6EN2CT7", "Hours", d("0.096"), qtyHours, `{"InstanceType":"m6i.large","vCPU":2}`},
			{"G7XJ9SUBM4C2V4KZ", "Compute", "G7XJ9SUBM4C2V4KZ.JRTCKXETXF.6YS6EN2CT7", "Hours", d("0.136"), qtyHours, `{"InstanceType":"c6g.xlarge","vCPU":4}`},
			{"QH3F5B7DW9N2R8TX", "Compute", "QH3F5B7DW9N2R8TX.JRTCKXETXF.6YS6EN2CT7", "Hours", d("0.504"), qtyHours, `{"InstanceType":"r6i.2xlarge","vCPU":8}`},
		}},
		{name: "Amazon Simple Storage Service", category: "Storage", subcategory: "Object Storage", resourceType: "Bucket", kind: "bucket", skus: []sku{
			{"WP9ANXZGBYYSGJEA", "Storage", "WP9ANXZGBYYSGJEA.JRTCKXETXF.PGHJ3S3EYE", "GB-Months", d("0.023"), qtyGBMonth, `{"StorageClass":"Standard"}`},
			{"2UQG8ENV3RTJQK4C", "Requests", "2UQG8ENV3RTJQK4C.JRTCKXETXF.QCRWRDFC2Y", "Requests", d("0.0000004"), qtyRequests, `{"RequestType":"GET"}`},
		}},
		{name: "Amazon Relational Database Service", category: "Databases", subcategory: "Relational Databases", resourceType: "DB Instance", kind: "db", zonal: true, committable: true, skus: []sku{
			{"YR8SVEPJZS6WG3QA", "Database Instance", "YR8SVEPJZS6WG3QA.JRTCKXETXF.6YS6EN2CT7", "Hours", d("0.225"), qtyHours, `{"InstanceType":"db.r6g.large","Engine":"PostgreSQL"}`},
		}},
		{name: "AWS Lambda", category: "Compute", subcategory: "Serverless Compute", resourceType: "Function", kind: "function", skus: []sku{
			{"TG3M4CAGBA3NYQBH", "Duration", "TG3M4CAGBA3NYQBH.JRTCKXETXF.E7KTXW9ZMZ", "GB-Seconds", d("0.0000166667"), qtyGBSecond, `{"Architecture":"x86_64"}`},
		}},
	},
	resourceID: func(svc service, reg region, zone, sub string, n int, h uint64) string {
		switch svc.kind {
		case "bucket":
			return fmt.Sprintf("arn:aws:s3:::acme-%s-%05d", sub[len(sub)-4:], n)
		case "db":
			return fmt.Sprintf("arn:aws:rds:%s:%s:db:db-%05d%08x", reg.id, sub, n, uint32(h))
		case "function":
			return fmt.Sprintf("arn:aws:lambda:%s:%s:function:fn-%05d-%06x", reg.id, sub, n, uint32(h)&0xffffff)
		default:
			return fmt.Sprintf("arn:aws:ec2:%s:%s:instance/i-%05x%012x", reg.id, sub, n, h&0xffffffffffff)
		}
	},
}

var microsoft = &provider{
	name: "Microsoft", host: "Microsoft", publisher: "Microsoft",
	regions: []region{
		{"westeurope", "West Europe", []string{"1", "2", "3"}},
		{"eastus", "East US", []string{"1", "2"}},
	},
	services: []service{
		{name: "Virtual Machines", category: "Compute", subcategory: "Virtual Machines", resourceType: "Virtual machine", kind: "virtualMachines", zonal: true, committable: true, skus: []sku{
			{"DZH318Z0BQPS", "D4s v5", "DZH318Z0BQPS/00TG", "Hours", d("0.192"), qtyHours, `{"VMSize":"Standard_D4s_v5","vCPU":4}`},
			{"DZH318Z0BQ4L", "E8s v5", "DZH318Z0BQ4L/00H1", "Hours", d("0.504"), qtyHours, `{"VMSize":"Standard_E8s_v5","vCPU":8}`},
		}},
		{name: "Storage Accounts", category: "Storage", subcategory: "Object Storage", resourceType: "Storage account", kind: "storageAccounts", skus: []sku{
			{"DZH318Z0BNVX", "Hot LRS Data Stored", "DZH318Z0BNVX/003P", "GB/Month", d("0.0184"), qtyGBMonth, `{"Redundancy":"LRS","AccessTier":"Hot"}`},
		}},
		{name: "Azure SQL Database", category: "Databases", subcategory: "Relational Databases", resourceType: "SQL database", kind: "databases", skus: []sku{
			{"DZH318Z0BQ9W", "vCore", "DZH318Z0BQ9W/0052", "Hours", d("0.5044"), qtyHours, `{"Tier":"General Purpose","Family":"Gen5"}`},
		}},
	},
	resourceID: func(svc service, reg region, zone, sub string, n int, h uint64) string {
		ns := map[string]string{"virtualMachines": "Microsoft.Compute", "storageAccounts": "Microsoft.Storage", "databases": "Microsoft.Sql/servers/sql-shared"}[svc.kind]
		return fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-%s/providers/%s/%s/%s%05d%04x", sub, reg.id, ns, svc.kind, svc.kind[:2], n, uint16(h))
	},
}

var google = &provider{
	name: "Google Cloud", host: "Google Cloud", publisher: "Google",
	regions: []region{
		{"us-central1", "Iowa", []string{"us-central1-a", "us-central1-b", "us-central1-f"}},
		{"europe-west1", "Belgium", []string{"europe-west1-b", "europe-west1-c"}},
	},
	services: []service{
		{name: "Compute Engine", category: "Compute", subcategory: "Virtual Machines", resourceType: "Instance", kind: "instances", zonal: true, committable: true, skus: []sku{
			{"6A2B-4C1E-8F0D", "N2 Instance Core", "6A2B-4C1E-8F0D/us", "Hours", d("0.031611"), qtyHours, `{"MachineFamily":"n2","Resource":"vCPU"}`},
			{"9E4F-1A3C-2B7D", "N2 Instance Ram", "9E4F-1A3C-2B7D/us", "Hours", d("0.004237"), qtyHours, `{"MachineFamily":"n2","Resource":"RAM"}`},
		}},
		{name: "Cloud Storage", category: "Storage", subcategory: "Object Storage", resourceType: "Bucket", kind: "buckets", skus: []sku{
			{"E5F0-6D8A-7C3B", "Standard Storage", "E5F0-6D8A-7C3B/multi", "GiB-Months", d("0.020"), qtyGBMonth, `{"StorageClass":"STANDARD"}`},
		}},
		{name: "BigQuery", category: "Analytics", subcategory: "Data Processing", resourceType: "Dataset", kind: "datasets", skus: []sku{
			{"3362-E469-6BEF", "Analysis", "3362-E469-6BEF/ondemand", "Requests", d("0.00000625"), qtyRequests, `{"Pricing":"On-demand"}`},
		}},
	},
	resourceID: func(svc service, reg region, zone, sub string, n int, h uint64) string {
		if svc.zonal {
			return fmt.Sprintf("//compute.googleapis.com/projects/%s/zones/%s/instances/vm-%05d-%06x", sub, zone, n, uint32(h)&0xffffff)
		}
		return fmt.Sprintf("//%s.googleapis.com/projects/%s/%s/%s-%05d", map[string]string{"buckets": "storage", "datasets": "bigquery"}[svc.kind], sub, svc.kind, svc.kind[:4], n)
	},
}

var oracle = &provider{
	name: "Oracle", host: "Oracle", publisher: "Oracle",
	regions: []region{
		{"us-ashburn-1", "US East (Ashburn)", []string{"AD-1", "AD-2", "AD-3"}},
		{"eu-frankfurt-1", "Germany Central (Frankfurt)", []string{"AD-1", "AD-2"}},
	},
	services: []service{
		{name: "COMPUTE", category: "Compute", subcategory: "Virtual Machines", resourceType: "Instance", kind: "instance", zonal: true, skus: []sku{
			{"B93113", "OCPU Per Hour", "B93113-E4", "Hours", d("0.025"), qtyHours, `{"Shape":"VM.Standard.E4.Flex","Resource":"OCPU"}`},
		}},
		{name: "BLOCK_STORAGE", category: "Storage", subcategory: "Block Storage", resourceType: "Volume", kind: "volume", skus: []sku{
			{"B91961", "Block Volume Storage", "B91961-STD", "GB-Months", d("0.0255"), qtyGBMonth, `{"PerformanceUnits":10}`},
		}},
	},
	resourceID: func(svc service, reg region, zone, sub string, n int, h uint64) string {
		short := map[string]string{"us-ashburn-1": "iad", "eu-frankfurt-1": "fra"}[reg.id]
		return fmt.Sprintf("ocid1.%s.oc1.%s.aaaa%05d%016x", svc.kind, short, n, h)
	},
}

// accounts are the billing accounts, weighted so that roughly five in six
// resources bill in USD and the rest in EUR.
var accounts = []*account{
	{provider: aws, id: "123456789012", name: "Acme Corp", typ: "Management Account", currency: "USD",
		issuer: "Amazon Web Services, Inc.", discount: d("0.05"), taxRate: d("0.0725"), weight: 6,
		subAccounts: []subAccount{
			{"210987654321", "prod-platform", "Member Account"},
			{"345678901234", "staging-platform", "Member Account"},
			{"456789012345", "data-analytics", "Member Account"},
		},
		commitments: []commitment{
			{"arn:aws:savingsplans::123456789012:savingsplan/sp-0a1b2c3d4e5f60718", "Compute Savings Plan 1y", "Spend", "Savings Plan", d("1.25"), "USD", "SP-COMPUTE-1Y", "Amazon Elastic Compute Cloud"},
			{"arn:aws:ec2:us-east-1:123456789012:reserved-instances/ri-3f8e2d1c-9b0a", "RDS r6g.large RI", "Usage", "Reserved Instance", d("0.145"), "Hours", "RI-RDS-R6G-LARGE", "Amazon Relational Database Service"},
		}},
	{provider: aws, id: "998877665544", name: "Acme EMEA", typ: "Management Account", currency: "EUR",
		issuer: "Amazon Web Services EMEA SARL", discount: d("0"), taxRate: d("0.21"), weight: 2,
		subAccounts: []subAccount{
			{"887766554433", "emea-prod", "Member Account"},
			{"776655443322", "emea-dev", "Member Account"},
		}},
	{provider: microsoft, id: "/providers/Microsoft.Billing/billingAccounts/7a1c2f3e-0000-4d5e-9f60-71a8b9c0d1e2:4b5c6d7e_2019-05-31", name: "Acme Europe EA", typ: "Enterprise Agreement", currency: "EUR",
		issuer: "Microsoft Ireland Operations Ltd", discount: d("0.12"), taxRate: d("0.19"), weight: 2,
		subAccounts: []subAccount{
			{"3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9", "sub-eu-prod", "Subscription"},
			{"8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5968", "sub-eu-dev", "Subscription"},
		},
		commitments: []commitment{
			{"/providers/Microsoft.Capacity/reservationOrders/5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "D4s v5 reservation", "Usage", "Reservation", d("0.83"), "Hours", "RES-D4SV5-1Y", "Virtual Machines"},
		}},
	{provider: microsoft, id: "/providers/Microsoft.Billing/billingAccounts/0c1d2e3f-1111-4a5b-8c9d-0e1f2a3b4c5d:6a7b8c9d_2021-02-01", name: "Acme US MCA", typ: "Microsoft Customer Agreement", currency: "USD",
		issuer: "Microsoft Corporation", discount: d("0"), taxRate: d("0.06"), weight: 2,
		subAccounts: []subAccount{
			{"b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e", "sub-us-prod", "Subscription"},
		}},
	{provider: google, id: "01A2B3-C4D5E6-F7A8B9", name: "Acme GCP", typ: "Billing Account", currency: "USD",
		issuer: "Google LLC", discount: d("0.03"), taxRate: d("0"), weight: 3,
		subAccounts: []subAccount{
			{"acme-prod-314159", "acme-prod", "Project"},
			{"acme-ml-271828", "acme-ml", "Project"},
		},
		commitments: []commitment{
			{"//compute.googleapis.com/projects/acme-prod-314159/regions/us-central1/commitments/cud-n2-1y", "N2 CUD 1y", "Usage", "Committed Use Discount", d("0.4"), "Hours", "CUD-N2-1Y", "Compute Engine"},
		}},
	{provider: oracle, id: "ocid1.tenancy.oc1..aaaaaaaa5nwd7ynh4ovfyqxwy4jyg7bxvl2ugcf3sjpplvw2dzmdbjxq", name: "acme-oci", typ: "Tenancy", currency: "USD",
		issuer: "Oracle America, Inc.", discount: d("0"), taxRate: d("0.0725"), weight: 1,
		subAccounts: []subAccount{
			{"ocid1.compartment.oc1..aaaaaaaaq3d2ksc7gm4tq5u7ue6dxbvqv4g3jzw6yrcgv6xrehgi", "prod", "Compartment"},
		}},
}

var (
	teams       = []string{"payments", "search", "data", "platform", "ml", "web"}
	envs        = []string{"prod", "prod", "staging", "dev"}
	costCenters = []string{"cc-1042", "cc-2087", "cc-3110", "cc-4500"}
)
