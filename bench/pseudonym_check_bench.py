"""no_snds_pseudonym's search of an extract's text values, whole values only (before 4ad9723) against whole values
and their words (now), on the same cached data in one session, alternated.

Synthetic, sized like a large extract of a 100k-patient delivery (ER_PRS_F's: some 45k rows) with 20 text columns of
2 to 24 characters, against 400k SNDS pseudonyms of 17 and 10 characters (every identity of the state)."""
from __future__ import annotations

import argparse
import random
import string
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from snds_assets.provision.run import _pseudonym_values as whole_and_words


def whole_values(df: DataFrame, raw: DataFrame) -> tuple[int, list[str]]:
    """The search as it was: a text value equal to a pseudonym."""
    text = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
    lengths = sorted(r[0] for r in raw.select(F.length("v")).distinct().collect())
    cells = df.select(F.explode(F.array(*[F.struct(F.lit(c).alias("c"), F.col(c).alias("v")) for c in text]))
                      .alias("x"))
    found = (cells.select("x.c", "x.v").where(F.length("v").isin(lengths))
             .join(raw, "v", "left_semi").groupBy("c").count().collect())
    return sum(r["count"] for r in found), sorted(r["c"] for r in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=45_000)
    parser.add_argument("--reps", type=int, default=4)
    args = parser.parse_args()
    spark = (SparkSession.builder.master("local[*]").config("spark.sql.shuffle.partitions", "4")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    rnd = random.Random(1)

    def code(n: int) -> str:
        return "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(n))

    raw = spark.createDataFrame([(code(17),) for _ in range(300_000)] + [(code(10),) for _ in range(100_000)],
                                "v string").cache()
    rows = [tuple(code(rnd.choice((2, 5, 10, 13, 17, 24))) for _ in range(20)) for _ in range(args.rows)]
    df = spark.createDataFrame(rows, ", ".join(f"C{i} string" for i in range(20))).cache()
    raw.count(), df.count()
    times: dict[str, list[float]] = {"whole values": [], "whole values and words": []}
    for rep in range(args.reps):
        plans = [("whole values", whole_values), ("whole values and words", whole_and_words)]
        for name, search in plans if rep % 2 == 0 else plans[::-1]:
            t0 = time.perf_counter()
            search(df, raw)
            times[name].append(time.perf_counter() - t0)
    for name, seconds in times.items():
        warm = sorted(seconds[1:]) or seconds
        print(f"{name}: {', '.join(f'{s:.2f}' for s in seconds)} s (median of the warm ones {warm[len(warm) // 2]:.2f} s)")


if __name__ == "__main__":
    main()
