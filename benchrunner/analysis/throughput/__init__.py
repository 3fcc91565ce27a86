"""The throughput scenario's analysis (pure; no torch): the stability rule (windows), the knee
(knee), one level's events to its rows (levelstats), curves read from throughput.csv (curves),
and run-against-run comparison of throughput rows (compare). The executor is in
benchrunner.run.throughput, the file schema in benchrunner.store.throughput.
"""
