package focusgen

import (
	"fmt"
	"strings"
)

// resource is one billed thing: its attributes are a pure function of
// (seed, n), so the original bill and its revision agree on every resource
// without keeping state.
type resource struct {
	n          int
	acct       *account
	sub        subAccount
	svc        service
	sku        sku
	reg        region
	zone       string
	id, name   string
	tags       string      // Tags JSON, "" for untagged
	commitment *commitment // nil unless its usage is covered
}

func newResource(seed uint64, n int) *resource {
	r := newRNG(seed, streamResource, uint64(n))
	acct := pickWeighted(r)
	svc := pick(r, acct.provider.services)
	res := &resource{
		n:    n,
		acct: acct,
		sub:  pick(r, acct.subAccounts),
		svc:  svc,
		sku:  pick(r, svc.skus),
		reg:  pick(r, acct.provider.regions),
	}
	if svc.zonal {
		res.zone = pick(r, res.reg.zones)
	}
	h := r.next()
	res.id = acct.provider.resourceID(svc, res.reg, res.zone, res.sub.id, n, h)
	res.name = resourceName(res.id)
	switch k := r.intn(10); {
	case k == 0: // untagged: allocation must cope with it
	case k == 1:
		res.tags = fmt.Sprintf(`{"team":%q}`, pick(r, teams))
	default:
		res.tags = fmt.Sprintf(`{"cost-center":%q,"env":%q,"team":%q}`, pick(r, costCenters), pick(r, envs), pick(r, teams))
	}
	if svc.committable && r.chance(350) {
		for i := range acct.commitments {
			if acct.commitments[i].covers == svc.name {
				res.commitment = &acct.commitments[i]
			}
		}
	}
	return res
}

func pickWeighted(r *rng) *account {
	total := 0
	for _, a := range accounts {
		total += a.weight
	}
	k := r.intn(total)
	for _, a := range accounts {
		if k < a.weight {
			return a
		}
		k -= a.weight
	}
	return accounts[len(accounts)-1]
}

// resourceName is the last path element of the id, as consoles show it.
func resourceName(id string) string {
	if i := strings.LastIndexAny(id, "/:"); i >= 0 {
		return id[i+1:]
	}
	return id
}

// resourceCache keeps recently built resources: rows cycle through the
// resources, so most rows reuse one. Its size is fixed, which keeps memory
// bounded for any row count.
type resourceCache struct {
	seed uint64
	byN  []*resource
}

const resourceCacheSize = 1 << 14

func newResourceCache(seed uint64) *resourceCache {
	return &resourceCache{seed: seed, byN: make([]*resource, resourceCacheSize)}
}

func (c *resourceCache) get(n int) *resource {
	slot := &c.byN[n%resourceCacheSize]
	if *slot == nil || (*slot).n != n {
		*slot = newResource(c.seed, n)
	}
	return *slot
}
