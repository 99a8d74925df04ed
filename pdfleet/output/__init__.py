"""Outputs a BI team builds on: declared parquet schemas, the HTML report, plan diffs."""
