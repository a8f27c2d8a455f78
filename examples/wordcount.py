"""Word count with PySpark on the cluster: the ten most frequent words of a text file.

    clusterkit submit examples/wordcount.py -- [FILE] [--top N]

The script reads FILE here (default: words.txt beside it) and sends its lines to the cluster,
so it works the same whether the executors can see this folder or not. A plain
``SparkSession.builder.getOrCreate()`` attaches to the cluster's warm Spark Connect server:
``clusterkit submit`` sets SPARK_REMOTE (``--spark-session classic`` runs it through
spark-submit instead; both work, since it uses DataFrames only).
"""

import argparse
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("file", nargs="?", default=str(Path(__file__).with_name("words.txt")))
parser.add_argument("--top", type=int, default=10)
args = parser.parse_args()

spark = SparkSession.builder.appName("wordcount").getOrCreate()
lines = Path(args.file).read_text().splitlines()
text = spark.createDataFrame([(line,) for line in lines], "line string")
counts = (
    text.select(F.explode(F.split(F.lower("line"), r"[^a-z']+")).alias("word"))
    .where(F.length("word") > 0)
    .groupBy("word")
    .count()
    .orderBy(F.desc("count"), "word")
    .limit(args.top)
)
for row in counts.collect():
    print(f"{row['word']}\t{row['count']}")
spark.stop()
