#!/usr/bin/env python3
"""Sum BilledCost of the FOCUS 1.0 sample per ProviderName and per ServiceName.

This is the independent check of services/focus: it uses only Python's csv and
decimal modules, no Go code, so a bug in the Go reader cannot hide in both.
Amounts are summed exactly with decimal.Decimal and printed in plain notation
with trailing zeros removed (the form shopspring/decimal's String() prints).

Regenerate the golden file from the repository root with:

    python3 testdata/focus/expected_sums.py testdata/focus/FOCUS-1.0/focus_sample.csv \
        > testdata/focus/focus_sample.sums.txt
"""
import csv
import decimal
import sys

decimal.getcontext().prec = 100  # far more digits than any sum here needs: exact


def plain(d):
    d = d.normalize()
    if d == 0:
        return "0"
    return format(d, "f")


def main(path):
    by_provider, by_service = {}, {}
    total, rows = decimal.Decimal(0), 0
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            cost = decimal.Decimal(row["BilledCost"])
            by_provider[row["ProviderName"]] = by_provider.get(row["ProviderName"], 0) + cost
            by_service[row["ServiceName"]] = by_service.get(row["ServiceName"], 0) + cost
            total += cost
            rows += 1
    print("# BilledCost sums of %s, produced by testdata/focus/expected_sums.py" % path.split("/")[-1])
    print("# (python3 csv + decimal, independent of the Go code). Do not edit: regenerate.")
    print("rows\t%d" % rows)
    print("total\t%s" % plain(total))
    for name in sorted(by_provider):
        print("provider\t%s\t%s" % (name, plain(by_provider[name])))
    for name in sorted(by_service):
        print("service\t%s\t%s" % (name, plain(by_service[name])))


if __name__ == "__main__":
    main(sys.argv[1])
