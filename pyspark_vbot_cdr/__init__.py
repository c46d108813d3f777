"""Lets Spark find the ``vbot_cdr`` data source with no ``spark.dataSource.register`` call.

Spark (4.0 and later) imports each installed top-level module whose name starts with
``pyspark_`` and registers its ``DefaultSource`` under that source's name.
"""

from vbot_cdr.spark import VBotDataSource as DefaultSource

__all__ = ["DefaultSource"]
