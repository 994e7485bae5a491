"""Write datasets/articles.csv: a small generated multi-label table with per-row weights.

500 articles of an imaginary news site: counts of words, links, images, quotes and numerals,
the hour published and the section (text), a reader-panel weight per article (how many panel
readers it stands for, as survey tables carry), and the set of topics each is tagged with
("politics|economy"; an empty cell is the empty set). Each topic follows its own logistic
model of the counts, so a network with one sigmoid per topic can learn them. Seeded, so the
file is the same on every run:

    python benchmarks/make_articles.py            # rewrites datasets/articles.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ("economy", "politics", "sport", "tech")


def articles(n: int = 500, seed: int = 11) -> list[dict]:
    rng = np.random.default_rng(seed)
    sections = np.array(["app", "print", "web"])
    rows = []
    for i in range(n):
        section = sections[rng.choice(3, p=[0.3, 0.3, 0.4])]
        words = int(rng.lognormal(6.4, 0.45))
        links, images, quotes, numerals = (int(rng.poisson(lam)) for lam in (4, 2, 3, 6))
        hour = int(rng.integers(0, 24))
        z = {
            "words": (np.log(words) - 6.4) / 0.45,
            "links": (links - 4) / 2,
            "images": (images - 2) / 1.4,
            "quotes": (quotes - 3) / 1.7,
            "numerals": (numerals - 6) / 2.4,
        }
        logits = {
            "economy": -0.8 + 1.6 * z["numerals"] + 0.5 * z["words"],
            "politics": -0.6 + 1.4 * z["quotes"] + 0.9 * (section == "print") - 0.6 * z["images"],
            "sport": -0.9 + 1.6 * z["images"] + 1.0 * (hour >= 18) - 0.6 * z["quotes"],
            "tech": -0.8 + 1.5 * z["links"] + 0.8 * (section == "app") - 0.4 * z["words"],
        }
        topics = [t for t in TOPICS if rng.random() < 1 / (1 + np.exp(-logits[t]))]
        rows.append(
            {
                "article_id": f"A{1000 + i}",
                "section": str(section),
                "hour": str(hour),
                "words": str(words),
                "links": str(links),
                "images": str(images),
                "quotes": str(quotes),
                "numerals": str(numerals),
                "panel_weight": f"{rng.uniform(0.5, 2.0):.2f}",
                "topics": "|".join(topics),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "datasets" / "articles.csv")
    args = parser.parse_args()
    rows = articles()
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
