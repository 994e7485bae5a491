"""Write datasets/customers.csv: a small generated table with the mess of real ones.

600 customers of an imaginary subscription service: an id, a signup date, text categories, a
boolean, numbers with missing cells, and an imbalanced yes/no target (about 1 in 5 churned).
Seeded, so the file is the same on every run:

    python benchmarks/make_customers.py            # rewrites datasets/customers.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def customers(n: int = 600, seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(seed)
    plans = np.array(["basic", "pro", "team"])
    regions = np.array(["north", "south", "east", "west"])
    start = dt.date(2021, 1, 1)
    rows = []
    for i in range(n):
        plan = plans[rng.choice(3, p=[0.55, 0.3, 0.15])]
        region = regions[rng.integers(4)]
        signup = start + dt.timedelta(days=int(rng.integers(0, 3 * 365)))
        age = int(np.clip(rng.normal(41, 12), 18, 85))
        spend = {"basic": 12.0, "pro": 35.0, "team": 90.0}[plan] * rng.lognormal(0.0, 0.25)
        calls = int(rng.poisson(1.5))
        autopay = bool(rng.random() < 0.6)
        tenure_years = (dt.date(2024, 1, 1) - signup).days / 365
        # Churn: more support calls, no autopay, short tenure and the basic plan raise the odds.
        logit = -1.5 + 0.55 * calls - 0.9 * autopay - 0.5 * tenure_years + 0.5 * (plan == "basic")
        churned = rng.random() < 1 / (1 + np.exp(-logit))
        row = {
            "customer_id": f"C{10000 + i}",
            "signup": signup.isoformat(),
            "plan": plan,
            "region": region,
            "age": str(age),
            "monthly_spend": f"{spend:.2f}",
            "support_calls": str(calls),
            "autopay": "true" if autopay else "false",
            "churned": "yes" if churned else "no",
        }
        # Missing cells, as exports have them: empty, NA.
        for col, rate, mark in (
            ("age", 0.06, ""),
            ("monthly_spend", 0.04, "NA"),
            ("autopay", 0.03, ""),
            ("region", 0.02, ""),
        ):
            if rng.random() < rate:
                row[col] = mark
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "datasets" / "customers.csv")
    args = parser.parse_args()
    rows = customers()
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
